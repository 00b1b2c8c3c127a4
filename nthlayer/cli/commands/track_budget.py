"""``nthlayer track-budget``: every SLO's error budget from Prometheus, recorded in the state database."""
from __future__ import annotations

import argparse
import json
import sys
from functools import partial

from nthlayer.integrations import prometheus as prom
from nthlayer.cli.argparsing import UsageError, add_service_arguments
from nthlayer.ops.budget import BudgetReport, json_default, table
from nthlayer.ops.tracking import backfill, budget_scope, interval_seconds, track_budget, track_every
from nthlayer.state.db import add_state_argument, connect, format_time, instant, parse_time, utc_now, writer


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


def _warn(exc: prom.PrometheusError) -> None:
    print(f"nthlayer track-budget: warning: {exc}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.interval and args.at:
        raise UsageError("--interval samples the present; it cannot be combined with --at")
    if args.backfill and args.interval:
        raise UsageError("--backfill fills the past once; it cannot be combined with --interval")
    seconds = interval_seconds(args.interval) if args.interval else None
    scope = budget_scope(args.services, None if args.all else args.service)
    client = prom.client_from_args(args)
    opener = partial(connect, args.state)
    if args.backfill:
        end = parse_time(args.at, "--at") if args.at else utc_now()  # the step grid rounds it
        summary = backfill(client, scope.services, end, args.backfill, args.step, opener)
        if args.json:
            print(json.dumps({"backfill": summary.as_dict()}, indent=2))
        else:
            print(summary.text())
        return 0
    if seconds is None:
        _emit(track_budget(client, scope, instant(args.at, "--at"), writer(opener)), args.json, False)
        return 0
    try:
        track_every(client, scope, seconds, writer(opener), partial(_emit, as_json=args.json, compact=True), _warn)
    except KeyboardInterrupt:
        print("nthlayer track-budget: stopped", file=sys.stderr)
    return 0
