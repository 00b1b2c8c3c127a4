"""``nthlayer record-incident``: remember an incident of a service (recording it again updates it)."""
from __future__ import annotations

import argparse
from functools import partial

from nthlayer.ops.events import record_incident
from nthlayer.state.db import add_state_argument, connect, parse_time
from nthlayer.state.events import SEVERITIES, Incident


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
    added = record_incident(partial(connect, args.state), incident)
    print(f"{'recorded' if added else 'updated'}: incident {incident.natural_key} on {args.service}")
    return 0
