"""``nthlayer import-events``: bulk-import deploys and incidents from JSON/CSV files or from PagerDuty."""
from __future__ import annotations

import argparse
import os
from functools import partial

from generators.errors import UserError
from nthlayer.cli.argparsing import UsageError
from nthlayer.ops.events import ImportCounts, import_event_files, import_pagerduty_incidents
from nthlayer.state.db import add_state_argument, connect, parse_time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help=".json or .csv files (format: docs/correlation.md)")
    parser.add_argument("--pagerduty", action="store_true", help="import incidents from the PagerDuty API instead")
    parser.add_argument("--since", metavar="TIME", help="with --pagerduty: first incident creation time")
    parser.add_argument("--until", metavar="TIME", help="with --pagerduty: last incident creation time")
    parser.add_argument("--services", metavar="DIR", default="services",
                        help="specs mapping PagerDuty service IDs to our names (default: services/)")
    parser.add_argument("--api-url", default=None, help="PagerDuty REST API base URL (default: $PAGERDUTY_API_URL "
                                                        "or https://api.pagerduty.com)")
    parser.add_argument("--api-key-file", default=None, metavar="FILE",
                        help="read the API key from FILE (default: $PAGERDUTY_API_KEY, then $PAGERDUTY_API_KEY_FILE)")
    add_state_argument(parser)


def _pagerduty(args: argparse.Namespace) -> ImportCounts:
    from nthlayer.buildsys.project import load_services
    from nthlayer.ops.setup_pagerduty import NO_KEY, api_key
    from nthlayer.integrations.pagerduty import ClientSettings, PagerDutyClient, api_url

    if not (args.since and args.until):
        raise UsageError("--pagerduty needs --since and --until")
    since, until = parse_time(args.since, "--since"), parse_time(args.until, "--until")
    if until <= since:
        raise UserError("--until must be after --since")
    key = api_key(args.api_key_file)
    if key is None:
        raise UserError(NO_KEY)
    names = {}
    if os.path.isdir(args.services):
        names = {s.pagerduty.service_id: s.name for s in load_services(args.services) if s.pagerduty.service_id}
    client = PagerDutyClient(key, ClientSettings(api_url=api_url(args.api_url), read_only=True))
    try:
        return import_pagerduty_incidents(partial(connect, args.state), client, since, until, names)
    finally:
        client.close()


def run(args: argparse.Namespace) -> int:
    if args.pagerduty:
        if args.files:
            raise UsageError("give files or --pagerduty, not both")
        counts = _pagerduty(args)
        print(f"pagerduty: {counts.incidents_read} incidents read, {counts.incidents_added} new")
        return 0
    if not args.files:
        raise UsageError("nothing to import: give .json/.csv files or --pagerduty --since T --until T")
    counts = import_event_files(partial(connect, args.state), args.files)
    print(f"deploys: {counts.deploys_read} read, {counts.deploys_added} new; incidents: {counts.incidents_read} "
          f"read, {counts.incidents_added} new")
    return 0
