"""``nthlayer correlate-deploy``: how likely a deploy (or a recorded change) caused the incidents after it;
exit 2 means BLOCK."""
from __future__ import annotations

import argparse
import json
from functools import partial

from nthlayer.ops.budget import json_default
from nthlayer.cli import api_client
from nthlayer.integrations import prometheus as prom
from nthlayer.ops.deploys import correlate_deploy, window_seconds
from nthlayer.state.db import add_state_argument, connect


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deploy", "--change", dest="deploy", required=True, metavar="VERSION",
                        help="the deployed version, or the id of a change recorded with record-change")
    parser.add_argument("--service", required=True, help="the deployed service")
    parser.add_argument("--time-window", default="1h", metavar="DURATION",
                        help="incidents that started up to this long after the deploy are candidates (default: 1h); "
                             "one that started before it never is")
    parser.add_argument("--services", metavar="DIR", default="services",
                        help="specs giving the dependency graph (default: services/)")
    parser.add_argument("--json", action="store_true", help="JSON output")
    add_state_argument(parser)
    prom.add_arguments(parser)
    api_client.add_argument(parser)


def run(args: argparse.Namespace) -> int:
    if args.api:
        window_seconds(args.time_window)
        answer = api_client.post(args.api, "/api/v1/deploys/correlate", {
            "service": args.service, "version": args.deploy, "time_window": args.time_window}, "correlate-deploy")
        if args.json:
            api_client.print_json(answer, "exit_code", "text")
        else:
            print(answer["text"])
        return int(answer["exit_code"])
    # Without a Prometheus URL the metrics factor is shown as unavailable; the other factors still score.
    client = prom.client_from_args(args) if args.prometheus else None
    outcome = correlate_deploy(partial(connect, args.state), args.services, args.service, args.deploy,
                               args.time_window, client=client)
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2, default=json_default))
    else:
        print(outcome.text())
    return outcome.exit_code
