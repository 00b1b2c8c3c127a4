"""Change ↔ incident correlation, scored in DuckDB SQL over every pair in a time window.

For each change D (a deploy, or a config, flag or infra change: the ``deploys`` table) of service S and
each incident I that started within the window after D (a range join, so the cost follows the number of
close pairs, not changes × incidents). An incident that started before D is never a candidate: D cannot
have caused it, whatever the other factors say.

The deck's three factors:

- time proximity: 0.5 − 0.1 per hour between D and the start of I (the full
  difference, days included), never below 0;
- dependency: 0.3 when I is on S itself or on a service whose spec lists S
  under ``dependencies.upstream`` (it calls S, so S's deploy can break it);
- history: 0.2 when an earlier deploy of S was followed, within the window, by
  an incident on S or on one of those dependent services.

and two more (docs/correlation.md, "Advanced factors"):

- blast radius: I is on a service that depends on S through h ≥ 2 hops of ``upstream`` edges:
  0.3 × 0.5^(h−1) (0.15, 0.075, 0.0375), up to :data:`MAX_HOPS`;
- metrics: the error ratio and latency SLIs of S and of I's service in the 30 minutes after D against the
  30 minutes before, as burn rates (nthlayer.ops.evidence reads them from Prometheus): up to +0.4 for a
  step up, −0.2 when neither moved, nothing when they could not be read (shown as unavailable).

confidence = the sum, clamped to 0 … 1. Above 0.8 the deploy is a suspect: the deploy
gate blocks further deploys of S while such an incident is open.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, Union

from generators.model import Service
from nthlayer.state.db import from_db, to_db

if TYPE_CHECKING:  # duckdb is imported where it is used: a build with no state never loads it
    import duckdb

DEFAULT_WINDOW_SECONDS = 3600
BLOCK_ABOVE = Decimal("0.8")
INVESTIGATE_FROM = Decimal("0.5")

# The factors' weights: what each can add at most (docs/correlation.md lists them; the output shows them).
TIME_WEIGHT = Decimal("0.5")
TIME_DECAY_PER_HOUR = Decimal("0.1")
DEPENDENCY_WEIGHT = Decimal("0.3")
HISTORY_WEIGHT = Decimal("0.2")
BLAST_DECAY_PER_HOP = Decimal("0.5")  # hop h ≥ 2 earns DEPENDENCY_WEIGHT × decay^(h−1)
MAX_HOPS = 4  # beyond this many hops a dependant earns under 0.02: not worth the join
METRICS_WEIGHT = Decimal("0.4")
METRICS_FLAT = Decimal("-0.2")  # the SLIs of both services were read and neither moved
# A burn-rate step at or above the fast-burn paging rate (14.4: 2 % of a 30-day budget in one hour) is full
# metric credit; below MIN_STEP (burning no faster than the budget allows) the SLIs count as flat.
FULL_STEP = 14.4
MIN_STEP = 1.0
EVIDENCE_MINUTES = 30  # the windows before and after the change whose SLIs are compared

@dataclass(frozen=True)
class SliStep:
    """One SLI of one service around a change: its burn rate (bad ratio ÷ error budget) in the
    :data:`EVIDENCE_MINUTES` before and after."""
    service: str
    slo: str
    burn_before: float
    burn_after: float

    @property
    def step(self) -> float:
        return self.burn_after - self.burn_before

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "slo": self.slo, "burn_before": round(self.burn_before, 2),
                "burn_after": round(self.burn_after, 2)}


def metric_points(step: float) -> Decimal:
    """The metrics factor for a burn-rate step: :data:`METRICS_FLAT` below :data:`MIN_STEP`, else a share
    of :data:`METRICS_WEIGHT` growing linearly up to :data:`FULL_STEP`."""
    if step < MIN_STEP:
        return METRICS_FLAT
    return (METRICS_WEIGHT * Decimal(str(min(1.0, step / FULL_STEP)))).quantize(Decimal("0.0001"))


# Per change (deploy id): its SLI steps (services without data left out), or why they could not be read.
Evidence = Mapping[int, Union[Sequence[SliStep], str]]


# Scoring runs as three statements over temp tables rather than one CTE: with the
# pairs materialised, DuckDB plans the later joins on real row counts (the
# single-statement form misestimated the range join at deploys × incidents and
# took seconds instead of milliseconds on the benchmark).
_PAIRS_SQL = """
CREATE OR REPLACE TEMP TABLE _nthlayer_pairs AS
SELECT p.*, (p.service = p.incident_service OR e.hops = 1) AS related,
       CASE WHEN p.service = p.incident_service THEN 0 ELSE e.hops END AS hops
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
       CAST(greatest(0, least(1, time_factor + dependency_factor + blast_factor + history_factor
                                 + coalesce(metrics_factor, 0))) AS DECIMAL(6, 4)),
       json_object('time', time_factor, 'dependency', dependency_factor, 'blast_radius', blast_factor,
                   'history', history_factor, 'metrics', metrics_factor,
                   'hops', hops, 'hours_after_deploy', round(hours, 4),
                   'metrics_evidence', CASE WHEN metrics_detail IS NOT NULL THEN json(metrics_detail) END,
                   'metrics_unavailable', metrics_reason,
                   'weights', json_object('time', {time_weight}, 'dependency', {dependency_weight},
                                          'blast_radius', blast_factor, 'history', {history_weight},
                                          'metrics', CASE WHEN hops IS NULL THEN 0 ELSE {metrics_weight} END))
