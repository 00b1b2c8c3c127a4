"""``nthlayer import-events``: bulk-import deploys and incidents from JSON/CSV files or from PagerDuty."""
from __future__ import annotations

import argparse
import os

from generators.errors import UserError
from nthlayer.cli.argparsing import UsageError
from nthlayer.state.events import fetch_pagerduty_incidents, import_files, insert_incidents
from nthlayer.state.db import add_state_argument, connect, format_time, insert_audit, parse_time


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


def _pagerduty(args: argparse.Namespace) -> int:
    from nthlayer.buildsys.project import load_services
    from nthlayer.cli.commands.setup_pagerduty import NO_KEY, api_key
    from nthlayer.integrations.pagerduty import DEFAULT_API_URL, ClientSettings, PagerDutyClient, explain

    if not (args.since and args.until):
        raise UsageError("--pagerduty needs --since and --until")
    since, until = parse_time(args.since, "--since"), parse_time(args.until, "--until")
    if until <= since:
        raise UserError("--until must be after --since")
    key = api_key(args)
    if key is None:
        raise UserError(NO_KEY)
    names = {}
    if os.path.isdir(args.services):
        names = {s.pagerduty.service_id: s.name for s in load_services(args.services) if s.pagerduty.service_id}
    settings = ClientSettings(api_url=args.api_url or os.environ.get("PAGERDUTY_API_URL") or DEFAULT_API_URL,
                              read_only=True)
    client = PagerDutyClient(key, settings)
    try:
        incidents = fetch_pagerduty_incidents(client, since, until, names)
    except UserError:
        raise
    except Exception as exc:  # the client's errors: explain() words them without the key
        raise UserError(explain(exc, "listing incidents")) from None
    finally:
        client.close()
    with connect(args.state) as con:
        added = insert_incidents(con, incidents)
        insert_audit(con, "import-events", None, "imported",
                     {"source": "pagerduty", "since": format_time(since), "until": format_time(until),
                      "incidents_read": len(incidents), "incidents_added": added})
    print(f"pagerduty: {len(incidents)} incidents read, {added} new")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.pagerduty:
        if args.files:
            raise UsageError("give files or --pagerduty, not both")
        return _pagerduty(args)
    if not args.files:
        raise UsageError("nothing to import: give .json/.csv files or --pagerduty --since T --until T")
    with connect(args.state) as con:
        deploys_read, deploys_added, incidents_read, incidents_added = import_files(con, args.files)
        insert_audit(con, "import-events", None, "imported",
                     {"files": [os.path.basename(f) for f in args.files], "deploys_read": deploys_read,
                      "deploys_added": deploys_added, "incidents_read": incidents_read,
                      "incidents_added": incidents_added})
    print(f"deploys: {deploys_read} read, {deploys_added} new; incidents: {incidents_read} read, "
          f"{incidents_added} new")
    return 0
