"""The SLI half of the OpenSLO importer: an OpenSLO SLI (with the objective that judges it) → a spec SLI kind.

Queries come from Prometheus metric sources (inline, or a DataSource of type Prometheus); see
generators.importers.openslo for the mapping. Pure; what cannot be mapped is reported, never dropped.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from generators.errors import SpecError
from generators.importers.common import (
    TEMPLATE_WINDOW,
    WINDOW_PLACEHOLDER,
    as_decimal,
    buckets_with,
    lossy,
    selector_spec,
    warn,
)
from generators.model import DEFAULT_BUCKETS, SLI_DEFAULTS, THRESHOLD_OPS
from generators.openslo import CONDITION_ANNOTATION
from generators.yamlload import Located

_OPS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_LE_INTEGRAL = re.compile(r"^([0-9]+)\(\\\.0\)\?$")  # generators.promql.le_matcher's regex for 1, 2, …


class Index:
    """The valid documents by kind and name, and which of them an SLO used."""

    def __init__(self) -> None:
        self.by_kind: dict[str, dict[str, Located]] = {}
        self.used: set[tuple[str, str]] = set()

    def add(self, located: Located, warnings: list[SpecError]) -> None:
        kind, name = located.data["kind"], located.data["metadata"]["name"]
        named = self.by_kind.setdefault(kind, {})
        if name in named:
            first = named[name]
            warnings.append(lossy(located, "/metadata/name", f"{kind} '{name}'", "a document of that kind and "
                                  f"name comes first ({first.path}:{first.where('')[0]})"))
            return
        named[name] = located

    def get(self, kind: str, name: str) -> Located | None:
        found = self.by_kind.get(kind, {}).get(name)
        if found is not None:
            self.used.add((kind, name))
        return found


def _query(index: Index, located: Located, pointer: str, source: Any) -> tuple[str | None, str]:
    """(PromQL, why not) of a ``{metricSource: …}``."""
    source = source.get("metricSource", {}) if isinstance(source, dict) else {}
    kind = source.get("type")
    if kind is None and isinstance(source.get("metricSourceRef"), str):
        ref = index.get("DataSource", source["metricSourceRef"])
        kind = ref.data["spec"]["type"] if ref is not None else None
        if ref is None:
            return None, f"its data source '{source['metricSourceRef']}' is not among the documents"
    if not isinstance(kind, str) or kind.lower() != "prometheus":
        return None, f"its metric source is {kind!r}, not Prometheus"
    query = source.get("spec", {}).get("query")
    if not isinstance(query, str) or not query.strip():
        return None, "its Prometheus metric source has no spec.query"
    return query.strip(), ""


def _windowed(query: str) -> str | None:
    text = TEMPLATE_WINDOW.sub(WINDOW_PLACEHOLDER, query)
    return text if WINDOW_PLACEHOLDER in text else None


def _selector(expr: str) -> tuple[str, list[tuple[str, str, str]]] | None:
    """(metric, matchers without __name__) when ``expr`` is one plain vector selector."""
    import promql_parser as pq

    from generators.promql_scope import PromQLError, matchers_of, metric_name, parse

    try:
        tree = parse(expr)
    except PromQLError:
        return None
    if not isinstance(tree, pq.VectorSelector) or tree.offset is not None or tree.at is not None:
        return None
    name = metric_name(tree)
    if name is None:
        return None
    return name, [m for m in matchers_of(tree) if m[0] != "__name__"]


def _le(matcher: tuple[str, str, str]) -> Decimal | None:
    label, op, value = matcher
    if label != "le":
        return None
    if op == "=":
        number = as_decimal(float(value)) if re.match(r"^[0-9]+(\.[0-9]+)?$", value) else None
        return Decimal(value).normalize() if number is not None else None
    match = _LE_INTEGRAL.match(value) if op == "=~" else None
    return Decimal(match.group(1)) if match else None


def _counter_kind(service: str, good: str | None, bad: str | None, total: str) -> dict[str, Any]:
    """`availability`, `latency` or `events` for a counter ratio (see the module's docstring)."""
    total_sel = _selector(total)
    if bad is not None and total_sel is not None:
        bad_sel = _selector(bad)
        if bad_sel and bad_sel[0] == total_sel[0] and bad_sel[1][:len(total_sel[1])] == total_sel[1] \
                and len(bad_sel[1]) > len(total_sel[1]):
            body: dict[str, Any] = {}
            requests, errors, _histogram = SLI_DEFAULTS["api"]
            if total_sel[1] != sorted(total_sel[1]) or selector_spec(total_sel[1]) != {"job": service}:
                body["selector"] = selector_spec(total_sel[1])
            if total_sel[0] != requests:
                body["requests_metric"] = total_sel[0]
            extra = bad_sel[1][len(total_sel[1]):]
            if tuple(extra) != errors:
                body["error_matchers"] = selector_spec(extra)
            if len(set(selector_spec(extra)) | set(selector_spec(total_sel[1]))) == len(bad_sel[1]):
                return {"availability": body}
    if good is not None and total_sel is not None and total_sel[0].endswith("_count"):
        good_sel = _selector(good)
        histogram = total_sel[0][: -len("_count")]
        if good_sel and good_sel[0] == f"{histogram}_bucket" and good_sel[1][:-1] == total_sel[1] \
                and _le(good_sel[1][-1]) is not None:
            threshold = _le(good_sel[1][-1])
            body = {"threshold": threshold}
            if histogram != SLI_DEFAULTS["api"][2]:
                body["histogram"] = histogram
            if selector_spec(total_sel[1]) != {"job": service}:
                body["selector"] = selector_spec(total_sel[1])
            if threshold not in DEFAULT_BUCKETS:
                body["buckets"] = buckets_with(threshold)
            return {"latency": body}
    events: dict[str, str] = {"bad": bad} if bad is not None else {"good": good or ""}
    events["total"] = total
    return {"events": events}


def indicator(index: Index, service: str, located: Located, at: str, spec: Any, objective: dict[str, Any],
               exact: tuple[str, Decimal] | None, what: str,
               warnings: list[SpecError]) -> dict[str, Any] | None:
    """The SLI kind entry of an OpenSLO SLI spec, or None (reported)."""
    from generators.slo_spec import query_problem

    spec = spec if isinstance(spec, dict) else {}
    if "thresholdMetric" in spec:
        query, why = _query(index, located, f"{at}/thresholdMetric", spec["thresholdMetric"])
        op = _OPS.get(objective.get("op", ""))
        value = as_decimal(objective.get("value"))
        if exact is not None:
            op, value = exact
        if query is None:
            warnings.append(lossy(located, f"{at}/thresholdMetric", what, why))
            return None
        if op is None or value is None:
            warnings.append(lossy(located, at, what, "a threshold SLI needs the objective's op and value"))
            return None
        problem = query_problem(query, counters=False)
        if problem:
            warnings.append(lossy(located, f"{at}/thresholdMetric", what, f"its query: {problem}"))
            return None
        return {"threshold": {"query": query, "op": op, "value": value}}
    ratio = spec.get("ratioMetric", {})
    queries: dict[str, str] = {}
    for key in ("good", "bad", "total", "raw"):
        if key in ratio:
            query, why = _query(index, located, f"{at}/ratioMetric/{key}", ratio[key])
            if query is None:
                warnings.append(lossy(located, f"{at}/ratioMetric/{key}", what, why))
                return None
            queries[key] = query
    if "raw" in queries:
        text = _windowed(queries["raw"])
        if text is None:
            warnings.append(lossy(located, f"{at}/ratioMetric/raw", what, "its raw ratio query has no $window "
                                  "range, so nthlayer cannot evaluate it over each alert window"))
            return None
        return {"ratio_query": text if ratio.get("rawType") == "failure" else f"1 - (\n{text}\n)"}
    if ratio.get("counter") is True:
        for key, query in queries.items():
            problem = query_problem(query, counters=True)
            if problem:
                warnings.append(lossy(located, f"{at}/ratioMetric/{key}", what, f"its counter query: {problem}"))
                return None
        kind = _counter_kind(service, queries.get("good"), queries.get("bad"), queries["total"])
        if "buckets" in kind.get("latency", {}):
            warnings.append(warn(located, f"{at}/ratioMetric/good", "histogram buckets assumed: the default ones "
                                 f"plus the threshold {kind['latency']['threshold']} (OpenSLO does not list them)"))
        return kind
    parts = {key: _windowed(query) for key, query in queries.items()}
    if any(text is None for text in parts.values()):
        warnings.append(lossy(located, f"{at}/ratioMetric", what, "non-counter queries without a $window range "
                              "give nthlayer no way to evaluate them over each alert window (use counter: true)"))
        return None
    if "bad" in parts:
        return {"ratio_query": f"(\n{parts['bad']}\n)\n/\n(\n{parts['total']}\n)"}
    return {"ratio_query": f"1 - (\n(\n{parts['good']}\n)\n/\n(\n{parts['total']}\n)\n)"}


def exact_condition(located: Located) -> tuple[str, Decimal] | None:
    """A threshold SLI's exact condition from nthlayer's own annotation (OpenSLO's ops lack == and !=)."""
    text = (located.data["metadata"].get("annotations") or {}).get(CONDITION_ANNOTATION, "")
    op, _, value = text.partition(" ")
    return (op, Decimal(value)) if op in THRESHOLD_OPS and _NUMBER.match(value) else None


__all__ = ["Index", "indicator", "exact_condition"]
