"""``nthlayer record-deploy``: remember that a version of a service went out (called by CD)."""
from __future__ import annotations

import argparse

from nthlayer.cli import api_client
from nthlayer.state.events import Deploy
from nthlayer.ops.deploys import deploy_text, record_deploys
from nthlayer.state.db import add_state_argument, connect, format_time, parse_time, utc_now


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True, help="the deployed service")
    parser.add_argument("--version", required=True, help="the version (tag, build number…) deployed")
    parser.add_argument("--commit", metavar="SHA", help="the commit deployed")
    parser.add_argument("--at", metavar="TIME", help="when (RFC 3339 or unix seconds; default: now)")
    add_state_argument(parser)
    api_client.add_argument(parser)


def run(args: argparse.Namespace) -> int:
    at = parse_time(args.at, "--at") if args.at else utc_now().replace(microsecond=0)
    if args.api:
        answer = api_client.post(args.api, "/api/v1/deploys", {
            "service": args.service, "version": args.version, "commit": args.commit, "at": format_time(at)},
            "record-deploy")
        print(answer["text"])
        return 0
    deploy = Deploy(args.service, args.version, at, args.commit, source="cli")
    with connect(args.state) as con:
        added = record_deploys(con, [deploy])[0]
    print(deploy_text(deploy, added))
    return 0
