"""Input series for the generated promtool tests of every SLI kind, synthesized from the parsed queries.

An SLO is *driven* when its queries have a shape whose answer we can predict for synthetic series, and
only then: a test that guessed would prove nothing.

- availability / latency: the SLI's counters (generators.slo_tests.input_series);
- events: `bad`/`good` and `total` each a single counter selector, optionally under a plain
  ``sum(...)``; on one metric the bad (good) selector must be the total's plus extra matchers;
- ratio_query: exactly ``sum(rate|increase(BAD[$window])) / sum(rate|increase(TOTAL[$window]))``,
  fed as events;
- threshold: one gauge selector, bare or under a single aggregation; a slice is good or bad as a
  whole, so these SLOs take part with 0 % or 100 % bad slices only.

Any other shape is not driven: it gets no input, so its absent-metrics alert fires in every scenario
(the scenarios expect exactly that), and the docs say its behaviour is not tested.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, NamedTuple

from generators.model import SLO, Matcher, Service
from generators.slo_spec import WINDOW_PLACEHOLDER

Phase = tuple[int, Decimal, Decimal]  # (minutes, events per minute, share of bad events)
Selector = tuple[str, tuple[Matcher, ...]]  # (metric name, matchers other than the name)
_AGGREGATIONS = frozenset({"sum", "max", "min", "avg"})
_RATES = frozenset({"rate", "increase"})


class Driver(NamedTuple):
    slices: bool  # True: time slices (only 0 % or 100 % bad); False: events, any share
    metrics: frozenset[str]  # the metric names its series use
    series: Callable[[list[Phase], int], list[dict[str, str]]]


def _plain_selector(node: Any) -> Selector | None:
    import promql_parser as pq

    from generators.promql_scope import PromQLError, _matchers, metric_name

    if not isinstance(node, pq.VectorSelector) or node.offset is not None or node.at is not None:
        return None
    name = metric_name(node)
    try:
        matchers = tuple(m for m in _matchers(node) if m[0] != "__name__")
    except PromQLError:
        return None
    return (name, matchers) if name else None


def _unwrap(node: Any, aggregations: frozenset[str]) -> Any:
    """The node under parentheses and at most one plain (ungrouped) aggregation of ``aggregations``."""
    import promql_parser as pq

    while isinstance(node, pq.ParenExpr):
        node = node.expr
    if isinstance(node, pq.AggregateExpr):
        if str(node.op) not in aggregations or node.modifier is not None or node.param is not None:
            return None
        node = node.expr
        while isinstance(node, pq.ParenExpr):
            node = node.expr
    return node


def counter_selector(expr: str) -> Selector | None:
    """The single counter selector of an `events` expression (``sel`` or ``sum(sel)``), else None."""
    from generators.promql_scope import parse

    return _plain_selector(_unwrap(parse(expr), frozenset({"sum"})))


def ratio_selectors(query: str) -> tuple[Selector, Selector] | None:
    """(bad, total) selectors of ``sum(rate(BAD[$window])) / sum(rate(TOTAL[$window]))``, else None."""
    import promql_parser as pq

    from generators.promql_scope import parse

    tree = parse(query.replace(WINDOW_PLACEHOLDER, "5m"))
    while isinstance(tree, pq.ParenExpr):
        tree = tree.expr
    if not isinstance(tree, pq.BinaryExpr) or str(tree.op) != "/" or tree.modifier is not None:
        return None
    sides = []
    for side in (tree.lhs, tree.rhs):
        call = _unwrap(side, frozenset({"sum"}))
        if not isinstance(call, pq.Call) or str(call.func.name) not in _RATES or len(call.args) != 1:
            return None
        matrix = call.args[0]
        if not isinstance(matrix, pq.MatrixSelector):
            return None
        selector = _plain_selector(matrix.vector_selector)
        if selector is None:
            return None
        sides.append(selector)
    return sides[0], sides[1]


def _events_series(part: Selector, total: Selector, part_is_bad: bool) -> Callable[[list[Phase], int], list[dict[str, str]]] | None:
    """Series feeding ``part`` (bad or good events) and ``total``; None when their selectors do not allow it."""
    from generators.slo_tests import _counter_values, _series_name, concrete_labels

    part_name, part_matchers = part
    total_name, total_matchers = total
    try:
        if part_name != total_name:
            part_labels = concrete_labels(part_matchers)
            total_labels = concrete_labels(total_matchers)

            def separate(phases: list[Phase], step: int) -> list[dict[str, str]]:
                counted = [(m, rate * (bad if part_is_bad else 1 - bad)) for m, rate, bad in phases]
                return [
                    {"series": _series_name(part_name, part_labels), "values": _counter_values(counted, step)},
                    {"series": _series_name(total_name, total_labels),
                     "values": _counter_values([(m, rate) for m, rate, _ in phases], step)},
                ]

            return separate
        extra = tuple(m for m in part_matchers if m not in total_matchers)
        if not extra or any(m not in part_matchers for m in total_matchers):
            return None  # the part must be the total narrowed by further matchers
        inside = concrete_labels(part_matchers)
        outside = concrete_labels(total_matchers + extra[1:], violate=extra[0])
    except ValueError:
        return None

    def shared(phases: list[Phase], step: int) -> list[dict[str, str]]:
        bad = [(m, rate * share) for m, rate, share in phases]
        good = [(m, rate * (1 - share)) for m, rate, share in phases]
        return [
            {"series": _series_name(part_name, inside), "values": _counter_values(bad if part_is_bad else good, step)},
            {"series": _series_name(part_name, outside), "values": _counter_values(good if part_is_bad else bad, step)},
        ]

    return shared


def _slice_values(slo: SLO) -> tuple[Decimal, Decimal]:
    """(good, bad) gauge values for a threshold SLO's condition."""
    value = slo.value or Decimal(0)
    above, below = value + 1, value - 1
    return {"<": (below, above), "<=": (value, above), ">": (above, below), ">=": (value, below),
            "==": (value, above), "!=": (above, value)}[slo.op or "<"]


