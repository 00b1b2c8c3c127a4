"""Deploys and incidents in the state database: the records, their checks, and their insertion.

Natural keys make every import idempotent:
- a deploy is (service, version, deployed_at): recording it again changes nothing
  (a commit SHA missing the first time is filled in);
- an incident is its ``id`` (the PagerDuty incident ID, or any ID the file gives),
  else ``<service>@<started_at>``: importing it again updates its resolution,
  severity and title rather than adding a row.

Reading them from JSON/CSV files or from PagerDuty is nthlayer.ops.events (formats: docs/correlation.md).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from generators.errors import UserError
from nthlayer.state.db import format_time, to_db

if TYPE_CHECKING:  # duckdb is imported where it is used: a build with no state never loads it
    import duckdb

SEVERITIES = ("critical", "high", "medium", "low", "info")
# What a row of the deploys table may record: a deploy, or another change scored like one (record-change).
CHANGE_KINDS = ("deploy", "config", "flag", "infra")


@dataclass(frozen=True)
class Deploy:
    service: str
    version: str
    deployed_at: datetime
    commit_sha: str | None = None
    source: str = "cli"
    kind: str = "deploy"  # one of CHANGE_KINDS


@dataclass(frozen=True)
class Incident:
    service: str
    started_at: datetime
    severity: str
    key: str | None = None
    title: str | None = None
    resolved_at: datetime | None = None
    source: str = "cli"

    @property
    def natural_key(self) -> str:
        return self.key or f"{self.service}@{format_time(self.started_at)}"


def check_incident(incident: Incident, where: str = "") -> None:
    prefix = f"{where}: " if where else ""
    if incident.resolved_at is not None and incident.resolved_at < incident.started_at:
        raise UserError(f"{prefix}incident resolved ({format_time(incident.resolved_at)}) before it started "
                        f"({format_time(incident.started_at)})")


def _stage(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple[Any, ...]], width: int) -> None:
    """Fill a staging table in one statement (column lists + unnest): executemany pays per row."""
    if not rows:
        return
    columns = {f"c{n}": [row[n] for row in rows] for n in range(width)}
    unnests = ", ".join(f"unnest(${name})" for name in columns)
    con.execute(f"INSERT INTO {table} SELECT {unnests}", columns)


def insert_deploys(con: duckdb.DuckDBPyConnection, deploys: Iterable[Deploy]) -> int:
    """Upsert deploys through a staging table (one statement, however many rows); return rows added."""
    rows = [(d.service, d.version, d.commit_sha, to_db(d.deployed_at), d.source, d.kind) for d in deploys]
    con.execute("CREATE OR REPLACE TEMP TABLE _stage_deploys (service VARCHAR, version VARCHAR, "
                "commit_sha VARCHAR, deployed_at TIMESTAMP, source VARCHAR, kind VARCHAR)")
    _stage(con, "_stage_deploys", rows, 6)
    before = con.execute("SELECT count(*) FROM deploys").fetchall()[0][0]
    # The kind of a change already stored is kept: the natural key names one change.
    con.execute(
        "INSERT INTO deploys (service, version, commit_sha, deployed_at, source, kind) "
        "SELECT service, version, max(commit_sha), deployed_at, min(source), min(kind) FROM _stage_deploys "
        "GROUP BY service, version, deployed_at ORDER BY deployed_at, service, version "
        "ON CONFLICT (service, version, deployed_at) DO UPDATE SET "
        "commit_sha = coalesce(deploys.commit_sha, excluded.commit_sha)")
    return int(con.execute("SELECT count(*) FROM deploys").fetchall()[0][0] - before)


def insert_incidents(con: duckdb.DuckDBPyConnection, incidents: Iterable[Incident]) -> int:
    """Upsert incidents by natural key; return rows added (updates of known incidents are not counted)."""
    latest: dict[str, Incident] = {}
    for incident in incidents:
        latest[incident.natural_key] = incident  # the last record of a key in the input wins
    rows = [(key, i.service, i.title, i.severity, to_db(i.started_at),
             None if i.resolved_at is None else to_db(i.resolved_at), i.source)
            for key, i in sorted(latest.items())]
    con.execute("CREATE OR REPLACE TEMP TABLE _stage_incidents (incident_key VARCHAR, service VARCHAR, "
                "title VARCHAR, severity VARCHAR, started_at TIMESTAMP, resolved_at TIMESTAMP, source VARCHAR)")
    _stage(con, "_stage_incidents", rows, 7)
    before = con.execute("SELECT count(*) FROM incidents").fetchall()[0][0]
    con.execute(
        "INSERT INTO incidents (incident_key, service, title, severity, started_at, resolved_at, source) "
        "SELECT * FROM _stage_incidents ORDER BY started_at, incident_key "
        "ON CONFLICT (incident_key) DO UPDATE SET title = coalesce(excluded.title, incidents.title), "
        "severity = excluded.severity, resolved_at = coalesce(excluded.resolved_at, incidents.resolved_at)")
    return int(con.execute("SELECT count(*) FROM incidents").fetchall()[0][0] - before)


# --- fingerprint -----------------------------------------------------------------------------

def state_fingerprint(path: str, lock_timeout: float | None = None) -> str:
    """A hash of the deploys and incidents (content, not file times): doit's ``uptodate`` for reports.

    A missing database fingerprints like an empty one, and reading never creates the file.
    ``lock_timeout``: how long to wait for a locked file (default: nthlayer.state.db's).
    """
    from nthlayer.state.db import connect

    parts = ["deploys:0:0", "incidents:0:0"]
    if os.path.exists(path):
        with connect(path, timeout=lock_timeout) as con:
            # bit_xor of per-row hashes: order-independent, changes when any row's content changes.
            deploys = con.execute("SELECT count(*), coalesce(bit_xor(hash(id, service, version, commit_sha, "
                                  "deployed_at)), 0) FROM deploys").fetchall()[0]
            incidents = con.execute("SELECT count(*), coalesce(bit_xor(hash(id, incident_key, service, title, "
                                    "severity, started_at, resolved_at)), 0) FROM incidents").fetchall()[0]
        parts = [f"deploys:{deploys[0]}:{deploys[1]}", f"incidents:{incidents[0]}:{incidents[1]}"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()