FROM (
    SELECT p.deploy_id, p.incident_id, p.service, p.incident_service, p.hours, p.hops,
           CAST(round(greatest(0.0, {time_weight} - {time_decay} * p.hours), 4) AS DECIMAL(6, 4)) AS time_factor,
           CAST(CASE WHEN p.related THEN {dependency_weight} ELSE 0 END AS DECIMAL(6, 4)) AS dependency_factor,
           CAST(coalesce(b.weight, 0) AS DECIMAL(6, 4)) AS blast_factor,
           CAST(CASE WHEN h.earlier_hit THEN {history_weight} ELSE 0 END AS DECIMAL(6, 4)) AS history_factor,
           -- metrics count for incidents on S or its dependants only: S's step says nothing about others
           CASE WHEN p.hops IS NULL THEN CAST(0 AS DECIMAL(6, 4)) ELSE m.points END AS metrics_factor,
           CASE WHEN p.hops IS NOT NULL THEN m.detail END AS metrics_detail,
           CASE WHEN p.hops IS NOT NULL AND m.points IS NULL
                THEN coalesce(u.reason, (SELECT reason FROM _nthlayer_default_reason)) END AS metrics_reason
    FROM _nthlayer_pairs p JOIN _nthlayer_history h USING (deploy_id)
    LEFT JOIN _nthlayer_blast b ON b.hops = p.hops
    LEFT JOIN (
        SELECT q.deploy_id, q.incident_id, max(x.points) AS points, arg_max(x.detail, x.points) AS detail
        FROM _nthlayer_pairs q JOIN _nthlayer_metrics x
          ON x.deploy_id = q.deploy_id AND x.service IN (q.service, q.incident_service)
        GROUP BY q.deploy_id, q.incident_id
    ) m ON m.deploy_id = p.deploy_id AND m.incident_id = p.incident_id
    LEFT JOIN _nthlayer_unavailable u ON u.deploy_id = p.deploy_id
    WHERE {scope}
)
""".replace("{time_weight}", str(TIME_WEIGHT)).replace("{time_decay}", str(TIME_DECAY_PER_HOUR)) \
   .replace("{dependency_weight}", str(DEPENDENCY_WEIGHT)).replace("{history_weight}", str(HISTORY_WEIGHT)) \
   .replace("{metrics_weight}", str(METRICS_WEIGHT))


def blast_weight(hops: int) -> Decimal:
    """The blast-radius factor of an incident ``hops`` dependency edges downstream (0 for 0 and 1 hop:
    the deck's dependency factor covers those)."""
    if hops < 2:
        return Decimal(0)
    return (DEPENDENCY_WEIGHT * BLAST_DECAY_PER_HOP ** (hops - 1)).quantize(Decimal("0.0001"))


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


def downstream(edges: Iterable[tuple[str, str]], max_hops: int = MAX_HOPS) -> list[tuple[str, str, int]]:
    """(deployed service, affected service, hops) for every service that depends on another through at
    most ``max_hops`` ``upstream`` edges, with the fewest hops (breadth first); max_hops=1: the direct edges."""
    callers: dict[str, set[str]] = {}
    for deployed, affected in edges:
        if deployed != affected:
            callers.setdefault(deployed, set()).add(affected)
    result = []
    for origin in sorted(callers):
        seen = {origin}
        frontier = [origin]
        for hops in range(1, max_hops + 1):
            reached = sorted({c for s in frontier for c in callers.get(s, ()) if c not in seen})
            result.extend((origin, service, hops) for service in reached)
            seen.update(reached)
            frontier = reached
    return result


def _load(con: duckdb.DuckDBPyConnection, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} ({columns})")
    if rows:
        # One statement with list parameters: executemany costs a round trip per row.
        width = len(rows[0])
        unnests = ", ".join(f"unnest($c{n})" for n in range(width))
        con.execute(f"INSERT INTO {table} SELECT {unnests}", {f"c{n}": [r[n] for r in rows] for n in range(width)})


def _load_evidence(con: duckdb.DuckDBPyConnection, evidence: Evidence | None, reason: str) -> None:
    """Per change and service the best metrics points (and what earned them); per change without
    evidence, why; ``reason`` for the changes ``evidence`` does not cover."""
    points: list[tuple[Any, ...]] = []
    unavailable: list[tuple[Any, ...]] = []
    for deploy_id, found in sorted((evidence or {}).items()):
        if isinstance(found, str):
            unavailable.append((deploy_id, found))
            continue
        best: dict[str, SliStep] = {}
        for step in found:
            if step.service not in best or step.step > best[step.service].step:
                best[step.service] = step
        points.extend((deploy_id, service, metric_points(step.step), json.dumps(step.as_dict(), sort_keys=True))
                      for service, step in sorted(best.items()))
    _load(con, "_nthlayer_metrics", "deploy_id BIGINT, service VARCHAR, points DECIMAL(6, 4), detail VARCHAR",
          points)
    _load(con, "_nthlayer_unavailable", "deploy_id BIGINT, reason VARCHAR", unavailable)
    con.execute("CREATE OR REPLACE TEMP TABLE _nthlayer_default_reason AS SELECT ?::VARCHAR AS reason", [reason])


def score(con: duckdb.DuckDBPyConnection, edges: Iterable[tuple[str, str]],
          window_seconds: int = DEFAULT_WINDOW_SECONDS, deploy_ids: Iterable[int] | None = None,
          evidence: Evidence | None = None, max_hops: int = MAX_HOPS,
          no_evidence: str = "no Prometheus URL given") -> int:
    """(Re)compute correlations for the given changes (default: all); return how many pairs were stored.

    ``edges``: the direct (deployed, affected) edges; dependants up to ``max_hops`` away earn the blast
    radius factor (max_hops=1 and no ``evidence``: the deck's three factors alone). ``evidence``: metric
    evidence per change id; a change it does not cover has its metrics unavailable for ``no_evidence``."""
    _load(con, "_nthlayer_edges", "deploy_service VARCHAR, incident_service VARCHAR, hops INTEGER",
          downstream(edges, max_hops))
    _load(con, "_nthlayer_blast", "hops INTEGER, weight DECIMAL(6, 4)",
          [(h, blast_weight(h)) for h in range(2, max_hops + 1)])
    _load_evidence(con, evidence, no_evidence)
    params: dict[str, Any] = {"window": float(window_seconds)}
    if deploy_ids is None:
        con.execute("DELETE FROM correlations")
        scope = "true"
    else:
        ids = sorted(set(deploy_ids))
        _load(con, "_nthlayer_scope", "id BIGINT", [(i,) for i in ids])
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


def changes_of(con: duckdb.DuckDBPyConnection, service: str, version: str) -> list[tuple[int, datetime, str]]:
    """(id, time, kind) of each recorded change of ``service`` with that version (or change id), oldest first."""
    rows = con.execute("SELECT id, deployed_at, coalesce(kind, 'deploy') FROM deploys WHERE service = ? AND "
                       "version = ? ORDER BY deployed_at, id", [service, version]).fetchall()
    return [(int(r[0]), from_db(r[1]), str(r[2])) for r in rows]  # type: ignore[misc]


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
