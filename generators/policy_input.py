"""The document a Rego policy sees as ``input``: one validated spec as the model sees it.

Pure. The shape is a public contract (docs/policies.md, "The input document"), versioned by
:data:`INPUT_VERSION`: a policy reads the service with its tier defaults applied (an objective the spec
leaves out is the tier's), the routing facts nthlayer derives (is it on PagerDuty, where its escalation
comes from, the urgency its pages get), the catalog category of each dependency, the file it came from,
and the tier's whole policy from :mod:`generators.tiers`.

Every part a policy may want to complain about carries a ``pointer``: the JSON pointer into the spec
file of the field that decides it (for a value the spec leaves to its tier: ``/tier``). A policy returns
that pointer with its finding, and nthlayer turns it into the file's line and column.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from generators.model import SLO, Matcher, Service
from generators.paging import escalation_source, uses_pagerduty
from generators.tiers import Tier

INPUT_VERSION = 1


def _number(value: Decimal | int) -> float | int:
    """A JSON number: an int stays an int; a Decimal objective becomes the float of the text the user
    wrote (0.999 stays 0.999: Rego compares it with the literal 0.999 as equal)."""
    if isinstance(value, int):
        return value
    return int(value) if value == value.to_integral_value() else float(value)


def _selector(matchers: tuple[Matcher, ...]) -> dict[str, str]:
    """A selector as the spec writes it: label → value, with the operator prefix unless it is ``=``."""
    return {label: value if op == "=" else f"{op}{value}" for label, op, value in matchers}


def tier_policy(tier: Tier) -> dict[str, Any]:
    """Everything generators/tiers.py says about a tier, as JSON."""
    return {
        "number": tier.number,
        "name": tier.name,
        "description": tier.description,
        "availability": _number(tier.availability),
        "latency_ms": tier.latency_ms,
        "latency_target": _number(tier.latency_target),
        "catalog_severities": list(tier.catalog_severities),
        "burn_alerts": dict(tier.burn_alerts),
        "budget_alerts": {str(share): severity for share, severity in sorted(tier.budget_alerts.items())},
        "pagerduty": {
            "urgency": tier.pd_urgency,
            "auto_resolve_seconds": tier.pd_auto_resolve_seconds,
            "ack_timeout_seconds": tier.pd_ack_timeout_seconds,
            "escalation_delays": list(tier.pd_escalation_delays),
        },
        "gate": {
            "block_below_percent": _number(tier.gate_block_below_percent),
            "warn_below_percent": _number(tier.gate_warn_below_percent),
            "on_unknown": tier.gate_on_unknown,
        },
    }


def _slo_pointers(data: Mapping[str, Any], index: int, slo: SLO) -> tuple[str, str]:
    """Where an SLO is written and where its objective comes from (``/tier`` for the tier's default)."""
    if "slos" in data:
        entry = data["slos"][index]
        return f"/slos/{index}", f"/slos/{index}/objective" if "objective" in entry else f"/slos/{index}"
    field = "availability" if slo.kind == "availability" else "latency_target"
    overrides = data.get("observability", {}).get("slo_overrides", {})
    return "/tier", f"/observability/slo_overrides/{field}" if field in overrides else "/tier"


def _slo(data: Mapping[str, Any], index: int, slo: SLO, tier: Tier) -> dict[str, Any]:
    pointer, objective_pointer = _slo_pointers(data, index, slo)
    # Which of its alerts page: the tier's burn-rate alerts marked "page", unless the SLO turns pages off;
    # the budget alerts marked "critical" page too (Alertmanager routes them as pages).
    pages = slo.alerting.page and any(severity == "page" for severity in tier.burn_alerts.values())
    budget_pages = slo.alerting.budget and any(s == "critical" for s in tier.budget_alerts.values())
    result: dict[str, Any] = {
        "name": slo.name,
        "kind": slo.kind,
        "objective": _number(slo.objective),
        "window": slo.window,
        "window_days": slo.window_days,
        "description": slo.description,
        "alerting": {"page": slo.alerting.page, "ticket": slo.alerting.ticket, "budget": slo.alerting.budget,
                     "labels": dict(slo.alerting.labels)},
        "pages": pages or budget_pages,
        "pointer": pointer,
        "objective_pointer": objective_pointer,
    }
    if slo.kind == "latency":
        result["threshold_seconds"] = _number(slo.threshold_seconds)
    return result


def policy_input(data: Mapping[str, Any], service: Service, path: str,
                 categories: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The input document of one valid spec: ``data`` as loaded (for the pointers of what it writes),
    ``service`` its model, ``path`` the file as the user named it, ``categories`` the rules catalog's
    category of each technology type (``database``, ``cache``…; a type not in it has none)."""
    categories = categories or {}
    pd = service.pagerduty
    pd_data = data.get("pagerduty", {})
    return {
        "version": INPUT_VERSION,
        "path": path,
        "service": service.name,
        "tier": service.tier.number,
        "tier_name": service.tier.name,
        "team": service.team,
        "type": service.type,
        "description": service.description,
        "runbook_url": service.runbook_url,
        "labels": dict(service.labels),
        "slos": [_slo(data, index, slo, service.tier) for index, slo in enumerate(service.slos)],
        "dependencies": {
            "upstream": [{"name": name, "pointer": f"/dependencies/upstream/{index}"}
                         for index, name in enumerate(service.upstream)],
            "technologies": [{
                "type": tech.type,
                "name": tech.name,
                "category": categories.get(tech.type),
                "selector": _selector(tech.selector),
                "runbook_url": tech.runbook_url,
                "pointer": f"/dependencies/technologies/{index}",
            } for index, tech in enumerate(service.technologies)],
        },
        "pagerduty": {
            "routed": uses_pagerduty(service),
            "escalation": escalation_source(service),
            # The urgency its incidents get: the spec's override, else the tier's.
            "urgency": pd.urgency or service.tier.pd_urgency,
            "urgency_pointer": "/pagerduty/urgency" if "urgency" in pd_data else "/tier",
            "service_id": pd.service_id,
            "escalation_policy_id": pd.escalation_policy_id,
            "team_id": pd.team_id,
            "schedule_ids": list(pd.schedule_ids),
            "escalation_emails": list(pd.escalation_emails),
            "pointer": "/pagerduty" if "pagerduty" in data else "/tier",
        },
        "tier_policy": tier_policy(service.tier),
    }


__all__ = ["INPUT_VERSION", "policy_input", "tier_policy"]
