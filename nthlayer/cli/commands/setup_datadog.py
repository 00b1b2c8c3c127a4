"""``nthlayer setup-datadog SPEC... [--dry-run]``: plan, then apply, each service's Datadog objects.

The keys come through the one credential resolver (docs/secrets.md): $DD_API_KEY / $DD_APP_KEY, their
_FILE forms, or nthlayer.toml references; never from the command line, where ``ps`` would show them.
The site is $DD_SITE (default datadoghq.com); --api-url sends everything to an https proxy instead.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

from generators.datadog import SLO_ID, desired_state
from generators.errors import UserError
from nthlayer.cli.commands.setup_pagerduty import check_run_args, log_retries
from nthlayer.integrations.datadog import DEFAULT_SITE, ClientSettings, DatadogClient
from nthlayer.ops.datadog import AFTER_APPLY, NOUNS, Applier, ApplyFailed, ServicePlan, plan_service

_SYMBOLS = {"create": "+", "update": "~", "unchanged": "="}
NO_KEYS = ("no Datadog {missing}: set DD_API_KEY and DD_APP_KEY (or DD_API_KEY_FILE and DD_APP_KEY_FILE), or store "
           "references with 'nthlayer config set datadog.api_key --from-vault vault://PATH#field' (and "
           "datadog.app_key)")


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False).replace(SLO_ID, AFTER_APPLY)


def format_plan(plans: list[ServicePlan], checked: bool) -> list[str]:
    lines: list[str] = []
    counts = {"create": 0, "update": 0, "unchanged": 0}
    for plan in plans:
        lines.append(f"{plan.service} ({plan.source}):")
        for step in plan.steps:
            where = f" {step.object_id}" if step.object_id and step.kind != "definition" else ""
            note = {"update": " (1 field differs)" if len(step.changes) == 1 else f" ({len(step.changes)} fields differ)",
                    "create": "" if checked else " (not looked up: no keys)"}.get(step.action, "")
            lines.append(f"  {_SYMBOLS[step.action]} {NOUNS[step.kind]} \"{step.label}\"{where}{note}")
            if step.action == "update":
                for name, (now, want) in sorted(step.changes.items()):
                    lines.append(f"      {name}: {_show(now)} -> {_show(want)}")
            counts[step.action] += 1
    lines.append(f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['unchanged']} unchanged.")
    return lines


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="service spec files or folders of specs")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and change nothing (works without keys)")
    parser.add_argument("--api-url", default=None,
                        help="API base URL of an https proxy (default: https://api.$DD_SITE)")
    parser.add_argument("--state", default=None, help="state database for the audit trail "
                                                      "(default: $NTHLAYER_STATE or state/nthlayer.duckdb)")
    parser.add_argument("--retries", type=int, default=int(os.environ.get("NTHLAYER_DD_RETRIES", "5")),
                        help="retries after HTTP 429/5xx or a network error; never a failed POST (default 5)")
    parser.add_argument("--backoff", type=float, default=float(os.environ.get("NTHLAYER_DD_BACKOFF", "1")),
                        help="seconds before the first retry without X-RateLimit-Reset; doubles (default 1)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one response (default 30)")


def _keys() -> tuple[str | None, str | None]:
    from nthlayer.integrations.credentials import CredentialResolver

    resolver = CredentialResolver()
    api, app = resolver.get("datadog.api_key"), resolver.get("datadog.app_key")
    return (api.value if api else None), (app.value if app else None)


def client_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("datadog_api_client") is None


def run(args: argparse.Namespace) -> int:
    specs = check_run_args(args)
    site = os.environ.get("DD_SITE") or DEFAULT_SITE
    settings = ClientSettings(site=site, api_url=args.api_url, retries=args.retries, backoff=args.backoff,
                              timeout=args.timeout, read_only=args.dry_run)
    if not settings.url.startswith("https://"):
        raise UserError(f"--api-url must be an https:// URL (got {settings.url})")
    api_key, app_key = _keys()
    missing = " and ".join(n for n, k in (("API key", api_key), ("application key", app_key)) if k is None)
    if missing and not args.dry_run:
        raise UserError(NO_KEYS.format(missing=missing) + " (or use --dry-run to plan without them)")
    if api_key and app_key and client_missing():
        raise UserError("setup-datadog needs Datadog's API client: pip install 'nthlayer-slo[datadog]'")
    log_retries("nthlayer.datadog", "datadog")
    client = DatadogClient(api_key, app_key, settings) if api_key and app_key else None
    try:
        return _plan_and_apply(args, client, settings, specs)
    finally:
        if client is not None:
            client.close()


def _audit(args: argparse.Namespace, plans: list[ServicePlan], result: str, details: dict[str, Any]) -> None:
    """One audit record per service (no secrets: keys never enter ``details``)."""
    from nthlayer.state.db import connect, insert_audit

    with connect(args.state) as con:
        for plan in plans:
            insert_audit(con, "setup-datadog", plan.service, result, details)


def _plan_and_apply(args: argparse.Namespace, client: DatadogClient | None, settings: ClientSettings,
                    specs: list[Any]) -> int:
    chosen = []
    for spec in sorted(specs, key=lambda s: s.service.name):
        block = spec.service.datadog
        if block is None:
            print(f"Skipped {spec.service.source}: no datadog settings in the spec")
        elif block.site is not None and block.site != settings.site:
            print(f"Skipped {spec.service.source}: its datadog.site is {block.site}, this run targets "
                  f"{settings.site} (DD_SITE)")
        else:
            chosen.append(spec)
    if not chosen:
        return 0
    plans = [plan_service(client, spec.service.source, desired_state(spec.service)) for spec in chosen]
    header = "Datadog plan" + ("" if client else " (no keys: nothing read)")
    print(f"{header} — {settings.url}")
    for line in format_plan(plans, checked=client is not None):
        print(line)
    if args.dry_run:
        print("Dry run: nothing was changed.")
        return 0
    assert client is not None
    applier = Applier(client)
    try:
        for plan in plans:
            applier.apply(plan)
    except ApplyFailed as exc:
        for line in applier.done:
            print(f"  {line}")
        _audit(args, plans, "failed", {"error": str(exc), "done": list(applier.done), "api_url": settings.url})
        raise
    for line in applier.done:
        print(f"  {line}")
    created = sum(1 for d in applier.done if d.startswith("created"))
    updated = len(applier.done) - created
    print(f"Apply complete: {created} created, {updated} updated, {client.writes} write requests.")
    _audit(args, plans, "applied", {"created": created, "updated": updated, "writes": client.writes,
                                    "api_url": settings.url})
    return 0
