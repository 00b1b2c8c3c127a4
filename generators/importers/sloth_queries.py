"""Sloth queries read through the PromQL parser: which of them are plain counts (an `events` SLI), which
are Sloth's histogram shape (a `latency` SLI), and the rest as `ratio_query` text with ``$window``."""
from __future__ import annotations

import re
import textwrap
from decimal import Decimal
from typing import Any

from generators.importers.common import TEMPLATE_WINDOW, WINDOW_PLACEHOLDER, buckets_with, selector_spec
from generators.model import DEFAULT_BUCKETS


def _unparen(node: Any) -> Any:
    import promql_parser as pq

    while isinstance(node, pq.ParenExpr):
        node = node.expr
    return node


_FUNCTIONS = ("rate", "increase")  # per second or per window: the ratio is the same when both sides use one


def _rated_node(node: Any, function: str) -> Any:
    """The vector selector of ``sum(FUNCTION(SELECTOR[range]))``, else None."""
    import promql_parser as pq

    node = _unparen(node)
    if not isinstance(node, pq.AggregateExpr) or str(node.op) != "sum" or node.modifier is not None:
        return None
    inner = _unparen(node.expr)
    if not isinstance(inner, pq.Call) or str(inner.func.name) != function or len(inner.args) != 1:
        return None
    matrix = inner.args[0]
    if not isinstance(matrix, pq.MatrixSelector):
        return None
    vector = matrix.vector_selector
    return vector if vector.offset is None and vector.at is None else None


def _parsed(query: str) -> Any:
    """The syntax tree of a Sloth query with its window filled in (any duration parses), else None."""
    from generators.promql_scope import PromQLError, parse

    try:
        return parse(TEMPLATE_WINDOW.sub("7m", query))
    except PromQLError:
        return None


def _selector_text(vector: Any) -> str:
    from generators.promql_scope import render

    text = render(vector)
    return text[:-2] if text.endswith("{}") else text  # a bare metric name reads better


def rated_selector(query: str, function: str = "rate") -> str | None:
    """The counter selector of ``sum(FUNCTION(SELECTOR[{{.window}}]))``, else None."""
    if len(TEMPLATE_WINDOW.findall(query)) != 1:
        return None
    tree = _parsed(query)
    vector = _rated_node(tree, function) if tree is not None else None
    return _selector_text(vector) if vector is not None else None


def events_pair(error_query: str, total_query: str) -> tuple[str, str] | None:
    """(bad, total) counter selectors when both queries are ``sum(rate(SELECTOR[{{.window}}]))`` (both
    ``increase``, the same ratio), else None.

    Only that shape is a plain events count: nthlayer sums each selector's rate, so an expression
    such as ``sum(rate(a[w])) - sum(rate(b[w]))`` must stay a ratio query (``rate(a) - rate(b)``
    inside one sum would match series label by label, which is not what the query says). A rate over
    an increase is not a ratio of events at all: it stays the query it is.
    """
    for function in _FUNCTIONS:
        bad, total = rated_selector(error_query, function), rated_selector(total_query, function)
        if bad is not None and total is not None:
            return bad, total
    return None


def latency_sli(error_query: str, total_query: str) -> dict[str, Any] | None:
    """A `latency` SLI for Sloth's histogram shape: errors ``sum(rate(H_count{S}[w])) -
    sum(rate(H_bucket{S,le="X"}[w]))`` over ``sum(rate(H_count{S}[w]))``, else None."""
    import promql_parser as pq

    from generators.promql_scope import matchers_of, metric_name

    error, total = _parsed(error_query), _parsed(total_query)
    error = _unparen(error) if error is not None else None
    if not isinstance(error, pq.BinaryExpr) or str(error.op) != "-" or error.modifier is not None or total is None:
        return None
    for function in _FUNCTIONS:
        count, bucket, whole = (_rated_node(error.lhs, function), _rated_node(error.rhs, function),
                                _rated_node(total, function))
        if count is not None and bucket is not None and whole is not None:
            break
    else:
        return None
    name = metric_name(count)
    if not name or not name.endswith("_count") or metric_name(whole) != name:
        return None
    histogram = name[: -len("_count")]
    if metric_name(bucket) != f"{histogram}_bucket":
        return None
    own = sorted(m for m in matchers_of(count) if m[0] != "__name__")
    le = [m for m in matchers_of(bucket) if m[0] == "le"]
    rest = sorted(m for m in matchers_of(bucket) if m[0] not in ("__name__", "le"))
    if own != rest or own != sorted(m for m in matchers_of(whole) if m[0] != "__name__") or len(le) != 1 \
            or le[0][1] != "=" or not re.match(r"^[0-9]+(\.[0-9]+)?$", le[0][2]) or float(le[0][2]) <= 0:
        return None
    threshold = Decimal(le[0][2]).normalize()
    body: dict[str, Any] = {"threshold": threshold, "histogram": histogram, "selector": selector_spec(own)}
    if threshold not in DEFAULT_BUCKETS:
        body["buckets"] = buckets_with(threshold)
    return {"latency": body}


def window_query(query: str) -> str:
    return TEMPLATE_WINDOW.sub(WINDOW_PLACEHOLDER, textwrap.dedent(query).strip())


def grouped(query: str) -> str:
    """``query`` with ``$window``, in parentheses unless the whole of it already is one parenthesised expression."""
    import promql_parser as pq

    from generators.promql_scope import PromQLError, parse

    text = window_query(query)
    try:
        whole = isinstance(parse(text.replace(WINDOW_PLACEHOLDER, "5m")), pq.ParenExpr)
    except PromQLError:
        whole = False  # reported when the whole ratio is checked
    if whole:
        return text
    return f"({text})" if "\n" not in text else "(\n" + textwrap.indent(text, "  ") + "\n)"


__all__ = ["events_pair", "rated_selector", "latency_sli", "window_query", "grouped"]