def _threshold_driver(slo: SLO) -> Driver | None:
    from generators.promql_scope import parse
    from generators.slo_tests import _series_name, concrete_labels

    selector = _plain_selector(_unwrap(parse(slo.query or ""), _AGGREGATIONS))
    if selector is None:
        return None
    name, matchers = selector
    try:
        labels = concrete_labels(matchers)
    except ValueError:
        return None
    good, bad = _slice_values(slo)

    def series(phases: list[Phase], step: int) -> list[dict[str, str]]:
        from generators.slo_rules import num

        # One sample per step: the phase's good or bad value, n times ("v+0x(n-1)").
        parts = [f"{num(bad if share else good)}+0x{minutes // step - 1}" for minutes, _rate, share in phases]
        return [{"series": _series_name(name, labels), "values": " ".join(parts)}]

    return Driver(True, frozenset({name}), series)


def driver(service: Service, slo: SLO) -> Driver | None:
    """How to feed the SLO's queries in a test, or None when no sound way is known."""
    if slo.kind in ("availability", "latency"):
        from generators.slo_tests import input_series

        sli = slo.sli_of(service)
        try:  # matchers no label value satisfies (or no error matcher to violate): not driven
            input_series(service, slo, [(2, Decimal(1), Decimal(0))], 1)
        except (ValueError, IndexError):
            return None
        names = {sli.requests_metric} if slo.kind == "availability" else {
            f"{sli.latency_histogram}_bucket", f"{sli.latency_histogram}_count"}
        return Driver(False, frozenset(names), lambda phases, step: input_series(service, slo, phases, step))
    if slo.kind == "threshold":
        return _threshold_driver(slo)
    if slo.kind == "events":
        total = counter_selector(slo.total or "")
        part = counter_selector(slo.bad or slo.good or "")
        pair = (part, total) if part and total else None
        part_is_bad = slo.bad is not None
    else:
        pair = ratio_selectors(slo.query or "")
        part_is_bad = True
    if pair is None:
        return None
    feed = _events_series(pair[0], pair[1], part_is_bad)
    if feed is None:
        return None
    return Driver(False, frozenset({pair[0][0], pair[1][0]}), feed)


def read_metrics(service: Service, slo: SLO) -> frozenset[str]:
    """Every metric name an SLO's queries read (for telling whether test inputs of others reach it)."""
    from generators.promql_scope import metric_names

    if slo.kind in ("availability", "latency"):
        found = driver(service, slo)
        return found.metrics if found else frozenset()
    exprs = [e for e in (slo.bad, slo.good, slo.total) if e] if slo.kind == "events" else [
        (slo.query or "").replace(WINDOW_PLACEHOLDER, "5m")]
    names: set[str] = set()
    for expr in exprs:
        names |= metric_names(expr)[0]
    return frozenset(names)


__all__ = ["Driver", "driver", "read_metrics", "counter_selector", "ratio_selectors", "Phase"]
