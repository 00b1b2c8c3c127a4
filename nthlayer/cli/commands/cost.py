"""``nthlayer cost``: incident minutes, pages, budget minutes spent, an optional money figure and the series
NthLayer's rules add, per service and team (docs/cost.md)."""
from __future__ import annotations

import argparse
import json

from nthlayer.buildsys.project import load_services
from nthlayer.config import load_config
from nthlayer.integrations import prometheus as prom
from nthlayer.ops.budget import json_default
from nthlayer.ops.cost import cost_document, cost_settings, cost_text, measure_costs, period_days
from nthlayer.state.db import add_state_argument, parse_time, state_path, utc_now
from generators.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--service", action="append", metavar="NAME", help="this service (repeatable)")
    which.add_argument("--all", action="store_true", help="every service under --services (the default)")
    parser.add_argument("--team", metavar="TEAM", help="only the services of this team")
    parser.add_argument("--since", metavar="DAYS", default="30d",
                        help="the period: this many days (30d) or weeks (4w) before --at (default: 30d)")
    parser.add_argument("--at", metavar="TIME", help="end of the period (RFC 3339 or unix seconds; default: now)")
    parser.add_argument("--services", metavar="DIR", default="services", help="spec folder (default: services/)")
    parser.add_argument("--json", action="store_true", help="JSON output: one 'cost' object, for dashboards")
    prom.add_arguments(parser)
    add_state_argument(parser)


def run(args: argparse.Namespace) -> int:
    days = period_days(args.since)
    end = parse_time(args.at, "--at") if args.at else utc_now().replace(microsecond=0)
    config = load_config()
    settings = cost_settings(config)
    services = load_services(args.services, args.service)
    if args.team is not None:
        services = [s for s in services if s.team == args.team]
        if not services:
            raise UserError(f"no service of team {args.team!r} in {args.services}"
                            + (" among those named by --service" if args.service else ""))
    client = prom.client_from_args(args) if args.prometheus else None
    costs, measurement = measure_costs(services, state_path(args.state), end, days, settings, client)
    if args.json:
        print(json.dumps(cost_document(costs, end, days, settings, measurement), indent=2, default=json_default))
    else:
        print(cost_text(costs, end, days, settings, measurement, config.path))
    return 0
