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
import json
import logging
import os
import sys
from typing import Any

from generators.errors import SpecErrors, UserError
from generators.pagerduty import desired_state
from generators.paging import uses_pagerduty
from generators.spec import validate_specs
from nthlayer.ops.pagerduty import AFTER_APPLY, NOUNS, Applier, Ref, ServicePlan, plan_service
from nthlayer.integrations.pagerduty import DEFAULT_API_URL, ClientSettings, PagerDutyClient
from nthlayer.state.pagerduty import Integration, load_integrations, masked, save_integration, write_routing_keys
from nthlayer.integrations.secrets import secrets_dir


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
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="run the integration plugins of a Python file after the setup (repeatable; besides "
                             "nthlayer.toml's [build] plugins and installed ones; docs/plugins.md)")
    parser.add_argument("--state", default=None, help="state database (default: $NTHLAYER_STATE or state/nthlayer.duckdb)")
    parser.add_argument("--retries", type=int, default=int(os.environ.get("NTHLAYER_PD_RETRIES", "5")),
                        help="retries after HTTP 429/5xx or a network error (default 5)")
    parser.add_argument("--backoff", type=float, default=float(os.environ.get("NTHLAYER_PD_BACKOFF", "1")),
                        help="seconds before the first retry; doubles each time (default 1)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one response (default 30)")


def api_key(args: argparse.Namespace) -> str | None:
    """The PagerDuty API key through the one credential resolver: --api-key-file, $PAGERDUTY_API_KEY,
    $PAGERDUTY_API_KEY_FILE, then nthlayer.toml's pagerduty.api_key reference (docs/secrets.md)."""
    from nthlayer.integrations.credentials import CredentialResolver

    found = CredentialResolver().get("pagerduty.api_key", args.api_key_file)
    return found.value if found else None


NO_KEY = ("no PagerDuty API key: set PAGERDUTY_API_KEY or PAGERDUTY_API_KEY_FILE, pass --api-key-file, or store a "
          "reference with 'nthlayer config set pagerduty.api_key --from-vault vault://PATH#field'")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (tests swap it per run)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def log_retries(logger_name: str, prefix: str) -> None:
    """Show the client's retry reports (one plain line each) on stderr, as ``prefix: …``."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def check_run_args(args: argparse.Namespace) -> list:
    """The valid specs of ``args.specs`` (SpecErrors / UserError otherwise), and sane retry settings."""
    result = validate_specs(args.specs, None)
    if result.errors:
        raise SpecErrors(result.errors)
    if not result.specs:
        raise UserError(f"no service specs in {', '.join(args.specs)}")
    if args.retries < 0 or args.backoff < 0 or args.timeout <= 0:
        raise UserError("--retries and --backoff must be >= 0 and --timeout > 0")
    return result.specs


def run(args: argparse.Namespace) -> int:
    from nthlayer.buildsys.plugins import load_plugins, plugin_files

    args.plugins = load_plugins(plugin_files(args.plugin))  # a plugin that does not load stops us before any change
    specs = check_run_args(args)
    key = api_key(args)
    if key is None and not args.dry_run:
        raise UserError(NO_KEY + " (or use --dry-run to plan without one)")
    settings = ClientSettings(api_url=args.api_url or os.environ.get("PAGERDUTY_API_URL") or DEFAULT_API_URL,
                              retries=args.retries, backoff=args.backoff, timeout=args.timeout,
                              read_only=args.dry_run)
    log_retries("nthlayer.pagerduty", "pagerduty")
    client = PagerDutyClient(key, settings) if key else None
    try:
        return _plan_and_apply(args, client, specs)
    finally:
        if client is not None:
            client.close()


def _audit(args: argparse.Namespace, plans: list[ServicePlan], result: str, details: dict) -> None:
    """One audit record per service applied (no secrets: keys never enter ``details``)."""
    from nthlayer.state.db import connect, insert_audit

    with connect(args.state) as con:
        for plan in plans:
            insert_audit(con, "setup-pagerduty", plan.service, result, details)


def _plan_and_apply(args: argparse.Namespace, client: PagerDutyClient | None, specs: list) -> int:
    skipped = sorted(s.service.source for s in specs if not uses_pagerduty(s.service))
    specs = sorted((s for s in specs if uses_pagerduty(s.service)), key=lambda s: s.service.name)
    for source in skipped:
        print(f"Skipped {source}: no pagerduty settings in the spec")
    if not specs:
        return 0
    plans: list[ServicePlan] = []
    errors = []
    planned: set[tuple[str, str]] = set()
    for spec in specs:
        try:
            plans.append(plan_service(client, spec, desired_state(spec.service), planned))
        except SpecErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise SpecErrors(errors)
    header = "PagerDuty plan" + ("" if client else " (no API key: nothing read, ids not checked)")
    print(f"{header} — {settings_url(client)}")
    for line in format_plan(plans, checked=client is not None):
        print(line)
    if args.dry_run:
        print("Dry run: nothing was changed.")
        _run_integrations(args, specs, plans, {})
        return 0
    assert client is not None

    def remember(integration: Integration) -> None:
        save_integration(args.state, integration)

    applier = Applier(client, remember)
    try:
        for plan in plans:
            applier.apply(plan)
    except BaseException as exc:
        _audit(args, plans, "failed", {"error": type(exc).__name__, "done": list(applier.done)})
        raise
    for line in applier.done:
        print(f"  {line}")
    created = sum(1 for d in applier.done if d.startswith("created"))
    updated = sum(1 for d in applier.done if d.startswith("updated"))
    print(f"Apply complete: {created} created, {updated} updated, {client.writes} write requests.")
    _audit(args, plans, "applied", {"created": created, "updated": updated, "writes": client.writes,
                                    "api_url": settings_url(client)})
    if args.write_routing_keys:
        stored = load_integrations(args.state, [p.service for p in plans])
        missing = sorted({p.service for p in plans} - set(stored))
        if missing:
            raise UserError(f"no routing key file in {secrets_dir()} for {', '.join(missing)}")
        for path in write_routing_keys(stored, args.write_routing_keys):
            name = os.path.basename(path)[: -len(".key")]
            print(f"Wrote routing key {masked(stored[name].routing_key)} to {path}")
    _run_integrations(args, specs, plans, applier.ids)
    return 0


def _run_integrations(args: argparse.Namespace, specs: list, plans: list[ServicePlan],
                      ids: dict[str, dict[str, str]]) -> None:
    """The integration plugins hooked to setup-pagerduty, after its own work: each service's planned or
    applied steps and the ids of its PagerDuty objects (those known: a dry run without a key knows few)."""
    from nthlayer.buildsys.plugin_calls import run_integrations

    results = {plan.service: {"actions": [f"{step.action} {step.kind} {step.label}" for step in plan.steps],
                              "ids": ids.get(plan.service) or {step.kind: step.object_id for step in plan.steps
                                                               if step.object_id}}
               for plan in plans}
    run_integrations(args.plugins, "setup-pagerduty", [spec.service for spec in specs], args.dry_run, results)


def settings_url(client: PagerDutyClient | None) -> str:
    return client.url if client is not None else "not contacted"
