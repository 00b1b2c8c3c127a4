"""``nthlayer setup-datadog SPEC... [--dry-run]``: plan, then apply, each service's Datadog objects.

The keys come through the one credential resolver (docs/secrets.md): $DD_API_KEY / $DD_APP_KEY, their
_FILE forms, or nthlayer.toml references; never from the command line, where ``ps`` would show them.
The site is $DD_SITE (default datadoghq.com); --api-url sends everything to an https proxy instead.
"""
from __future__ import annotations

import argparse

from nthlayer.cli.clients import add_retry_arguments, log_retries
from nthlayer.ops.setup_datadog import DatadogSetup, setup_datadog


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="service spec files or folders of specs")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and change nothing (works without keys)")
    parser.add_argument("--api-url", default=None,
                        help="API base URL of an https proxy (default: https://api.$DD_SITE)")
    parser.add_argument("--state", default=None, help="state database for the audit trail "
                                                      "(default: $NTHLAYER_STATE or state/nthlayer.duckdb)")
    add_retry_arguments(parser, "NTHLAYER_DD",
                        "retries after HTTP 429/5xx or a network error; never a failed POST (default 5)",
                        "seconds before the first retry without X-RateLimit-Reset; doubles (default 1)")


def run(args: argparse.Namespace) -> int:
    log_retries("nthlayer.datadog", "datadog")
    return setup_datadog(DatadogSetup(args.specs, dry_run=args.dry_run, api_url=args.api_url, state=args.state,
                                      retries=args.retries, backoff=args.backoff, timeout=args.timeout))
