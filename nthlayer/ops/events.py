"""Deploys and incidents from outside: ``record-incident``, ``import-events`` (JSON/CSV files, or the
PagerDuty incidents API). File formats: docs/correlation.md. Every import is idempotent (natural keys,
nthlayer.state.events) and all or nothing; each writes one audit row."""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from generators.errors import UserError
from nthlayer.state.db import Opener, format_time, insert_audit, parse_time
from nthlayer.state.events import CHANGE_KINDS, SEVERITIES, Deploy, Incident, check_incident, insert_deploys, insert_incidents

if TYPE_CHECKING:
    import duckdb


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
    if kind in CHANGE_KINDS:  # a deploy, or a config/flag/infra change identified by its version or id
        return Deploy(
            service=_required(record, where, "service"),
            version=_required(record, where, "version") if kind == "deploy" else
            _required(record, where, "id", "version"),
            deployed_at=_time(_required(record, where, "deployed_at", "at"), where, "deployed_at"),
            commit_sha=_text(record, "commit", "commit_sha"),
            source=source, kind=kind)
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
    if kind:
        raise UserError(f"{where}: type '{kind}' is not one of {', '.join(CHANGE_KINDS)}, incident")
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


# --- the operations --------------------------------------------------------------------------

def record_incident(opener: Opener, incident: Incident) -> bool:
    """Record one incident (again: update its resolution, severity, title); whether it was new."""
    check_incident(incident)
    with opener() as con:
        added = insert_incidents(con, [incident]) > 0
        insert_audit(con, "record-incident", incident.service, "recorded" if added else "updated",
                     {"id": incident.natural_key, "severity": incident.severity,
                      "started_at": format_time(incident.started_at),
                      "resolved_at": format_time(incident.resolved_at) if incident.resolved_at else None})
    return added


@dataclass(frozen=True)
class ImportCounts:
    deploys_read: int = 0
    deploys_added: int = 0
    incidents_read: int = 0
    incidents_added: int = 0


def import_event_files(opener: Opener, paths: list[str]) -> ImportCounts:
    """Import deploys and incidents from .json/.csv files, all or nothing (a bad record imports none)."""
    with opener() as con:
        counts = ImportCounts(*import_files(con, paths))
        insert_audit(con, "import-events", None, "imported",
                     {"files": [os.path.basename(f) for f in paths], "deploys_read": counts.deploys_read,
                      "deploys_added": counts.deploys_added, "incidents_read": counts.incidents_read,
                      "incidents_added": counts.incidents_added})
    return counts


def import_pagerduty_incidents(opener: Opener, client: Any, since: datetime, until: datetime,
                               service_names: dict[str, str]) -> ImportCounts:
    """Import the PagerDuty incidents created between ``since`` and ``until`` (``service_names``: PagerDuty
    service ID → our service, from the specs). The client's errors are worded without the key."""
    from nthlayer.integrations.pagerduty import explain

    try:
        incidents = fetch_pagerduty_incidents(client, since, until, service_names)
    except UserError:
        raise
    except Exception as exc:  # the client's errors: explain() words them without the key
        raise UserError(explain(exc, "listing incidents")) from None
    with opener() as con:
        added = insert_incidents(con, incidents)
        insert_audit(con, "import-events", None, "imported",
                     {"source": "pagerduty", "since": format_time(since), "until": format_time(until),
                      "incidents_read": len(incidents), "incidents_added": added})
    return ImportCounts(incidents_read=len(incidents), incidents_added=added)
