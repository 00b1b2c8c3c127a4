"""``nthlayer check-deploy``: approve (0) or block (2) a deploy on its error budget; 3 = cannot decide."""
from __future__ import annotations

import argparse
import json
import sys
from functools import partial

from generators.errors import UserError
from generators.model import Service
from nthlayer.integrations import prometheus as prom
from nthlayer.cli.argparsing import UsageError
from nthlayer.cli import api_client
from nthlayer.cli.commands.rollback import add_argocd_arguments, rollback_from_args
from nthlayer.ops.budget import json_default
from nthlayer.ops.gate import EXIT_UNKNOWN, check_deploy
from nthlayer.state.db import add_state_argument, connect, format_time, instant


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
    parser.add_argument("--on-block", choices=("rollback",), default=None,
                        help="when the gate blocks, roll the service's ArgoCD application back to its previous "
                             "healthy revision (docs/rollback.md); the exit code stays 2")
    add_argocd_arguments(parser)
    add_state_argument(parser)
    api_client.add_argument(parser)


def _run_remote(args: argparse.Namespace) -> int:
    if args.on_block:
        raise UsageError("--on-block rollback needs the local state database: not available with --api")
    if args.spec or not args.service:
        raise UsageError("with --api, name the service with --service (the server reads its own specs)")
    at = instant(args.at, "--at")
    try:
        answer = api_client.post(args.api, "/api/v1/deploys/check", {
            "service": args.service, "version": args.deploy_version, "at": format_time(at),
            "on_unknown": args.on_unknown}, "check-deploy")
    except api_client.ApiUnreachable as exc:
        # No server, no decision: the same "cannot decide" as an unreachable Prometheus.
        print(f"nthlayer check-deploy: {exc}; cannot decide", file=sys.stderr)
        return EXIT_UNKNOWN
    if not answer["recorded"]:
        print("nthlayer check-deploy: warning: the decision was not recorded in the audit trail", file=sys.stderr)
    if args.json:
        api_client.print_json(answer, "recorded", "text")
    else:
        print(answer["text"])
    return int(answer["exit_code"])


def run(args: argparse.Namespace) -> int:
    if args.api:
        return _run_remote(args)
    if bool(args.spec) == bool(args.service):
        raise UsageError("give either SPEC or --service NAME")
    outcome = check_deploy(args.services, instant(args.at, "--at"), prom.client_from_args(args), args.on_unknown,
                           partial(connect, args.state), name=args.service, spec_path=args.spec,
                           version=args.deploy_version)
    if not outcome.recorded:
        print("nthlayer check-deploy: warning: the decision was not recorded in the audit trail", file=sys.stderr)
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2, default=json_default))
    else:
        print(outcome.text(), file=sys.stdout)
    if args.on_block == "rollback" and outcome.blocked:
        assert outcome.service is not None
        _roll_back(args, outcome.service, outcome.decision.reasons)
    return outcome.exit_code


def _roll_back(args: argparse.Namespace, service: Service, reasons: list[str]) -> None:
    """--on-block rollback: the gate has blocked. A refused rollback is an error line; the exit stays 2."""
    try:
        outcome = rollback_from_args(args, service.name, args.argocd_app or service.argocd_app,
                                     "check-deploy blocked: " + "; ".join(reasons), dry_run=False)
    except UserError as exc:
        print(f"nthlayer check-deploy: error: rollback: {exc}", file=sys.stderr)
        return
    for line in outcome.lines:  # with --json, stdout holds the decision document only
        print(line, file=sys.stderr if args.json else sys.stdout)
