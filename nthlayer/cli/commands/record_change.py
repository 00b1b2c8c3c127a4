"""``nthlayer record-change``: remember a config, flag or infra change of a service, scored like a deploy."""
from __future__ import annotations

import argparse
from functools import partial

from nthlayer.ops.deploys import deploy_text, record_deploy
from nthlayer.state.db import add_state_argument, connect, instant
from nthlayer.state.events import CHANGE_KINDS, Deploy


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True, help="the changed service")
    parser.add_argument("--kind", required=True, type=str.lower, choices=[k for k in CHANGE_KINDS if k != "deploy"],
                        help="what changed: its configuration, a feature flag, or the infrastructure under it")
    parser.add_argument("--id", required=True, metavar="ID",
                        help="the change's identifier (a flag name and state, a config revision, a ticket…); "
                             "correlate-deploy --change ID scores it")
    parser.add_argument("--commit", metavar="SHA", help="the commit that made the change, if any")
    parser.add_argument("--at", metavar="TIME", help="when (RFC 3339 or unix seconds; default: now)")
    add_state_argument(parser)


def run(args: argparse.Namespace) -> int:
    change = Deploy(args.service, args.id, instant(args.at, "--at"), args.commit, source="cli", kind=args.kind)
    print(deploy_text(change, record_deploy(partial(connect, args.state), change)))
    return 0
