"""Deploy ↔ incident correlation, scored in DuckDB SQL over every pair in a time window.

For each deploy D of service S and each incident I that started within the
window after D (a range join, so the cost follows the number of close pairs,
not deploys × incidents). An incident that started before D is never a
candidate: D cannot have caused it, whatever the other factors say.

- time proximity: 0.5 − 0.1 per hour between D and the start of I (the full
  difference, days included), never below 0;
- dependency: 0.3 when I is on S itself or on a service whose spec lists S
  under ``dependencies.upstream`` (it calls S, so S's deploy can break it);
- history: 0.2 when an earlier deploy of S was followed, within the window, by
  an incident on S or on one of those dependent services.

confidence = the sum (0 … 1). Above 0.8 the deploy is a suspect: the deploy
gate blocks further deploys of S while such an incident is open.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable

from generators.model import Service
from nthlayer.state.db import from_db, to_db

if TYPE_CHECKING:  # duckdb is imported where it is used: a build with no state never loads it
    import duckdb

DEFAULT_WINDOW_SECONDS = 3600
BLOCK_ABOVE = Decimal("0.8")
INVESTIGATE_FROM = Decimal("0.5")

# Scoring runs as three statements over temp tables rather than one CTE: with the
# pairs materialised, DuckDB plans the later joins on real row counts (the
# single-statement form misestimated the range join at deploys × incidents and
# took seconds instead of milliseconds on the benchmark).
_PAIRS_SQL = """
CREATE OR REPLACE TEMP TABLE _nthlayer_pairs AS
SELECT p.*, (p.service = p.incident_service OR e.deploy_service IS NOT NULL) AS related
FROM (
    SELECT d.id AS deploy_id, d.service, i.id AS incident_id, i.service AS incident_service,
           (epoch(i.started_at) - epoch(d.deployed_at)) / 3600.0 AS hours
    FROM deploys d
    JOIN incidents i
      ON i.started_at >= d.deployed_at  -- causality: an incident already under way is no candidate
     AND i.started_at <= d.deployed_at + to_seconds($window)
) p
LEFT JOIN _nthlayer_edges e ON e.deploy_service = p.service AND e.incident_service = p.incident_service
"""

# Per deploy: did an EARLIER deploy of the same service have a related incident after it?
_HISTORY_SQL = """
CREATE OR REPLACE TEMP TABLE _nthlayer_history AS
WITH followed AS (
    SELECT deploy_id, bool_or(related) AS hit FROM _nthlayer_pairs GROUP BY deploy_id
)
SELECT d.id AS deploy_id,
       coalesce(bool_or(coalesce(f.hit, false)) OVER (
           PARTITION BY d.service ORDER BY d.deployed_at, d.id
           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false) AS earlier_hit
FROM deploys d LEFT JOIN followed f ON f.deploy_id = d.id
"""

_INSERT_SQL = """
INSERT INTO correlations
SELECT deploy_id, incident_id, service, incident_service, $window / 3600.0,
       time_factor + dependency_factor + history_factor,
       json_object('time', time_factor, 'dependency', dependency_factor, 'history', history_factor,
                   'hours_after_deploy', round(hours, 4))
FROM (
    SELECT p.deploy_id, p.incident_id, p.service, p.incident_service, p.hours,
           CAST(round(greatest(0.0, 0.5 - 0.1 * p.hours), 4) AS DECIMAL(6, 4)) AS time_factor,
           CAST(CASE WHEN p.related THEN 0.3 ELSE 0 END AS DECIMAL(6, 4)) AS dependency_factor,
           CAST(CASE WHEN h.earlier_hit THEN 0.2 ELSE 0 END AS DECIMAL(6, 4)) AS history_factor
    FROM _nthlayer_pairs p JOIN _nthlayer_history h USING (deploy_id)
    WHERE {scope}
)
"""


@dataclass(frozen=True)
class Correlation:
    deploy_id: int
    service: str
    version: str
    deployed_at: datetime
    incident_id: int
    incident_key: str
    incident_service: str
    title: str | None
    severity: str
    started_at: datetime
    resolved_at: datetime | None
    confidence: Decimal
    factors: dict[str, Any]

    @property
    def action(self) -> str:
        return action_for(self.confidence)


def action_for(confidence: Decimal) -> str:
    if confidence > BLOCK_ABOVE:
        return "BLOCK"
    if confidence >= INVESTIGATE_FROM:
        return "INVESTIGATE"
    return "MONITOR"


def dependency_edges(services: Iterable[Service]) -> list[tuple[str, str]]:
    """(deployed service, affected service) for every ``upstream`` entry: a deploy of U can hurt S."""
    return sorted({(upstream, service.name) for service in services for upstream in service.upstream})


def _load_edges(con: duckdb.DuckDBPyConnection, edges: Iterable[tuple[str, str]]) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _nthlayer_edges (deploy_service VARCHAR, incident_service VARCHAR)")
    rows = sorted(set(edges))
    if rows:
        # One statement with list parameters: executemany costs a round trip per row.
        con.execute("INSERT INTO _nthlayer_edges SELECT unnest($a), unnest($b)",
                    {"a": [r[0] for r in rows], "b": [r[1] for r in rows]})


def score(con: duckdb.DuckDBPyConnection, edges: Iterable[tuple[str, str]],
          window_seconds: int = DEFAULT_WINDOW_SECONDS, deploy_ids: Iterable[int] | None = None) -> int:
    """(Re)compute correlations for the given deploys (default: all); return how many pairs were stored."""
    _load_edges(con, edges)
    params: dict[str, Any] = {"window": float(window_seconds)}
    if deploy_ids is None:
        con.execute("DELETE FROM correlations")
        scope = "true"
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE _nthlayer_scope (id BIGINT)")
        ids = sorted(set(deploy_ids))
        if ids:
            con.execute("INSERT INTO _nthlayer_scope SELECT unnest($ids)", {"ids": ids})
        con.execute("DELETE FROM correlations WHERE deploy_id IN (SELECT id FROM _nthlayer_scope)")
        scope = "p.deploy_id IN (SELECT id FROM _nthlayer_scope)"
    con.execute(_PAIRS_SQL, params)
    con.execute(_HISTORY_SQL)
    rows = con.execute(_INSERT_SQL.format(scope=scope), params).fetchall()
    return int(rows[0][0]) if rows else 0


_SELECT = """
SELECT c.deploy_id, d.service, d.version, d.deployed_at, c.incident_id, i.incident_key, i.service, i.title,
       i.severity, i.started_at, i.resolved_at, c.confidence, c.factors
FROM correlations c JOIN deploys d ON d.id = c.deploy_id JOIN incidents i ON i.id = c.incident_id
"""
_ORDER = " ORDER BY c.confidence DESC, d.deployed_at DESC, i.started_at, i.incident_key"


def _rows(con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> list[Correlation]:
    result = []
    for row in con.execute(_SELECT + where + _ORDER, params).fetchall():
        result.append(Correlation(
            deploy_id=int(row[0]), service=row[1], version=row[2], deployed_at=from_db(row[3]),  # type: ignore[arg-type]
            incident_id=int(row[4]), incident_key=row[5], incident_service=row[6], title=row[7], severity=row[8],
            started_at=from_db(row[9]), resolved_at=from_db(row[10]),  # type: ignore[arg-type]
            confidence=Decimal(row[11]), factors=json.loads(row[12])))
    return result


def correlations_of(con: duckdb.DuckDBPyConnection, deploy_ids: Iterable[int]) -> list[Correlation]:
    ids = sorted(set(deploy_ids))
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    return _rows(con, f" WHERE c.deploy_id IN ({marks})", list(ids))


def all_correlations(con: duckdb.DuckDBPyConnection) -> list[Correlation]:
    return _rows(con, "", [])


def deploys_of(con: duckdb.DuckDBPyConnection, service: str, version: str) -> list[int]:
    rows = con.execute("SELECT id FROM deploys WHERE service = ? AND version = ? ORDER BY deployed_at, id",
                       [service, version]).fetchall()
    return [int(r[0]) for r in rows]


def open_incident_suspects(con: duckdb.DuckDBPyConnection, service: str, edges: Iterable[tuple[str, str]],
                           at: datetime, lookback_seconds: int,
                           window_seconds: int = DEFAULT_WINDOW_SECONDS) -> list[Correlation]:
    """Deploys of ``service`` in (at − lookback, at] correlated above 0.8 with an incident still open at ``at``."""
    when = to_db(at)
    rows = con.execute(
        "SELECT id FROM deploys WHERE service = ? AND deployed_at <= ? AND deployed_at > ? - to_seconds(?)",
        [service, when, when, float(lookback_seconds)]).fetchall()
    ids = [int(r[0]) for r in rows]
    if not ids:
        return []
    score(con, edges, window_seconds, ids)
    return [c for c in correlations_of(con, ids)
            if c.confidence > BLOCK_ABOVE and c.started_at <= at and (c.resolved_at is None or c.resolved_at > at)]
