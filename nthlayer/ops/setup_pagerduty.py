"""setup-pagerduty: plan, then apply, each service's PagerDuty objects, then the integration plugins.

The API key comes through the one credential resolver (:func:`api_key`). Routing keys of the integrations
go to key files in the secrets folder (nthlayer.integrations.secrets), never to the state database;
``routing_keys_dir`` copies them to DIR/<service>.key as well.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from typing import Any

from generators.errors import SpecErrors, UserError
from generators.pagerduty import desired_state
from generators.paging import uses_pagerduty
from generators.spec import LoadedSpec
from nthlayer.buildsys.plugin_calls import run_integrations
from nthlayer.buildsys.plugins import load_plugins, plugin_files
from nthlayer.integrations.credentials import CredentialResolver
from nthlayer.integrations.pagerduty import ClientSettings, PagerDutyClient, api_url
from nthlayer.integrations.secrets import secrets_dir
from nthlayer.ops.pagerduty import AFTER_APPLY, NOUNS, Applier, Ref, ServicePlan, plan_service
from nthlayer.ops.setup import Say, Target, apply_plans, show_plan, valid_specs
from nthlayer.state.db import connect
from nthlayer.state.pagerduty import load_integrations, masked, save_integration, write_routing_keys

NO_KEY = ("no PagerDuty API key: set PAGERDUTY_API_KEY or PAGERDUTY_API_KEY_FILE, pass --api-key-file, or store a "
          "reference with 'nthlayer config set pagerduty.api_key --from-vault vault://PATH#field'")
_SYMBOLS = {"create": "+", "update": "~", "unchanged": "=", "referenced": "=", "planned": "="}


def api_key(key_file: str | None = None) -> str | None:
    """The PagerDuty API key through the one credential resolver: ``key_file`` (--api-key-file),
    $PAGERDUTY_API_KEY, $PAGERDUTY_API_KEY_FILE, then nthlayer.toml's pagerduty.api_key reference
    (docs/secrets.md)."""
    found = CredentialResolver().get("pagerduty.api_key", key_file)
    return found.value if found else None


def _show(value: Any) -> str:
    if isinstance(value, Ref):
        return AFTER_APPLY
    if isinstance(value, dict) and isinstance(value.get("id"), Ref):
        return AFTER_APPLY
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=lambda v: AFTER_APPLY)


def format_plan(plans: list[ServicePlan], checked: bool = True) -> list[str]:
    """The plan as the user reads it: one line per object, the fields a create sends or an update changes."""
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


@dataclass(frozen=True)
class PagerDutySetup:
    """One setup-pagerduty run, as its options describe it."""
    specs: list[str]  # spec files or folders
    dry_run: bool = False
    api_url: str | None = None  # None: $PAGERDUTY_API_URL or the US service
    key_file: str | None = None
    routing_keys_dir: str | None = None  # after applying, also write DIR/<service>.key
    plugins: tuple[str, ...] = ()  # plugin files besides nthlayer.toml's and installed ones
    state: str | None = None
    retries: int = 5
    backoff: float = 1.0
    timeout: float = 30.0


def setup_pagerduty(run: PagerDutySetup, say: Say = print) -> int:
    """Plan every service's PagerDuty objects, say the plan, apply it (unless a dry run) and run the
    integration plugins hooked to setup-pagerduty. Returns the exit code (0); errors are raised."""
    plugins = load_plugins(plugin_files(list(run.plugins)))  # a plugin that does not load stops us before any change
    specs = valid_specs(run.specs, run.retries, run.backoff, run.timeout)
    key = api_key(run.key_file)
    if key is None and not run.dry_run:
        raise UserError(NO_KEY + " (or use --dry-run to plan without one)")
    settings = ClientSettings(api_url=api_url(run.api_url), retries=run.retries, backoff=run.backoff,
                              timeout=run.timeout, read_only=run.dry_run)
    client = PagerDutyClient(key, settings) if key else None
    try:
        return _plan_and_apply(run, client, specs, plugins, say)
    finally:
        if client is not None:
            client.close()


def _plan_and_apply(run: PagerDutySetup, client: PagerDutyClient | None, specs: list[LoadedSpec],
                    plugins: list[Any], say: Say) -> int:
    for source in sorted(s.service.source for s in specs if not uses_pagerduty(s.service)):
        say(f"Skipped {source}: no pagerduty settings in the spec")
    specs = sorted((s for s in specs if uses_pagerduty(s.service)), key=lambda s: s.service.name)
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
    target = Target("setup-pagerduty", "PagerDuty", client.url if client is not None else "not contacted",
                    " (no API key: nothing read, ids not checked)", error_lists_done=True)
    show_plan(target, format_plan(plans, checked=client is not None), client is not None, say)
    if run.dry_run:
        say("Dry run: nothing was changed.")
        _run_integrations(plugins, specs, plans, {}, True)
        return 0
    assert client is not None
    applier = Applier(client, partial(save_integration, run.state))
    apply_plans(target, plans, applier, lambda: client.writes, partial(connect, run.state), say)
    if run.routing_keys_dir:
        stored = load_integrations(run.state, [p.service for p in plans])
        missing = sorted({p.service for p in plans} - set(stored))
        if missing:
            raise UserError(f"no routing key file in {secrets_dir()} for {', '.join(missing)}")
        for path in write_routing_keys(stored, run.routing_keys_dir):
            name = os.path.basename(path)[: -len(".key")]
            say(f"Wrote routing key {masked(stored[name].routing_key)} to {path}")
    _run_integrations(plugins, specs, plans, applier.ids, False)
    return 0


def _run_integrations(plugins: list[Any], specs: list[LoadedSpec], plans: list[ServicePlan],
                      ids: dict[str, dict[str, str]], dry_run: bool) -> None:
    """The integration plugins hooked to setup-pagerduty, after its own work: each service's planned or
    applied steps and the ids of its PagerDuty objects (those known: a dry run without a key knows few)."""
    results = {plan.service: {"actions": [f"{step.action} {step.kind} {step.label}" for step in plan.steps],
                              "ids": ids.get(plan.service) or {step.kind: step.object_id for step in plan.steps
                                                               if step.object_id}}
               for plan in plans}
    run_integrations(plugins, "setup-pagerduty", [spec.service for spec in specs], dry_run, results)
