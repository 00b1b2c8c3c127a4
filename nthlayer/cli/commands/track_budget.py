"""``nthlayer track-budget``: every SLO's error budget from Prometheus, recorded in the state database."""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime, timezone

from generators.errors import UserError
from generators.model import Service
from generators.slo_maths import duration_seconds
from nthlayer.integrations import prometheus as prom
from nthlayer.cli.argparsing import UsageError, add_service_arguments
from nthlayer.buildsys.project import load_services
from nthlayer.ops.composites import Bound, budget_composites
from nthlayer.ops.budget import BudgetReport, evaluate, json_default, record_budgets, table
from nthlayer.ops.budget_history import backfill_history, sample_history, step_grid
from nthlayer.state.db import add_state_argument, connect, format_time, parse_time, utc_now
from nthlayer.state.history import record_history, write_columns

_DURATION = re.compile(r"^[1-9][0-9]*[smhdw]$")


def configure(parser: argparse.ArgumentParser) -> None:
    add_service_arguments(parser)
    prom.add_arguments(parser)
    parser.add_argument("--at", metavar="TIME", help="evaluate at this instant (RFC 3339 or unix seconds; "
                                                     "default: now)")
    parser.add_argument("--interval", metavar="DURATION",
                        help="sample every DURATION (e.g. 5m) until interrupted, recording each sample")
    parser.add_argument("--json", action="store_true", help="JSON output (one line per sample with --interval)")
    parser.add_argument("--backfill", metavar="DURATION",
                        help="instead of one sample: fill the budget history of the last DURATION (e.g. 30d, "
                             "ending at --at or now) from Prometheus range queries")
    parser.add_argument("--step", metavar="DURATION", default="1h",
                        help="--backfill: one history point every DURATION, a divisor of a day (default: 1h)")
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
    history = sample_history(client, services, at)
    with connect(args.state) as con:
        record_budgets(con, reports)
        record_history(con, history)
    _emit(reports, args.json, compact)
    return reports


def run(args: argparse.Namespace) -> int:
    if args.interval and args.at:
        raise UsageError("--interval samples the present; it cannot be combined with --at")
    if args.backfill and args.interval:
        raise UsageError("--backfill fills the past once; it cannot be combined with --interval")
    if args.interval and not _DURATION.fullmatch(args.interval):
        raise UserError(f"--interval {args.interval!r} is not a duration such as 30s, 5m or 1h")
    services = load_services(args.services, None if args.all else args.service)
    composites = budget_composites(args.services, None if args.all else args.service)
    client = prom.client_from_args(args)
    if args.backfill:
        return _backfill(args, client, services)
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


def _backfill(args: argparse.Namespace, client: prom.PrometheusClient, services: list[Service]) -> int:
    """track-budget --backfill SPAN --step STEP: the history of (end − SPAN, end], end = --at or now."""
    for option, value in (("--backfill", args.backfill), ("--step", args.step)):
        if not _DURATION.fullmatch(value):
            raise UserError(f"{option} {value!r} is not a duration such as 30d, 6h or 5m")
    span, step = duration_seconds(args.backfill), duration_seconds(args.step)
    if 86400 % step:
        raise UserError(f"--step {args.step} must divide a day (5m, 15m, 1h, 6h, 1d …): the history's "
                        "1d/7d/28d/30d figures are sums of whole steps")
    if span < step:
        raise UserError(f"--backfill {args.backfill} is shorter than one --step ({args.step})")
    end = parse_time(args.at, "--at") if args.at else utc_now()
    instants = step_grid(end, span, step)

    def write(columns: dict) -> None:
        with connect(args.state) as con:  # one short transaction per chunk: others may use the state between
            write_columns(con, columns)

    written = backfill_history(client, services, end, span, step, write)
    slos = sum(len(s.slos) for s in services)
    summary = {"from": format_time(datetime.fromtimestamp(instants[0], timezone.utc)),
               "to": format_time(datetime.fromtimestamp(instants[-1], timezone.utc)),
               "step": args.step, "slos": slos, "points": written}
    if args.json:
        print(json.dumps({"backfill": summary}, indent=2))
    else:
        print(f"budget history from {summary['from']} to {summary['to']} every {args.step}: "
              f"{written} point{'s' if written != 1 else ''} for {slos} SLO{'s' if slos != 1 else ''}")
    return 0
