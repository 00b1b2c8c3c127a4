"""``nthlayer correlate-deploy``: how likely a deploy caused the incidents after it; exit 2 means BLOCK."""
from __future__ import annotations

import argparse
import json
import os

from nthlayer.budget import json_default, load_services
from nthlayer.correlation import dependency_edges
from nthlayer.ops.deploys import correlate, window_seconds
from nthlayer.state import add_state_argument, connect


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


def run(args: argparse.Namespace) -> int:
    window_seconds(args.time_window)  # a bad duration is refused before any spec is read
    edges = dependency_edges(load_services(args.services)) if os.path.isdir(args.services) else []
    with connect(args.state) as con:
        outcome = correlate(con, args.service, args.deploy, args.time_window, edges)
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2, default=json_default))
    else:
        print(outcome.text())
    return outcome.exit_code
