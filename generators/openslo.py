"""OpenSLO v1 documents for a service: Service, SLI, SLO, AlertCondition, AlertPolicy, AlertNotificationTarget."""
from __future__ import annotations

from typing import Any

from generators.model import SLO, Service
from generators.promql import le_matcher, selector
from generators.render import render_files
from generators.slo_maths import burn_factor, burn_windows, clean

API_VERSION = "openslo/v1"


def _meta(name: str, display: str, service: Service, **labels: str) -> dict[str, Any]:
    merged = {"service": service.name, "team": service.team, "tier": str(service.tier.number), **labels}
    return {"name": name, "displayName": display, "labels": merged}


def _source(query: str) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def indicator(service: Service, slo: SLO) -> dict[str, Any]:
    """The SLI as a ratio of counters (OpenSLO's ``counter: true``: the tool takes the rates)."""
    sli = service.sli
    if slo.kind == "availability":
        ratio = {
            "counter": True,
            "bad": _source(selector(sli.requests_metric, sli.selector + sli.error_matchers)),
            "total": _source(selector(sli.requests_metric, sli.selector)),
        }
        description = "Share of requests that did not fail with a server error"
    else:
        ratio = {
            "counter": True,
            "good": _source(selector(f"{sli.latency_histogram}_bucket",
                                     sli.selector + (le_matcher(slo.threshold_seconds),))),
            "total": _source(selector(f"{sli.latency_histogram}_count", sli.selector)),
        }
        description = f"Share of requests served within {slo.threshold_ms} ms"
    return {
        "apiVersion": API_VERSION,
        "kind": "SLI",
        "metadata": _meta(f"{service.name}-{slo.kind}", f"{service.name} {slo.kind}", service, slo=slo.kind),
        "spec": {"description": description, "ratioMetric": ratio},
    }


def _severity_target(severity: str) -> str:
    return "page" if severity == "page" else "ticket"


def alert_documents(service: Service, slo: SLO) -> list[dict[str, Any]]:
    """AlertConditions and AlertPolicies of an SLO: one of each per burn window.

    OpenSLO v1 allows exactly one condition per AlertPolicy, so each burn
    window gets its own policy, named after the window and its severity.
    """
    conditions: list[dict[str, Any]] = []
    policies: list[dict[str, Any]] = []
    for window in burn_windows(slo.window_days):
        severity = service.tier.burn_alerts.get(window.name)
        if severity is None:
            continue
        name = f"{service.name}-{slo.kind}-{window.name}-burn"
        conditions.append({
            "apiVersion": API_VERSION,
            "kind": "AlertCondition",
            "metadata": _meta(name, f"{slo.kind} {window.name} burn", service, slo=slo.kind),
            "spec": {
                "description": (f"{clean(window.budget_share * 100)}% of the {slo.window} error budget spent "
                                f"within {window.long} (confirmed over {window.short})"),
                "severity": severity,
                "condition": {
                    "kind": "burnrate",
                    "op": "gte",
                    "threshold": burn_factor(window, slo.window_days),
                    "lookbackWindow": window.long,
                    "alertAfter": window.for_,
                },
            },
        })
        policies.append({
            "apiVersion": API_VERSION,
            "kind": "AlertPolicy",
            "metadata": _meta(f"{service.name}-{slo.kind}-{window.name}-{severity}",
                              f"{slo.kind} {window.name} burn {severity}", service, slo=slo.kind),
            "spec": {
                "description": (f"{severity.capitalize()} {service.team} when the {slo.kind} budget burns "
                                f"{burn_factor(window, slo.window_days)}x too fast"),
                "alertWhenNoData": severity == "page",
                "alertWhenResolved": True,
                "alertWhenBreaching": True,
                "conditions": [{"conditionRef": name}],
                "notificationTargets": [{"targetRef": f"{service.name}-pagerduty"}],
            },
        })
    return conditions + policies


def slo_document(service: Service, slo: SLO, policies: list[str]) -> dict[str, Any]:
    objective: dict[str, Any] = {"displayName": _objective_name(slo), "target": slo.objective}
    spec: dict[str, Any] = {
        "description": _objective_name(slo),
        "service": service.name,
        "indicatorRef": f"{service.name}-{slo.kind}",
        "timeWindow": [{"duration": slo.window, "isRolling": True}],
        "budgetingMethod": "Occurrences",
        "objectives": [objective],
    }
    if policies:
        # OpenSLO v1 refers to a separate AlertPolicy object as {alertPolicyRef: name}.
        spec["alertPolicies"] = [{"alertPolicyRef": name} for name in policies]
    return {
        "apiVersion": API_VERSION,
        "kind": "SLO",
        "metadata": _meta(f"{service.name}-{slo.kind}", f"{service.name} {slo.kind}", service, slo=slo.kind),
        "spec": spec,
    }


def _objective_name(slo: SLO) -> str:
    percent = format((slo.objective * 100).normalize(), "f")
    if slo.kind == "availability":
        return f"{percent}% of requests succeed over {slo.window}"
    return f"{percent}% of requests complete within {slo.threshold_ms} ms over {slo.window}"


def service_documents(service: Service) -> list[dict[str, Any]]:
    description = service.description or f"{service.name}, owned by {service.team} (tier {service.tier.number})"
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "Service",
            "metadata": _meta(service.name, service.name, service),
            "spec": {"description": description},
        },
        {
            "apiVersion": API_VERSION,
            "kind": "AlertNotificationTarget",
            "metadata": _meta(f"{service.name}-pagerduty", f"{service.team} on PagerDuty", service),
            "spec": {
                "description": f"The PagerDuty service of {service.name} ({service.team})",
                "target": "pagerduty",
            },
        },
    ]


# The Service fields openslo_documents reads (generators.shapes templates on these alone).
READS = frozenset({"name", "source", "team", "tier", "sli", "slos", "description"})


def openslo_documents(service: Service) -> dict[str, tuple[Any, bool]]:
    """Every OpenSLO file of a service: file name → (documents, multi)."""
    files: dict[str, tuple[Any, bool]] = {"service.yaml": (service_documents(service), True)}
    for slo in service.slos:
        alerts = alert_documents(service, slo)
        policies = [doc["metadata"]["name"] for doc in alerts if doc["kind"] == "AlertPolicy"]
        files[f"{slo.kind}.yaml"] = ([indicator(service, slo), slo_document(service, slo, policies), *alerts], True)
    return files


def openslo_files(service: Service, out_dir: str) -> dict[str, bytes]:
    """The files of :func:`openslo_documents`, rendered, keyed by path under ``out_dir``."""
    return render_files(openslo_documents(service), service.source, out_dir)
