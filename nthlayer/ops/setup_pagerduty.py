"""``setup-pagerduty``: plan every service's PagerDuty objects, then apply the plan, record what was
made (state: ids; secret files: routing keys) and audit it. The plan/apply engine is nthlayer.ops.pagerduty."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from generators.errors import SpecErrors, UserError
from generators.pagerduty import desired_state
from generators.paging import uses_pagerduty
from generators.spec import LoadedSpec
from nthlayer.integrations.pagerduty import PagerDutyClient
from nthlayer.integrations.secrets import secrets_dir
from nthlayer.ops.pagerduty import Applier, ServicePlan, plan_service
from nthlayer.state.pagerduty import Integration, load_integrations, masked, save_integration, write_routing_keys


@dataclass
class SetupPlan:
    skipped: list[str]  # spec files without pagerduty settings
    plans: list[ServicePlan] = field(default_factory=list)


def plan_setup(client: PagerDutyClient | None, specs: list[LoadedSpec]) -> SetupPlan:
    """The plan of each spec with pagerduty settings, by service name (``client`` None: nothing is read,
    referenced ids are not checked). Every spec's problems are raised together."""
    skipped = sorted(s.service.source for s in specs if not uses_pagerduty(s.service))
    paging = sorted((s for s in specs if uses_pagerduty(s.service)), key=lambda s: s.service.name)
    result = SetupPlan(skipped)
    errors = []
    planned: set[tuple[str, str]] = set()
    for spec in paging:
        try:
            result.plans.append(plan_service(client, spec, desired_state(spec.service), planned))
        except SpecErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise SpecErrors(errors)
    return result


def _audit(state: str | None, plans: list[ServicePlan], result: str, details: dict[str, Any]) -> None:
    """One audit record per service applied (no secrets: keys never enter ``details``)."""
    from nthlayer.state.db import connect, insert_audit

    with connect(state) as con:
        for plan in plans:
            insert_audit(con, "setup-pagerduty", plan.service, result, details)


@dataclass(frozen=True)
class ApplyOutcome:
    done: list[str]  # one line per object created or updated
    created: int
    updated: int
    writes: int  # write requests sent


def apply_setup(client: PagerDutyClient, plans: list[ServicePlan], state: str | None) -> ApplyOutcome:
    """Apply the plans in order; each integration's routing key goes to its key file, its id to the state
    database, as soon as PagerDuty hands it out. Audited as applied, or as failed with what was done."""
    def remember(integration: Integration) -> None:
        save_integration(state, integration)

    applier = Applier(client, remember)
    try:
        for plan in plans:
            applier.apply(plan)
    except BaseException as exc:
        _audit(state, plans, "failed", {"error": type(exc).__name__, "done": list(applier.done)})
        raise
    created = sum(1 for d in applier.done if d.startswith("created"))
    updated = sum(1 for d in applier.done if d.startswith("updated"))
    _audit(state, plans, "applied", {"created": created, "updated": updated, "writes": client.writes,
                                     "api_url": client.url})
    return ApplyOutcome(list(applier.done), created, updated, client.writes)


def copy_routing_keys(state: str | None, services: list[str], directory: str) -> list[tuple[str, str]]:
    """Write each service's routing key to ``directory``/<service>.key (0600); (path, masked key) each."""
    stored = load_integrations(state, services)
    missing = sorted(set(services) - set(stored))
    if missing:
        raise UserError(f"no routing key file in {secrets_dir()} for {', '.join(missing)}")
    return [(path, masked(stored[os.path.basename(path)[: -len(".key")]].routing_key))
            for path in write_routing_keys(stored, directory)]
