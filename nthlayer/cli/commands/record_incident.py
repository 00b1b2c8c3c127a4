"""``nthlayer record-incident``: remember an incident of a service (recording it again updates it)."""
from __future__ import annotations

import argparse

from nthlayer.state.events import SEVERITIES, Incident, check_incident, insert_incidents
from nthlayer.state.db import add_state_argument, connect, format_time, insert_audit, parse_time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True, help="the service that had the incident")
    parser.add_argument("--started-at", required=True, metavar="TIME", help="RFC 3339 or unix seconds")
    parser.add_argument("--resolved-at", metavar="TIME", help="RFC 3339 or unix seconds (omit while open)")
    parser.add_argument("--severity", required=True, type=str.lower, choices=SEVERITIES,
                        help="how bad it was (case does not matter)")
    parser.add_argument("--id", help="the incident's ID elsewhere (e.g. PagerDuty); the key for re-recording "
                                     "(default: SERVICE@STARTED_AT)")
    parser.add_argument("--title", help="a one-line description")
    add_state_argument(parser)


def run(args: argparse.Namespace) -> int:
    incident = Incident(
        service=args.service, started_at=parse_time(args.started_at, "--started-at"), severity=args.severity,
        key=args.id, title=args.title,
        resolved_at=parse_time(args.resolved_at, "--resolved-at") if args.resolved_at else None)
    check_incident(incident)
    with connect(args.state) as con:
        added = insert_incidents(con, [incident])
        insert_audit(con, "record-incident", args.service, "recorded" if added else "updated",
                     {"id": incident.natural_key, "severity": incident.severity,
                      "started_at": format_time(incident.started_at),
                      "resolved_at": format_time(incident.resolved_at) if incident.resolved_at else None})
    print(f"{'recorded' if added else 'updated'}: incident {incident.natural_key} on {args.service}")
    return 0
