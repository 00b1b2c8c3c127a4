"""``nthlayer setup-pagerduty SPEC... [--dry-run]``: plan, then apply, each service's PagerDuty objects.

The API key comes from PAGERDUTY_API_KEY, or a file (--api-key-file /
PAGERDUTY_API_KEY_FILE), never from the command line where ``ps`` would show
it. Routing keys of the integrations go to key files in the secrets folder
(nthlayer.integrations.secrets: $NTHLAYER_SECRETS_DIR or state/secrets), never to the state
database; --write-routing-keys DIR copies them to DIR/<service>.key as well.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from generators.errors import SpecErrors, UserError
from generators.spec import validate_specs
from nthlayer.integrations.pagerduty import DEFAULT_API_URL, ClientSettings, PagerDutyClient, api_key, api_url
from nthlayer.ops.pagerduty import AFTER_APPLY, NOUNS, Ref, ServicePlan
from nthlayer.ops.setup_pagerduty import apply_setup, copy_routing_keys, plan_setup


_SYMBOLS = {"create": "+", "update": "~", "unchanged": "=", "referenced": "=", "planned": "="}


def _show(value: Any) -> str:
    if isinstance(value, Ref):
        return AFTER_APPLY
    if isinstance(value, dict) and isinstance(value.get("id"), Ref):
        return AFTER_APPLY
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=lambda v: AFTER_APPLY)


def format_plan(plans: list[ServicePlan], checked: bool = True) -> list[str]:
    lines: list[str] = []
    counts = {"create": 0, "update": 0, "unchanged": 0}
    for plan in plans:
        lines.append(f"{plan.service} ({plan.source}):")
        for step in plan.steps:
            where = f" {step.object_id}" if step.object_id else ""
            note = {"referenced": " (referenced by id" + ("" if checked else ", not checked") + ")",
                    "planned": " (created above)",
                    "update": " (1 field differs)" if len(step.changes) == 1 else f" ({len(step.changes)} fields differ)",
                    }.get(step.action, "")
            lines.append(f"  {_SYMBOLS[step.action]} {NOUNS[step.kind]} \"{step.label}\"{where}{note}")
            if step.action == "update":
                for name, (now, want) in sorted(step.changes.items()):
                    lines.append(f"      {name}: {_show(now)} -> {_show(want)}")
            elif step.action == "create":
                for name, value in step.body.items():
                    if name != "type":
                        lines.append(f"      {name}: {_show(value)}")
            counts[step.action if step.action in ("create", "update") else "unchanged"] += 1
    lines.append(f"Plan: {counts['create']} to create, {counts['update']} to update, "
                 f"{counts['unchanged']} unchanged.")
    return lines


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
    parser.add_argument("--state", default=None, help="state database (default: $NTHLAYER_STATE or state/nthlayer.duckdb)")
    parser.add_argument("--retries", type=int, default=int(os.environ.get("NTHLAYER_PD_RETRIES", "5")),
                        help="retries after HTTP 429/5xx or a network error (default 5)")
    parser.add_argument("--backoff", type=float, default=float(os.environ.get("NTHLAYER_PD_BACKOFF", "1")),
                        help="seconds before the first retry; doubles each time (default 1)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one response (default 30)")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (tests swap it per run)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _log_retries() -> None:
    # The client reports each retry through this logger: one plain line each, on stderr.
    logger = logging.getLogger("nthlayer.pagerduty")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("pagerduty: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def run(args: argparse.Namespace) -> int:
    result = validate_specs(args.specs, None)
    if result.errors:
        raise SpecErrors(result.errors)
    if not result.specs:
        raise UserError(f"no service specs in {', '.join(args.specs)}")
    if args.retries < 0 or args.backoff < 0 or args.timeout <= 0:
        raise UserError("--retries and --backoff must be >= 0 and --timeout > 0")
    key = api_key(args.api_key_file)
    if key is None and not args.dry_run:
        raise UserError("no PagerDuty API key: set PAGERDUTY_API_KEY or PAGERDUTY_API_KEY_FILE, "
                        "or pass --api-key-file (or use --dry-run to plan without one)")
    settings = ClientSettings(api_url=api_url(args.api_url), retries=args.retries, backoff=args.backoff,
                              timeout=args.timeout, read_only=args.dry_run)
    _log_retries()
    client = PagerDutyClient(key, settings) if key else None
    try:
        return _plan_and_apply(args, client, result.specs)
    finally:
        if client is not None:
            client.close()


def _plan_and_apply(args: argparse.Namespace, client: PagerDutyClient | None, specs: list) -> int:
    setup = plan_setup(client, specs)
    for source in setup.skipped:
        print(f"Skipped {source}: no pagerduty settings in the spec")
    if not setup.plans:
        return 0
    header = "PagerDuty plan" + ("" if client else " (no API key: nothing read, ids not checked)")
    print(f"{header} — {client.url if client is not None else 'not contacted'}")
    for line in format_plan(setup.plans, checked=client is not None):
        print(line)
    if args.dry_run:
        print("Dry run: nothing was changed.")
        return 0
    assert client is not None
    outcome = apply_setup(client, setup.plans, args.state)
    for line in outcome.done:
        print(f"  {line}")
    print(f"Apply complete: {outcome.created} created, {outcome.updated} updated, {outcome.writes} write requests.")
    if args.write_routing_keys:
        for path, key_text in copy_routing_keys(args.state, [p.service for p in setup.plans], args.write_routing_keys):
            print(f"Wrote routing key {key_text} to {path}")
    return 0
