"""``nthlayer track-budget``: every SLO's error budget from Prometheus, recorded in the state database."""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime

from generators.errors import UserError
from generators.model import Service
from generators.slo_maths import duration_seconds
from nthlayer.integrations import prometheus as prom
from nthlayer.cli.argparsing import UsageError
from nthlayer.buildsys.project import load_services
from nthlayer.ops.composites import Bound, budget_composites
from nthlayer.ops.budget import BudgetReport, evaluate, json_default, record_budgets, table
from nthlayer.state.db import add_state_argument, connect, format_time, parse_time, utc_now

_DURATION = re.compile(r"^[1-9][0-9]*[smhdw]$")


def configure(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--service", action="append", metavar="NAME", help="this service (repeatable)")
    which.add_argument("--all", action="store_true", help="every service under --services")
    parser.add_argument("--services", metavar="DIR", default="services", help="spec folder (default: services/)")
    prom.add_arguments(parser)
    parser.add_argument("--at", metavar="TIME", help="evaluate at this instant (RFC 3339 or unix seconds; "
                                                     "default: now)")
    parser.add_argument("--interval", metavar="DURATION",
                        help="sample every DURATION (e.g. 5m) until interrupted, recording each sample")
    parser.add_argument("--json", action="store_true", help="JSON output (one line per sample with --interval)")
    add_state_argument(parser)


def _emit(reports: list[BudgetReport], as_json: bool, compact: bool) -> None:
    if as_json:
        document = {"budgets": [r.as_dict() for r in reports]}
        if compact:
            print(json.dumps(document, default=json_default, separators=(",", ":")), flush=True)
        else:
            print(json.dumps(document, default=json_default, indent=2))
        return
    if reports:
        print(f"error budgets at {format_time(reports[0].evaluated_at)}")
    print(table(reports), flush=True)


def _sample(args: argparse.Namespace, client: prom.PrometheusClient, services: list[Service], at: datetime,
            compact: bool, composites: list[Bound]) -> list[BudgetReport]:
    client.restart_deadline()  # --prometheus-deadline bounds each sample, not the whole loop
    reports = evaluate(client, services, at, composites)
    with connect(args.state) as con:
        record_budgets(con, reports)
    _emit(reports, args.json, compact)
    return reports


def run(args: argparse.Namespace) -> int:
    if args.interval and args.at:
        raise UsageError("--interval samples the present; it cannot be combined with --at")
    if args.interval and not _DURATION.fullmatch(args.interval):
        raise UserError(f"--interval {args.interval!r} is not a duration such as 30s, 5m or 1h")
    services = load_services(args.services, None if args.all else args.service)
    composites = budget_composites(args.services, None if args.all else args.service)
    client = prom.client_from_args(args)
    if not args.interval:
        at = parse_time(args.at, "--at") if args.at else utc_now().replace(microsecond=0)
        _sample(args, client, services, at, False, composites)
        return 0
    seconds = duration_seconds(args.interval)
    try:
        while True:
            started = time.monotonic()
            try:
                _sample(args, client, services, utc_now().replace(microsecond=0), True, composites)
            except prom.PrometheusError as exc:
                # A monitoring loop outlives a Prometheus restart: report and try again next tick.
                print(f"nthlayer track-budget: warning: {exc}", file=sys.stderr, flush=True)
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    except KeyboardInterrupt:
        print("nthlayer track-budget: stopped", file=sys.stderr)
        return 0
