"""``nthlayer setup-pagerduty SPEC... [--dry-run]``: plan, then apply, each service's PagerDuty objects.

The API key comes from PAGERDUTY_API_KEY, or a file (--api-key-file /
PAGERDUTY_API_KEY_FILE), or nthlayer.toml's reference (``nthlayer config set
pagerduty.api_key --from-vault …``), never from the command line where ``ps``
would show it. Routing keys of the integrations go to key files in the secrets folder
(nthlayer.integrations.secrets: $NTHLAYER_SECRETS_DIR or state/secrets), never to the state
database; --write-routing-keys DIR copies them to DIR/<service>.key as well.
"""
from __future__ import annotations

import argparse

from nthlayer.cli.clients import add_retry_arguments, log_retries
from nthlayer.integrations.pagerduty import DEFAULT_API_URL
from nthlayer.ops.setup_pagerduty import PagerDutySetup, setup_pagerduty


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="service spec files or folders of specs")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and change nothing (works without an API key)")
    parser.add_argument("--api-url", default=None,
                        help=f"REST API base URL, https only (default: $PAGERDUTY_API_URL or {DEFAULT_API_URL}; "
                             "EU accounts: https://api.eu.pagerduty.com)")
    parser.add_argument("--api-key-file", default=None, metavar="FILE",
                        help="read the API key from FILE (default: $PAGERDUTY_API_KEY, then $PAGERDUTY_API_KEY_FILE)")
    parser.add_argument("--write-routing-keys", metavar="DIR", default=None,
                        help="after applying, write each service's routing key to DIR/<service>.key (mode 0600) "
                             "for Alertmanager's routing_key_file (e.g. state/secrets)")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="run the integration plugins of a Python file after the setup (repeatable; besides "
                             "nthlayer.toml's [build] plugins and installed ones; docs/plugins.md)")
    parser.add_argument("--state", default=None, help="state database (default: $NTHLAYER_STATE or state/nthlayer.duckdb)")
    add_retry_arguments(parser, "NTHLAYER_PD", "retries after HTTP 429/5xx or a network error (default 5)",
                        "seconds before the first retry; doubles each time (default 1)")


def run(args: argparse.Namespace) -> int:
    log_retries("nthlayer.pagerduty", "pagerduty")
    return setup_pagerduty(PagerDutySetup(
        args.specs, dry_run=args.dry_run, api_url=args.api_url, key_file=args.api_key_file,
        routing_keys_dir=args.write_routing_keys, plugins=tuple(args.plugin), state=args.state,
        retries=args.retries, backoff=args.backoff, timeout=args.timeout))
