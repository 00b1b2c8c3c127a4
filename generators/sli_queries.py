"""The PromQL of each SLI kind: what an SLO counts as bad, over a window. generators.slo_rules assembles
recording rules and alerts from these; generators.openslo describes the same queries.

- availability / latency: request counters (and a histogram's buckets) of the SLO's SLI;
- events: the spec's `bad` or `good` and `total` expressions, each selector rated over the window;
- ratio_query: the spec's query with ``$window`` replaced (the worst series, if it returns several);
- threshold: time slices. Each rule evaluation records whether the gauge condition failed (1) or held
  (0), once; every window's bad ratio is the mean of that record over the window, which costs one
  cheap read of a recorded series instead of a subquery per window.
"""
from __future__ import annotations

from functools import lru_cache

from generators.model import SLO, Service
from generators.promql import le_matcher, selector
from generators.slo_spec import WINDOW_PLACEHOLDER

BAD_SLICE_SERIES = "slo:sli_bad_slice:bool"


def total_selector(service: Service, slo: SLO) -> str:
    """The requests counter of an availability or latency SLO."""
    sli = slo.sli_of(service)
    if slo.kind == "availability":
        return selector(sli.requests_metric, sli.selector)
    return selector(f"{sli.latency_histogram}_count", sli.selector)


def good_or_bad_selector(service: Service, slo: SLO) -> str:
    """Failed requests (availability) or requests at or under the threshold (latency)."""
    sli = slo.sli_of(service)
    if slo.kind == "availability":
        return selector(sli.requests_metric, sli.selector + sli.error_matchers)
    return selector(f"{sli.latency_histogram}_bucket", sli.selector + (le_matcher(slo.threshold_seconds),))


@lru_cache(maxsize=4096)  # the same expression is rated for every window of every evaluation text
def rated(expr: str, window: str) -> str:
    """``sum(expr)`` with each of its counter selectors rated over ``window``: events per second."""
    from generators.promql_scope import rate_selectors  # the parser only where an events SLO needs it

    return f"sum({rate_selectors(expr, window)})"


def raw_rates(service: Service, slo: SLO, window: str) -> tuple[str, str]:
    """(bad events per second, events per second) over ``window`` from the raw counters (counted kinds)."""
    if slo.kind == "events":
        total = rated(slo.total or "", window)
        if slo.bad is not None:
            return f"({rated(slo.bad, window)} or vector(0))", total
        # With no good event at all (a total outage) the good sum has no series: count it as 0.
        return f"({total} - ({rated(slo.good or '', window)} or vector(0)))", total
    total = f"sum(rate({total_selector(service, slo)}[{window}]))"
    if slo.kind == "availability":
        # Without `or vector(0)` a service that never failed would have no error ratio at all.
        errors = f"(sum(rate({good_or_bad_selector(service, slo)}[{window}])) or vector(0))"
    else:
        errors = f"({total} - sum(rate({good_or_bad_selector(service, slo)}[{window}])))"
    return errors, total


def raw_ratio(service: Service, slo: SLO, window: str) -> str:
    """The bad-event ratio over ``window`` read from the raw series (windows below a day)."""
    if slo.kind == "ratio_query":
        return f"max(\n{(slo.query or '').replace(WINDOW_PLACEHOLDER, window)}\n)"
    errors, total = raw_rates(service, slo, window)
    if slo.kind == "latency":
        # 1 - good/total reads the counters twice, (total - good)/total three times.
        good = f"sum(rate({good_or_bad_selector(service, slo)}[{window}]))"
        return f"1 - (\n{good}\n/\n{total}\n)"
    return f"{errors}\n/\n{total}"


def bad_slice(slo: SLO) -> str:
    """A threshold SLO's slice: 1 when the condition fails (or the gauge is NaN), 0 when it holds; the
    worst series decides when the query returns several."""
    return f"max(\n1 - (\n{slo.query}\n{slo.op} bool {format(slo.value, 'f')}\n)\n)"


def absent_target(service: Service, slo: SLO) -> str:
    """What the absent-metrics alert watches: the raw requests counter of availability / latency, the
    SLO's own first recorded series for the kinds whose queries are the spec's (their absence means
    the query returned nothing)."""
    from generators.slo_rules import recorded

    if slo.kind in ("availability", "latency"):
        return total_selector(service, slo)
    name = {"events": "slo:sli_requests:rate5m", "ratio_query": "slo:sli_error:ratio_rate5m",
            "threshold": BAD_SLICE_SERIES}[slo.kind]
    return recorded(name, service, slo)


__all__ = ["total_selector", "good_or_bad_selector", "raw_rates", "raw_ratio", "bad_slice", "absent_target",
           "rated", "BAD_SLICE_SERIES"]
