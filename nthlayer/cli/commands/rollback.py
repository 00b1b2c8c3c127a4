"""``nthlayer rollback --service S [--dry-run]``: roll the service's ArgoCD application back to its previous
healthy revision, and record it (docs/rollback.md)."""
from __future__ import annotations

import argparse
import os
from functools import partial

from generators.errors import UserError
from nthlayer.cli.argparsing import UsageError
from nthlayer.ops.gate import service_and_graph
from nthlayer.ops.rollback import ARGOCD_URL_ENV, RollbackOutcome, roll_back
from nthlayer.state.db import add_state_argument, connect


def add_argocd_arguments(parser: argparse.ArgumentParser) -> None:
    """--argocd-app and --argocd-url, shared with check-deploy --on-block rollback."""
    parser.add_argument("--argocd-app", metavar="NAME",
                        help="the ArgoCD application (default: the spec's deploy.argocd_app)")
    parser.add_argument("--argocd-url", metavar="URL", default=None,
                        help=f"ArgoCD's https URL (default: ${ARGOCD_URL_ENV}); token: argocd.token "
                             "($ARGOCD_AUTH_TOKEN[_FILE] or 'nthlayer config set argocd.token …')")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True, help="the service, by name, from --services")
    parser.add_argument("--services", metavar="DIR", default="services", help="spec folder (default: services/)")
    add_argocd_arguments(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be done and change nothing (works without an ArgoCD token)")
    parser.add_argument("--reason", default="manual rollback", help="recorded with the rollback (default: manual)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for ArgoCD (default 30)")
    add_state_argument(parser)


def rollback_from_args(args: argparse.Namespace, service: str, app: str | None, reason: str, dry_run: bool,
                       timeout: float = 30.0) -> RollbackOutcome:
    """The rollback the arguments describe (the application: --argocd-app, else the spec's)."""
    if not app:
        raise UsageError(f"no ArgoCD application for {service}: add 'deploy: {{argocd_app: NAME}}' to its spec "
                         "or pass --argocd-app")
    return roll_back(service, app, args.argocd_url or os.environ.get(ARGOCD_URL_ENV), partial(connect, args.state),
                     reason=reason, dry_run=dry_run, timeout=timeout)


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise UserError("--timeout must be > 0")
    service, _ = service_and_graph(args.services, args.service)
    outcome = rollback_from_args(args, service.name, args.argocd_app or service.argocd_app, args.reason,
                                 args.dry_run, args.timeout)
    for line in outcome.lines:
        print(line)
    return 0
