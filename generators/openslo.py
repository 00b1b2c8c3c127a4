"""OpenSLO v1 documents for a service: Service, SLI, SLO, AlertCondition, AlertPolicy, AlertNotificationTarget."""
from __future__ import annotations

from typing import Any

from generators.model import SLO, Service
from generators.sli_queries import good_or_bad_selector, total_selector
from generators.render import render_files
from generators.slo_maths import burn_factor, clean
from generators.slo_rules import enabled_burn_windows

API_VERSION = "openslo/v1"


def _meta(name: str, display: str, service: Service, **labels: str) -> dict[str, Any]:
    merged = {"service": service.name, "team": service.team, "tier": str(service.tier.number), **labels}
    return {"name": name, "displayName": display, "labels": merged}


def _source(query: str) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def _ratio(slo: SLO, service: Service) -> tuple[dict[str, Any], str]:
    """The SLI's ratioMetric (OpenSLO's ``counter: true``: the tool takes the rates) and its description."""
    if slo.kind == "availability":
        return ({"counter": True, "bad": _source(good_or_bad_selector(service, slo)),
                 "total": _source(total_selector(service, slo))},
                "Share of requests that did not fail with a server error")
    if slo.kind == "latency":
        return ({"counter": True, "good": _source(good_or_bad_selector(service, slo)),
                 "total": _source(total_selector(service, slo))},
                f"Share of requests served within {_threshold_text(slo)}")
    if slo.kind == "events":
        side = "bad" if slo.bad is not None else "good"
        return ({"counter": True, side: _source(slo.bad or slo.good or ""), "total": _source(slo.total or "")},
                f"Share of {side} events")
    # ratio_query: the spec's own ratio of bad events, `$window` left for the tool to fill in.
    return ({"counter": False, "rawType": "failure", "raw": _source(slo.query or "")},
            "Share of bad events, from a query over $window")


def indicator(service: Service, slo: SLO) -> dict[str, Any]:
    """The SLI: a ratio of counters, a raw failure ratio, or (threshold) a gauge judged per time slice."""
    spec: dict[str, Any]
    if slo.kind == "threshold":
        spec = {"description": f"Minutes in which {slo.query} {slo.op} {format(slo.value, 'f')} holds",
                "thresholdMetric": _source(slo.query or "")}
    else:
        ratio, description = _ratio(slo, service)
        spec = {"description": description, "ratioMetric": ratio}
    return {
        "apiVersion": API_VERSION,
        "kind": "SLI",
        "metadata": _meta(f"{service.name}-{slo.name}", f"{service.name} {slo.name}", service, slo=slo.name),
        "spec": spec,
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
    for window, severity in enabled_burn_windows(service, slo):
        name = f"{service.name}-{slo.name}-{window.name}-burn"
        conditions.append({
            "apiVersion": API_VERSION,
            "kind": "AlertCondition",
            "metadata": _meta(name, f"{slo.name} {window.name} burn", service, slo=slo.name),
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
            "metadata": _meta(f"{service.name}-{slo.name}-{window.name}-{severity}",
                              f"{slo.name} {window.name} burn {severity}", service, slo=slo.name),
            "spec": {
                "description": (f"{severity.capitalize()} {service.team} when the {slo.name} budget burns "
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
    method = "Occurrences"
    if slo.kind == "threshold":
        # A slice is good when the condition holds at the rule evaluation (every minute by default).
        method = "Timeslices"
        if slo.op in OPENSLO_OPS:
            objective.update(op=OPENSLO_OPS[slo.op], value=slo.value)
        objective.update(timeSliceTarget=1, timeSliceWindow="1m")
    spec: dict[str, Any] = {
        "description": slo.description or _objective_name(slo),
        "service": service.name,
        "indicatorRef": f"{service.name}-{slo.name}",
        "timeWindow": [{"duration": slo.window, "isRolling": True}],
        "budgetingMethod": method,
        "objectives": [objective],
    }
    if policies:
        # OpenSLO v1 refers to a separate AlertPolicy object as {alertPolicyRef: name}.
        spec["alertPolicies"] = [{"alertPolicyRef": name} for name in policies]
    metadata = _meta(f"{service.name}-{slo.name}", f"{service.name} {slo.name}", service, slo=slo.name)
    if slo.kind == "threshold":
        # OpenSLO's objective ops have no == or !=: the exact condition travels as an annotation.
        metadata["annotations"] = {CONDITION_ANNOTATION: f"{slo.op} {format(slo.value, 'f')}"}
    return {"apiVersion": API_VERSION, "kind": "SLO", "metadata": metadata, "spec": spec}


def _threshold_text(slo: SLO) -> str:
    if slo.threshold_ms is not None:
        return f"{slo.threshold_ms} ms"
    return f"le {format(slo.threshold_seconds, 'f')}"


def _objective_name(slo: SLO) -> str:
    percent = format((slo.objective * 100).normalize(), "f")
    if slo.kind == "availability":
        return f"{percent}% of requests succeed over {slo.window}"
    if slo.kind == "latency":
        return f"{percent}% of requests complete within {_threshold_text(slo)} over {slo.window}"
    if slo.kind == "threshold":
        return f"{percent}% of minutes meet {slo.op} {format(slo.value, 'f')} over {slo.window}"
    return f"{percent}% of events are good over {slo.window}"


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
# OpenSLO objective ops for ours (it has no == or !=).
OPENSLO_OPS = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
CONDITION_ANNOTATION = "nthlayer.dev/condition"


FILE = "openslo.yaml"  # under out/<service>/: every document of the service in one file


def openslo_documents(service: Service) -> dict[str, tuple[Any, bool]]:
    """The service's OpenSLO file as {name: (documents, multi)}: the Service and its notification target,
    then each SLO's indicator, SLO and alerting documents, in the spec's SLO order. One multi-document
    file rather than one per SLO: OpenSLO tools read streams, and a build writes a third of the files."""
    documents: list[Any] = service_documents(service)
    for slo in service.slos:
        alerts = alert_documents(service, slo)
        policies = [doc["metadata"]["name"] for doc in alerts if doc["kind"] == "AlertPolicy"]
        documents += [indicator(service, slo), slo_document(service, slo, policies), *alerts]
    return {FILE: (documents, True)}


def openslo_files(service: Service, out_dir: str) -> dict[str, bytes]:
    """The files of :func:`openslo_documents`, rendered, keyed by path under ``out_dir``."""
    return render_files(openslo_documents(service), service.source, out_dir)
