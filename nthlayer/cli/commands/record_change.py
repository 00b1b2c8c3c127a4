"""``nthlayer record-change``: remember a config, flag or infra change of a service, scored like a deploy."""
from __future__ import annotations

import argparse

from nthlayer.ops.deploys import deploy_text, record_deploys
from nthlayer.state.db import add_state_argument, connect, parse_time, utc_now
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
    at = parse_time(args.at, "--at") if args.at else utc_now().replace(microsecond=0)
    change = Deploy(args.service, args.id, at, args.commit, source="cli", kind=args.kind)
    with connect(args.state) as con:
        added = record_deploys(con, [change])[0]
    print(deploy_text(change, added))
    return 0
