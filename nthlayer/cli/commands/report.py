"""``nthlayer report``: the HTML reliability report, out/reports/index.html and one page per service."""
from __future__ import annotations

import argparse

from nthlayer.ops.report import report_project
from nthlayer.state.db import add_state_argument


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--services", metavar="DIR", default="services", help="spec folder (default: services/)")
    parser.add_argument("--out", metavar="DIR", default="out",
                        help="output folder; the report goes to DIR/reports/ (default: out/)")
    add_state_argument(parser)


def run(args: argparse.Namespace) -> int:
    print(report_project(args.services, args.state, args.out).text())
    return 0
