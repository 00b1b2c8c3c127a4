"""Deploys and incidents into the state database: one at a time, from JSON/CSV files, or from PagerDuty.

Natural keys make every import idempotent:
- a deploy is (service, version, deployed_at): recording it again changes nothing
  (a commit SHA missing the first time is filled in);
- an incident is its ``id`` (the PagerDuty incident ID, or any ID the file gives),
  else ``<service>@<started_at>``: importing it again updates its resolution,
  severity and title rather than adding a row.

File formats are described in docs/correlation.md.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from generators.errors import UserError
from nthlayer.state.db import format_time, parse_time, to_db

if TYPE_CHECKING:  # duckdb is imported where it is used: a build with no state never loads it
    import duckdb

SEVERITIES = ("critical", "high", "medium", "low", "info")


@dataclass(frozen=True)
class Deploy:
    service: str
    version: str
    deployed_at: datetime
    commit_sha: str | None = None
    source: str = "cli"


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
    rows = [(d.service, d.version, d.commit_sha, to_db(d.deployed_at), d.source) for d in deploys]
    con.execute("CREATE OR REPLACE TEMP TABLE _stage_deploys (service VARCHAR, version VARCHAR, "
                "commit_sha VARCHAR, deployed_at TIMESTAMP, source VARCHAR)")
    _stage(con, "_stage_deploys", rows, 5)
    before = con.execute("SELECT count(*) FROM deploys").fetchall()[0][0]
    con.execute(
        "INSERT INTO deploys (service, version, commit_sha, deployed_at, source) "
        "SELECT service, version, max(commit_sha), deployed_at, min(source) FROM _stage_deploys "
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


# --- files -----------------------------------------------------------------------------------

def _text(record: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = record.get(name)
        if value not in (None, ""):
            return str(value).strip()
    return None


def _required(record: dict[str, Any], where: str, *names: str) -> str:
    value = _text(record, *names)
    if value is None:
        raise UserError(f"{where}: missing '{names[0]}'")
    return value


def _time(value: str, where: str, field: str) -> datetime:
    try:
        return parse_time(value, field)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def record_from_dict(record: dict[str, Any], where: str, source: str) -> Deploy | Incident:
    """A deploy or an incident from one JSON object or CSV row (see docs/correlation.md)."""
    kind = (_text(record, "type", "kind") or "").lower()
    if not kind:
        kind = "deploy" if _text(record, "version") else "incident" if _text(record, "started_at") else ""
    if kind == "deploy":
        return Deploy(
            service=_required(record, where, "service"),
            version=_required(record, where, "version"),
            deployed_at=_time(_required(record, where, "deployed_at", "at"), where, "deployed_at"),
            commit_sha=_text(record, "commit", "commit_sha"),
            source=source)
    if kind == "incident":
        severity = _required(record, where, "severity").lower()
        if severity not in SEVERITIES:
            raise UserError(f"{where}: severity '{severity}' is not one of {', '.join(SEVERITIES)}")
        resolved = _text(record, "resolved_at")
        incident = Incident(
            service=_required(record, where, "service"),
            started_at=_time(_required(record, where, "started_at"), where, "started_at"),
            severity=severity,
            key=_text(record, "id", "incident_id"),
            title=_text(record, "title"),
            resolved_at=_time(resolved, where, "resolved_at") if resolved else None,
            source=source)
        check_incident(incident, where)
        return incident
    raise UserError(f"{where}: cannot tell a deploy from an incident; set 'type' to deploy or incident")


def read_event_file(path: str) -> Iterator[Deploy | Incident]:
    """Every record of a .json or .csv file, checked; errors name the file and record."""
    name = os.path.basename(path)
    source = f"file:{name}"
    try:
        handle = open(path, encoding="utf-8", newline="")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        if path.lower().endswith(".csv"):
            reader = csv.DictReader(handle)
            for number, row in enumerate(reader, start=2):
                yield record_from_dict(row, f"{path}:{number}", source)
            return
        if not path.lower().endswith(".json"):
            raise UserError(f"{path}: unsupported file type (use .json or .csv)")
        try:
            document = json.load(handle)
        except ValueError as exc:
            raise UserError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(document, list):
        items = [(f"{path}: record {n}", r) for n, r in enumerate(document)]
    elif isinstance(document, dict):
        items = []
        for kind in ("deploys", "incidents"):
            entries = document.get(kind, [])
            if not isinstance(entries, list):
                raise UserError(f"{path}: '{kind}' must be a list")
            items += [(f"{path}: {kind}[{n}]", {"type": kind[:-1], **r} if isinstance(r, dict) else r)
                      for n, r in enumerate(entries)]
    else:
        raise UserError(f"{path}: expected a list of records or an object with 'deploys' and 'incidents'")
    for where, record in items:
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected an object")
        yield record_from_dict(record, where, source)


def import_files(con: duckdb.DuckDBPyConnection, paths: Iterable[str]) -> tuple[int, int, int, int]:
    """(deploys read, deploys added, incidents read, incidents added) for the files, all or nothing."""
    deploys: list[Deploy] = []
    incidents: list[Incident] = []
    for path in paths:
        for record in read_event_file(path):
            (deploys if isinstance(record, Deploy) else incidents).append(record)  # type: ignore[arg-type]
    return len(deploys), insert_deploys(con, deploys), len(incidents), insert_incidents(con, incidents)


# --- PagerDuty -------------------------------------------------------------------------------

# PagerDuty incident urgency → our severity when the incident carries no priority.
URGENCY_SEVERITY = {"high": "high", "low": "low"}


def incident_from_pagerduty(item: dict[str, Any], service_names: dict[str, str]) -> Incident:
    """Map a PagerDuty REST v2 incident; the service is ours when its PagerDuty ID is in a spec."""
    service_ref = item.get("service") or {}
    pd_id = service_ref.get("id", "")
    service = service_names.get(pd_id) or service_ref.get("summary") or pd_id or "unknown"
    priority = (item.get("priority") or {}).get("summary", "") if isinstance(item.get("priority"), dict) else ""
    severity = {"p1": "critical", "p2": "high", "p3": "medium", "p4": "low", "p5": "info"}.get(
        str(priority).lower(), URGENCY_SEVERITY.get(str(item.get("urgency", "")).lower(), "medium"))
    resolved = item.get("resolved_at") or (item.get("last_status_change_at") if item.get("status") == "resolved"
                                           else None)
    incident = Incident(
        service=service,
        started_at=parse_time(str(item["created_at"]), "created_at"),
        severity=severity,
        key=f"pagerduty:{item['id']}",
        title=item.get("title") or item.get("summary"),
        resolved_at=parse_time(str(resolved), "resolved_at") if resolved else None,
        source="pagerduty")
    check_incident(incident, f"PagerDuty incident {item['id']}")
    return incident


def fetch_pagerduty_incidents(client: Any, since: datetime, until: datetime,
                              service_names: dict[str, str]) -> list[Incident]:
    """GET /incidents between since and until, every page (the client's iter_all)."""
    params = {"since": format_time(since), "until": format_time(until), "time_zone": "UTC"}
    return [incident_from_pagerduty(item, service_names) for item in client.iter_all("incidents", params=params)]


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
