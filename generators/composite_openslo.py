"""OpenSLO v1 documents of a composite SLO, in the specification's composite form.

OpenSLO v1 writes a composite as an SLO without ``spec.indicator``/``indicatorRef`` whose objectives each
carry their own indicator and a ``compositeWeight``. nthlayer inlines each component's SLI (the same SLI
document the component service's own OpenSLO file holds), so the file stands alone. nthlayer judges the
composite by one objective over the pooled, weighted events, so every objective carries that one target.
The file also holds the composite's Service, its burn-rate AlertConditions and AlertPolicies (one condition
per policy, as OpenSLO v1 requires) and the AlertNotificationTarget they notify.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from generators.composite import COMPOSITE_LABEL, Composite, Member
from generators.composite_rules import components_text, enabled_burn_windows, tier_of
from generators.openslo import API_VERSION, indicator
from generators.slo_maths import burn_factor, clean


def _meta(composite: Composite, name: str, display: str) -> dict[str, Any]:
    return {"name": name, "displayName": display,
            "labels": {COMPOSITE_LABEL: composite.name, "team": composite.team,
                       "tier": str(tier_of(composite).number)}}


def _objective(composite: Composite, member: Member) -> dict[str, Any]:
    sli = indicator(member.service, member.slo)
    percent = format((composite.objective * 100).normalize(), "f")
    return {
        "displayName": f"{member.service.name} {member.slo.name}: {percent}% of its events good, pooled",
        # A Decimal of its own per objective: one shared object would be written as a YAML anchor and aliases.
        "target": Decimal(str(composite.objective)),
        "indicator": {"metadata": sli["metadata"], "spec": sli["spec"]},
        "compositeWeight": member.weight,
    }


def _alerts(composite: Composite) -> tuple[list[dict[str, Any]], list[str]]:
    documents: list[dict[str, Any]] = []
    policies: list[dict[str, Any]] = []
    window_text = composite.window
    for window, severity in enabled_burn_windows(composite):
        factor = burn_factor(window, composite.window_days)
        name = f"{composite.name}-{window.name}-burn"
        documents.append({
            "apiVersion": API_VERSION, "kind": "AlertCondition",
            "metadata": _meta(composite, name, f"{composite.name} {window.name} burn"),
            "spec": {
                "description": (f"{clean(window.budget_share * 100)}% of the {window_text} error budget spent "
                                f"within {window.long} (confirmed over {window.short})"),
                "severity": severity,
                "condition": {"kind": "burnrate", "op": "gte", "threshold": factor,
                              "lookbackWindow": window.long, "alertAfter": window.for_},
            },
        })
        policies.append({
            "apiVersion": API_VERSION, "kind": "AlertPolicy",
            "metadata": _meta(composite, f"{composite.name}-{window.name}-{severity}",
                              f"{composite.name} {window.name} burn {severity}"),
            "spec": {
                "description": (f"{severity.capitalize()} {composite.team} when the {composite.name} budget burns "
                                f"{factor}x too fast"),
                "alertWhenNoData": severity == "page",
                "alertWhenResolved": True,
                "alertWhenBreaching": True,
                "conditions": [{"conditionRef": name}],
                "notificationTargets": [{"targetRef": f"{composite.name}-alerts"}],
            },
        })
    return documents + policies, [p["metadata"]["name"] for p in policies]


def openslo_documents(composite: Composite, members: tuple[Member, ...]) -> dict[str, tuple[Any, bool]]:
    """The composite's OpenSLO file: name → (documents, multi)."""
    alerts, policies = _alerts(composite)
    route = (f"the route of {composite.route_via}" if composite.route_via
             else "no route (alerting.route_via is not set)")
    spec: dict[str, Any] = {
        "description": composite.description or f"{composite.name}: {components_text(members)}",
        "service": composite.name,
        "timeWindow": [{"duration": composite.window, "isRolling": True}],
        "budgetingMethod": "Occurrences",
        "objectives": [_objective(composite, m) for m in members],
    }
    if policies:
        spec["alertPolicies"] = [{"alertPolicyRef": name} for name in policies]
    documents = [
        {"apiVersion": API_VERSION, "kind": "Service", "metadata": _meta(composite, composite.name, composite.name),
         "spec": {"description": (f"The {composite.name} journey across {', '.join(composite.services)}, "
                                  f"owned by {composite.team}")}},
        {"apiVersion": API_VERSION, "kind": "SLO",
         "metadata": _meta(composite, composite.name, f"{composite.name} (composite)"), "spec": spec},
        *alerts,
        {"apiVersion": API_VERSION, "kind": "AlertNotificationTarget",
         "metadata": _meta(composite, f"{composite.name}-alerts", f"{composite.team} via Alertmanager"),
         "spec": {"description": f"Alertmanager, along {route}", "target": "alertmanager"}},
    ]
    return {f"{composite.name}.yaml": (documents, True)}


__all__ = ["openslo_documents"]
