"""``nthlayer record-deploy``: remember that a version of a service went out (called by CD)."""
from __future__ import annotations

import argparse
from functools import partial

from nthlayer.cli import api_client
from nthlayer.state.events import Deploy
from nthlayer.ops.deploys import deploy_text, record_deploy
from nthlayer.state.db import add_state_argument, connect, format_time, instant


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True, help="the deployed service")
    parser.add_argument("--version", required=True, help="the version (tag, build number…) deployed")
    parser.add_argument("--commit", metavar="SHA", help="the commit deployed")
    parser.add_argument("--at", metavar="TIME", help="when (RFC 3339 or unix seconds; default: now)")
    add_state_argument(parser)
    api_client.add_argument(parser)


def run(args: argparse.Namespace) -> int:
    at = instant(args.at, "--at")
    if args.api:
        answer = api_client.post(args.api, "/api/v1/deploys", {
            "service": args.service, "version": args.version, "commit": args.commit, "at": format_time(at)},
            "record-deploy")
        print(answer["text"])
        return 0
    deploy = Deploy(args.service, args.version, at, args.commit, source="cli")
    print(deploy_text(deploy, record_deploy(partial(connect, args.state), deploy)))
    return 0
