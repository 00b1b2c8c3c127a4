"""``nthlayer report``: the HTML reliability report, out/reports/index.html and one page per service."""
from __future__ import annotations

import argparse
import os

from nthlayer.buildsys.project import load_services
from nthlayer.state.correlation import dependency_edges
from nthlayer.buildsys.report import REPORT_DIR
from nthlayer.ops.report import write_report
from nthlayer.state.db import add_state_argument, state_path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--services", metavar="DIR", default="services", help="spec folder (default: services/)")
    parser.add_argument("--out", metavar="DIR", default="out",
                        help="output folder; the report goes to DIR/reports/ (default: out/)")
    add_state_argument(parser)


def run(args: argparse.Namespace) -> int:
    services = load_services(args.services)
    changed = write_report(state_path(args.state), services, dependency_edges(services), args.out)
    index = os.path.join(args.out, REPORT_DIR, "index.html")
    print(f"{index}: {len(services)} service{'s' if len(services) != 1 else ''}, "
          f"{len(changed)} file{'s' if len(changed) != 1 else ''} written")
    return 0
