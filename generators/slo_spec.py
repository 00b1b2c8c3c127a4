"""Checks of the `slos:` block a schema cannot express: one SLI kind per SLO, unique names, PromQL that
parses, latency thresholds on bucket boundaries, alert labels that do not override nthlayer's own.

Every query is parsed with the PromQL parser (generators.promql_scope) at validate time, so a typo is
reported at the spec's line:column instead of surfacing in Prometheus after a deploy.
"""
from __future__ import annotations

from typing import Any

from generators.errors import SpecError
from generators.model import SLI_KINDS, SLO, Service
from generators.yamlload import Located

WINDOW_PLACEHOLDER = "$window"
# Windows a `ratio_query` is checked with: the shortest and the longest it is evaluated over.
CHECK_WINDOWS = ("5m", "6h")


def query_problem(expr: str, *, counters: bool) -> str | None:
    """Why ``expr`` is not usable (None when it is). ``counters``: an `events` expression, whose
    selectors nthlayer rates itself, so they must be plain instant selectors."""
    import promql_parser as pq

    from generators.promql_scope import PromQLError, parse, rate_selectors, selectors

    try:
        tree = parse(expr)
    except PromQLError as exc:
        return f"not valid PromQL: {' '.join(str(exc).split())}"
    if isinstance(tree, (pq.MatrixSelector, pq.SubqueryExpr)):
        return "a range vector cannot be recorded; the expression must return an instant vector"
    found = selectors(tree)
    if not found:
        return "the expression reads no series"
    if counters:
        ranged: list[Any] = []

        def visit(node: Any) -> bool:
            if isinstance(node, (pq.MatrixSelector, pq.SubqueryExpr)):
                ranged.append(node)
            return True

        pq.walk(tree, visit, lambda node: True)
        if ranged:
            return ("write the counters without a range or rate(): nthlayer rates each selector over each "
                    "window itself")
        try:
            rate_selectors(expr, CHECK_WINDOWS[0])
        except PromQLError as exc:
            return f"cannot rate its selectors: {' '.join(str(exc).split())}"
    return None


def _bucket_problem(slo: SLO, service: Service) -> str | None:
    sli = slo.sli_of(service)
    threshold = slo.threshold_seconds
    if threshold in sli.latency_buckets:
        return None
    shown = ", ".join(format(b, "f") for b in sli.latency_buckets)
    return (f"latency threshold {format(threshold, 'f')} is not a bucket boundary (le) of the histogram "
            f"{sli.latency_histogram} (buckets: {shown}); use a boundary or declare the buckets")


def slo_errors(located: Located, service: Service, reserved_labels: frozenset[str]) -> list[SpecError]:
    """Every problem of the spec's `slos:` entries (errors only)."""
    data = located.data
    errors: list[SpecError] = []
    if "slo_overrides" in data.get("observability", {}):
        errors.append(located.error("/observability/slo_overrides", "use 'objective' in slos: instead", key=True))
    seen: dict[str, int] = {}
    for index, (entry, slo) in enumerate(zip(data["slos"], service.slos)):
        at = f"/slos/{index}"
        kinds = [kind for kind in SLI_KINDS if kind in entry]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            errors.append(located.error(at, (
                f"an SLO needs exactly one SLI kind: availability, latency, events, ratio_query or threshold "
                f"(found: {found})")))
            continue
        if slo.name in seen:
            errors.append(located.error(f"{at}/name", f"duplicate SLO name '{slo.name}' (also item {seen[slo.name]})"))
        seen.setdefault(slo.name, index)
        errors += _kind_errors(located, at, entry, slo, service)
        alerting = entry.get("alerting", {})
        for key in sorted(alerting.get("labels", {})):
            if key in reserved_labels:
                errors.append(located.error(f"{at}/alerting/labels/{key}",
                                            f"label '{key}' is set by nthlayer and cannot be overridden", key=True))
        if alerting.get("min_request_rate") is not None and not slo.counted:
            errors.append(located.error(f"{at}/alerting/min_request_rate", (
                f"a {slo.kind} SLO counts no requests, so it has no low-traffic guard; remove the key")))
    return errors


def _kind_errors(located: Located, at: str, entry: dict[str, Any], slo: SLO, service: Service) -> list[SpecError]:
    errors: list[SpecError] = []
    if slo.kind == "availability" and entry["availability"].get("error_matchers") == {}:
        errors.append(located.error(f"{at}/availability/error_matchers",
                                    "no error matchers would count every request as failed; list at least one"))
    if slo.kind == "latency":
        problem = _bucket_problem(slo, service)
        if problem:
            pointer = f"{at}/latency/threshold" if slo.le is not None else f"{at}/latency"
            if slo.le is None:
                problem = (f"tier {service.tier.number}'s default latency threshold "
                           f"{format(slo.threshold_ms, 'f')} ms is not a bucket boundary; set latency.threshold "
                           "(in the histogram's unit) to one of its buckets")
            errors.append(located.error(pointer, problem))
    elif slo.kind == "events":
        body = entry["events"]
        if ("bad" in body) == ("good" in body):
            errors.append(located.error(f"{at}/events", "events need exactly one of 'bad' or 'good', plus 'total'"))
        for key in ("bad", "good", "total"):
            if key in body:
                problem = query_problem(body[key], counters=True)
                if problem:
                    errors.append(located.error(f"{at}/events/{key}", problem))
    elif slo.kind == "ratio_query":
        query = entry["ratio_query"]
        if WINDOW_PLACEHOLDER not in query:
            errors.append(located.error(f"{at}/ratio_query", (
                "a ratio_query must use $window for its range (e.g. rate(x[$window])): nthlayer evaluates it "
                "over each alert window")))
        else:
            problem = query_problem(query.replace(WINDOW_PLACEHOLDER, CHECK_WINDOWS[0]), counters=False)
            if problem:
                errors.append(located.error(f"{at}/ratio_query", f"with $window = 5m: {problem}"))
    elif slo.kind == "threshold":
        problem = query_problem(entry["threshold"]["query"], counters=False)
        if problem:
            errors.append(located.error(f"{at}/threshold/query", problem))
    return errors


def objective_pointer(located: Located, index: int | None, slo: SLO) -> str:
    """Where a warning about an SLO's objective points: its `objective`, or what set the default."""
    if index is None:
        field = "availability" if slo.kind == "availability" else "latency_target"
        return f"/observability/slo_overrides/{field}"
    entry = located.data["slos"][index]
    return f"/slos/{index}/objective" if "objective" in entry else "/tier"


__all__ = ["slo_errors", "query_problem", "objective_pointer", "WINDOW_PLACEHOLDER"]
