"""setup-datadog: plan, then apply, each service's Datadog objects (service definition, SLOs, monitors).

The keys come through the one credential resolver (docs/secrets.md): datadog.api_key and datadog.app_key.
The site is $DD_SITE (default datadoghq.com); ``api_url`` sends everything to an https proxy instead.
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from functools import partial
from typing import Any

from generators.datadog import SLO_ID, desired_state
from generators.errors import UserError
from generators.spec import LoadedSpec
from nthlayer.integrations.credentials import CredentialResolver
from nthlayer.integrations.datadog import DEFAULT_SITE, ClientSettings, DatadogClient
from nthlayer.ops.datadog import AFTER_APPLY, NOUNS, Applier, ServicePlan, plan_service
from nthlayer.ops.setup import Say, Target, apply_plans, show_plan, valid_specs
from nthlayer.state.db import connect

_SYMBOLS = {"create": "+", "update": "~", "unchanged": "="}
NO_KEYS = ("no Datadog {missing}: set DD_API_KEY and DD_APP_KEY (or DD_API_KEY_FILE and DD_APP_KEY_FILE), or store "
           "references with 'nthlayer config set datadog.api_key --from-vault vault://PATH#field' (and "
           "datadog.app_key)")


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False).replace(SLO_ID, AFTER_APPLY)


def format_plan(plans: list[ServicePlan], checked: bool) -> list[str]:
    """The plan as the user reads it: one line per object, the fields an update changes."""
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


def _keys() -> tuple[str | None, str | None]:
    resolver = CredentialResolver()
    api, app = resolver.get("datadog.api_key"), resolver.get("datadog.app_key")
    return (api.value if api else None), (app.value if app else None)


def client_missing() -> bool:
    """Datadog's API client (the optional extra nthlayer-slo[datadog]) is not installed."""
    return importlib.util.find_spec("datadog_api_client") is None


@dataclass(frozen=True)
class DatadogSetup:
    """One setup-datadog run, as its options describe it."""
    specs: list[str]  # spec files or folders
    dry_run: bool = False
    api_url: str | None = None  # an https proxy instead of https://api.$DD_SITE
    state: str | None = None
    retries: int = 5
    backoff: float = 1.0
    timeout: float = 30.0


def setup_datadog(run: DatadogSetup, say: Say = print) -> int:
    """Plan every service's Datadog objects, say the plan and apply it (unless a dry run). Returns the exit
    code (0); errors are raised."""
    specs = valid_specs(run.specs, run.retries, run.backoff, run.timeout)
    settings = ClientSettings(site=os.environ.get("DD_SITE") or DEFAULT_SITE, api_url=run.api_url,
                              retries=run.retries, backoff=run.backoff, timeout=run.timeout, read_only=run.dry_run)
    if not settings.url.startswith("https://"):
        raise UserError(f"--api-url must be an https:// URL (got {settings.url})")
    api_key, app_key = _keys()
    missing = " and ".join(n for n, k in (("API key", api_key), ("application key", app_key)) if k is None)
    if missing and not run.dry_run:
        raise UserError(NO_KEYS.format(missing=missing) + " (or use --dry-run to plan without them)")
    if api_key and app_key and client_missing():
        raise UserError("setup-datadog needs Datadog's API client: pip install 'nthlayer-slo[datadog]'")
    client = DatadogClient(api_key, app_key, settings) if api_key and app_key else None
    try:
        return _plan_and_apply(run, client, settings, specs, say)
    finally:
        if client is not None:
            client.close()


def _plan_and_apply(run: DatadogSetup, client: DatadogClient | None, settings: ClientSettings,
                    specs: list[LoadedSpec], say: Say) -> int:
    chosen = []
    for spec in sorted(specs, key=lambda s: s.service.name):
        block = spec.service.datadog
        if block is None:
            say(f"Skipped {spec.service.source}: no datadog settings in the spec")
        elif block.site is not None and block.site != settings.site:
            say(f"Skipped {spec.service.source}: its datadog.site is {block.site}, this run targets "
                f"{settings.site} (DD_SITE)")
        else:
            chosen.append(spec)
    if not chosen:
        return 0
    plans = [plan_service(client, spec.service.source, desired_state(spec.service)) for spec in chosen]
    target = Target("setup-datadog", "Datadog", settings.url, " (no keys: nothing read)", error_lists_done=False)
    show_plan(target, format_plan(plans, checked=client is not None), client is not None, say)
    if run.dry_run:
        say("Dry run: nothing was changed.")
        return 0
    assert client is not None
    apply_plans(target, plans, Applier(client), lambda: client.writes, partial(connect, run.state), say)
    return 0
