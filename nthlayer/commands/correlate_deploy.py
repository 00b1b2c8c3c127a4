"""``nthlayer correlate-deploy``: how likely a deploy caused the incidents after it; exit 2 means BLOCK."""
from __future__ import annotations

import argparse
import json
import os
import re

from generators.errors import UserError
from generators.slo_maths import duration_seconds
from nthlayer.budget import json_default, load_services
from nthlayer.correlation import BLOCK_ABOVE, Correlation, correlations_of, deploys_of, dependency_edges, score
from nthlayer.gate import EXIT_APPROVE, EXIT_BLOCK
from nthlayer.state import add_state_argument, connect, format_time, insert_audit

_DURATION = re.compile(r"^[1-9][0-9]*[smhdw]$")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deploy", required=True, metavar="VERSION", help="the deployed version")
    parser.add_argument("--service", required=True, help="the deployed service")
    parser.add_argument("--time-window", default="1h", metavar="DURATION",
                        help="incidents that started up to this long after the deploy are candidates (default: 1h); "
                             "one that started before it never is")
    parser.add_argument("--services", metavar="DIR", default="services",
                        help="specs giving the dependency graph (default: services/)")
    parser.add_argument("--json", action="store_true", help="JSON output")
    add_state_argument(parser)


def _line(c: Correlation) -> str:
    f = c.factors
    return (f"  {c.incident_key}  {c.incident_service}  {c.severity}  started {format_time(c.started_at)}  "
            f"confidence {c.confidence * 100:.0f}%  (time {f['time']}, dependency {f['dependency']}, "
            f"history {f['history']})  {c.action}")


def run(args: argparse.Namespace) -> int:
    if not _DURATION.fullmatch(args.time_window):
        raise UserError(f"--time-window {args.time_window!r} is not a duration such as 30m, 1h or 2d")
    window = duration_seconds(args.time_window)
    edges = dependency_edges(load_services(args.services)) if os.path.isdir(args.services) else []
    with connect(args.state) as con:
        ids = deploys_of(con, args.service, args.deploy)
        if not ids:
            raise UserError(f"no recorded deploy of {args.service} version {args.deploy}; "
                            "record it with 'nthlayer record-deploy' or 'nthlayer import-events'")
        score(con, edges, window, ids)
        found = [c for c in correlations_of(con, ids) if c.confidence > 0]
        blocked = any(c.confidence > BLOCK_ABOVE for c in found)
        insert_audit(con, "correlate-deploy", args.service, "block" if blocked else "ok",
                     {"version": args.deploy, "time_window": args.time_window,
                      "top_confidence": str(found[0].confidence) if found else None})
    action = "BLOCK" if blocked else "INVESTIGATE" if any(c.action == "INVESTIGATE" for c in found) else "NONE"
    if args.json:
        print(json.dumps({
            "service": args.service, "version": args.deploy, "time_window": args.time_window, "action": action,
            "incidents": [{"id": c.incident_key, "service": c.incident_service, "severity": c.severity,
                           "title": c.title, "started_at": format_time(c.started_at),
                           "deployed_at": format_time(c.deployed_at), "confidence": c.confidence,
                           "factors": c.factors, "action": c.action} for c in found],
        }, indent=2, default=json_default))
    else:
        print(f"{args.service} {args.deploy}: {len(found)} correlated incident{'s' if len(found) != 1 else ''} "
              f"within {args.time_window}; action: {action}")
        for c in found:
            print(_line(c))
    return EXIT_BLOCK if blocked else EXIT_APPROVE
