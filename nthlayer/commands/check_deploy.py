"""``nthlayer check-deploy``: approve (0) or block (2) a deploy on its error budget; 3 = cannot decide."""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from typing import Any

from generators.errors import UserError
from generators.model import Service
from nthlayer import prometheus as prom
from nthlayer.argparsing import UsageError
from nthlayer.budget import BudgetReport, evaluate, json_default, load_services
from nthlayer.correlation import Correlation, dependency_edges, open_incident_suspects
from nthlayer.gate import RECENT_DEPLOY_SECONDS, Decision, decide, render
from nthlayer.state import (StateUnavailable, add_state_argument, connect, format_time, insert_audit, parse_time,
                            utc_now)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", metavar="SPEC", help="the service's spec file")
    parser.add_argument("--service", help="the service, by name, from --services (instead of SPEC)")
    parser.add_argument("--services", metavar="DIR", default="services",
                        help="spec folder: --service lookup and the dependency graph (default: services/)")
    parser.add_argument("--version", dest="deploy_version", metavar="VERSION",
                        help="the version about to be deployed (recorded in the audit trail)")
    prom.add_arguments(parser)
    parser.add_argument("--at", metavar="TIME", help="decide as of this instant (RFC 3339 or unix seconds)")
    parser.add_argument("--json", action="store_true", help="JSON output")
    parser.add_argument("--on-unknown", choices=("approve", "block", "tier"), default=None,
                        help="when the gate cannot decide (Prometheus unreachable or too slow, no data, state "
                             "database locked or unreadable): approve, block, or "
                             "apply the tier table's default (tier 1: block, tiers 2-3: approve); "
                             "without it the exit code is 3")
    add_state_argument(parser)


def _service(args: argparse.Namespace) -> tuple[Service, list[Service]]:
    if bool(args.spec) == bool(args.service):
        raise UsageError("give either SPEC or --service NAME")
    everyone = load_services(args.services) if os.path.isdir(args.services) else []
    if args.service:
        matches = [s for s in everyone if s.name == args.service]
        if not matches:
            raise UserError(f"no spec for service '{args.service}' in {args.services}")
        return matches[0], everyone
    from generators.spec import load_spec

    if not os.path.isfile(args.spec):
        raise UserError(f"no such spec file: {args.spec}")
    service = load_spec(args.spec).service
    return service, [s for s in everyone if s.name != service.name] + [service]


def run(args: argparse.Namespace) -> int:
    service, everyone = _service(args)
    at = parse_time(args.at, "--at") if args.at else utc_now().replace(microsecond=0)
    client = prom.client_from_args(args)
    budgets: list[BudgetReport] | None = None
    unavailable = None
    try:
        budgets = evaluate(client, [service], at)
    except prom.PrometheusError as exc:
        unavailable = str(exc)
    edges = dependency_edges(everyone)
    suspects: list[Correlation] = []
    try:
        with connect(args.state) as con:
            suspects = open_incident_suspects(con, service.name, edges, at, RECENT_DEPLOY_SECONDS)
            decision = decide(service, budgets, unavailable, suspects, args.on_unknown)
            insert_audit(con, "check-deploy", service.name, decision.result, _audit_details(args, decision, at, client))
    except StateUnavailable as exc:
        # Without the state no open incident can be ruled out: "cannot decide" (exit 3, or --on-unknown),
        # unless the budget alone blocks. There is nowhere to record the decision.
        suspects = []
        decision = decide(service, budgets, unavailable, [], args.on_unknown, state_problem=str(exc))
        print("nthlayer check-deploy: warning: the decision was not recorded in the audit trail", file=sys.stderr)
    if args.json:
        print(json.dumps(decision.as_dict(budgets or [], suspects), indent=2, default=json_default))
    else:
        print(render(decision), file=sys.stdout)
    return decision.exit_code


def _audit_details(args: argparse.Namespace, decision: Decision, at: datetime, client: prom.PrometheusClient
                   ) -> dict[str, Any]:
    return {
        "version": args.deploy_version, "at": format_time(at), "exit_code": decision.exit_code,
        "reasons": decision.reasons, "warnings": decision.warnings, "on_unknown": decision.on_unknown,
        "worst_slo": decision.worst.slo if decision.worst else None,
        "worst_remaining_percent": str(decision.worst.remaining_percent) if decision.worst else None,
        "prometheus": client.display_url,
    }
