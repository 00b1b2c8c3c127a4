"""Which labels a technology's metrics carry, and the alerts a dependency selector silences.

A catalog file declares, under ``metric_labels``, the labels its exporter puts on each metric it
reads (a metric name, or a family ``prefix*``; the longest matching key wins). Target labels are not
listed there: ``instance``, ``job``, whatever a scrape config attaches (``target_labels`` names the
ones the usual scrape config of the technology adds) are on every series of a target.

A dependency selector is injected into every vector selector of a rule. When a selector label is one
the exporter puts on *some* of its metrics (haproxy's ``proxy``) and a rule reads metrics that never
carry it (haproxy's process metrics), that rule's selectors match nothing and the alert can never
fire: :func:`selector_warnings` says so. A label the catalog does not know as the exporter's
(``cluster`` attached by the user's scrape config, say) is taken to be a target label and passes.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Protocol

import promql_parser as pq

from generators.errors import SpecError
from generators.model import Matcher, Service
from generators.promql_scope import PromQLError, matchers_of, metric_name, parse, selectors, walk
from generators.yamlload import Located

# On every series of a scrape target, whatever the exporter: Prometheus sets them.
TARGET_LABELS = frozenset({"instance", "job"})
# Series Prometheus writes itself for each target: they carry target labels only.
TARGET_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped",
                           "scrape_samples_post_metric_relabeling", "scrape_series_added"})


def declared_labels(data: Mapping[str, Any], metric: str) -> frozenset[str] | None:
    """The exporter labels ``metric`` carries by the file's ``metric_labels`` (None: not declared)."""
    if metric in TARGET_SERIES:
        return frozenset()
    return _index(_frozen(data.get("metric_labels", {})), metric)


def _frozen(table: Mapping[str, list[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(sorted((key, tuple(labels)) for key, labels in table.items()))


@lru_cache(maxsize=4096)
def _index(table: tuple[tuple[str, tuple[str, ...]], ...], metric: str) -> frozenset[str] | None:
    best: tuple[int, tuple[str, ...]] | None = None
    for key, labels in table:
        if key == metric:
            return frozenset(labels)
        if key.endswith("*") and metric.startswith(key[:-1]) and (best is None or len(key) > best[0]):
            best = (len(key), labels)
    return frozenset(best[1]) if best is not None else None


_EXPORTER_LABELS: dict[int, tuple[Mapping[str, Any], frozenset[str]]] = {}


def exporter_labels(data: Mapping[str, Any]) -> frozenset[str]:
    """Every label the file says the exporter puts on some metric (target labels excluded); once per
    loaded file (the memo holds the data, so its id stays its own)."""
    held = _EXPORTER_LABELS.get(id(data))
    if held is not None and held[0] is data:
        return held[1]
    target = set(data.get("target_labels", ())) | TARGET_LABELS
    labels = frozenset(label for labels in data.get("metric_labels", {}).values() for label in labels) - target
    _EXPORTER_LABELS[id(data)] = (data, labels)
    return labels


def _uses_in_expr(expr: Any) -> dict[str, set[str]]:
    """metric → labels the expression reads it by: its own matchers, and by(...) of aggregations over it."""
    uses: dict[str, set[str]] = {}

    def visit(node: Any, ancestors: list[Any]) -> None:
        if not isinstance(node, pq.VectorSelector):
            return
        name = metric_name(node)
        if name is None:
            return
        labels = uses.setdefault(name, set())
        labels.update(label for label, _op, _value in matchers_of(node) if label != "__name__")
        for ancestor in ancestors:
            modifier = getattr(ancestor, "modifier", None) if isinstance(ancestor, pq.AggregateExpr) else None
            if modifier is not None and modifier.type == pq.AggModifierType.By:
                labels.update(modifier.labels)

    walk(expr, visit)
    return uses


def _series_labels(text: str) -> tuple[str | None, set[str]]:
    node = parse(text)
    if not isinstance(node, pq.VectorSelector):
        return None, set()
    return metric_name(node), {label for label, _op, _value in matchers_of(node) if label != "__name__"}


def lint_metric_labels(located: Located) -> list[SpecError]:
    """The declarations cannot rot: in a file that has ``metric_labels`` (every file of the shipped
    catalog), every metric a rule reads is declared, and every label a rule or its test series uses on a
    metric is one declared for it (or a target label). A file without it gets no selector warnings."""
    data = located.data
    if "metric_labels" not in data:
        return []
    target = set(data.get("target_labels", ())) | TARGET_LABELS
    errors: list[SpecError] = []

    def check(metric: str, labels: Iterable[str], pointer: str, rule: str, how: str) -> None:
        declared = declared_labels(data, metric)
        if declared is None:
            return  # reported once per rule below
        stray = sorted(set(labels) - declared - target)
        if stray:
            names = ", ".join(f"'{label}'" for label in stray)
            errors.append(located.error(pointer, f"{rule}: {how} {metric} by {names}, which metric_labels "
                                                 "does not declare for it"))

    for index, rule in enumerate(data["rules"]):
        at = f"/rules/{index}"
        missing = sorted(m for m in rule["metrics"] if declared_labels(data, m) is None)
        if missing:
            errors.append(located.error(f"{at}/metrics", f"{rule['name']}: metric_labels does not declare "
                                                         f"{', '.join(missing)} (metric name or prefix*)"))
        try:
            uses = _uses_in_expr(parse(rule["expr"]))
        except PromQLError:
            continue  # lint_rules reports it
        for metric, labels in sorted(uses.items()):
            check(metric, labels, f"{at}/expr", rule["name"], "expr reads")
        for t, case in enumerate(rule.get("tests", [])):
            for s, series in enumerate(case["series"]):
                try:
                    metric, labels = _series_labels(series["series"])
                except PromQLError:
                    continue  # promtool reports a malformed series
                if metric is not None:
                    check(metric, labels, f"{at}/tests/{t}/series/{s}/series", rule["name"], "a test series has")
    return errors


def _matches_empty(op: str, value: str) -> bool:
    """Whether a selector matcher matches a series that lacks the label (its value is then "")."""
    if op in ("=", "!="):
        return (value == "") == (op == "=")
    try:
        full = re.fullmatch(value, "") is not None
    except re.error:
        return True  # a regex Python reads differently from RE2: assume the best, never warn falsely
    return full == (op == "=~")


# Functions whose result does not vanish with their argument.
_NEVER_EMPTY_CALLS = frozenset({"absent", "absent_over_time", "scalar", "vector", "time", "pi"})


def _empty(node: Any, vanishes: Callable[[str], bool]) -> bool:
    """Whether ``node`` surely evaluates to nothing when the selectors of metrics ``vanishes`` names
    match nothing. Unknown shapes answer False: a warning must never be wrong."""
    if isinstance(node, pq.VectorSelector):
        name = metric_name(node)
        return name is not None and vanishes(name)
    if isinstance(node, pq.MatrixSelector):
        return _empty(node.vector_selector, vanishes)
    if isinstance(node, (pq.ParenExpr, pq.UnaryExpr, pq.SubqueryExpr, pq.AggregateExpr)):
        return _empty(node.expr, vanishes)
    if isinstance(node, pq.Call):
        if str(node.func.name) in _NEVER_EMPTY_CALLS:
            return False
        return any(_empty(arg, vanishes) for arg in node.args)
    if isinstance(node, pq.BinaryExpr):
        op = str(node.op)
        left, right = _empty(node.lhs, vanishes), _empty(node.rhs, vanishes)
        if op == "or":
            return left and right
        if op == "unless":
            return left
        return left or right  # and, arithmetic, comparison: nothing on one side matches nothing
    return False


@lru_cache(maxsize=4096)
def _never_fires(expr: str, lacking: frozenset[str]) -> bool:
    return _empty(parse(expr), lacking.__contains__)


def _lacks(data: Mapping[str, Any], metric: str, label: str) -> bool:
    declared = declared_labels(data, metric)
    return declared is not None and label not in declared  # undeclared (imported files): no opinion


def silenced_rules(data: Mapping[str, Any], rules: Iterable[Mapping[str, Any]], matcher: Matcher) -> list[str]:
    """Names of ``rules`` that can never fire once ``matcher`` is added to their selectors because the
    label is the exporter's and some of their metrics never carry it."""
    label, op, value = matcher
    if label not in exporter_labels(data) or _matches_empty(op, value):
        return []
    silenced = []
    for rule in rules:
        lacking = frozenset(m for m in rule["metrics"] if _lacks(data, m, label))
        if lacking and _never_fires(rule["expr"], lacking):
            silenced.append(rule["name"])
    return silenced


class _Marked(Protocol):
    def error(self, pointer: str, message: str, key: bool = False, warning: bool = False) -> SpecError: ...


class SelectorMarks(NamedTuple):
    """Where a spec's dependencies and their selector labels are: what :func:`selector_warnings` needs of
    the spec's line marks, small enough for a build's worker process to send back with its summary."""

    path: str
    marks: dict[tuple[str, bool], tuple[int, int]]

    @classmethod
    def of(cls, located: Located, service: Service) -> "SelectorMarks":
        marks: dict[tuple[str, bool], tuple[int, int]] = {}
        for index, dep in enumerate(service.technologies):
            at = f"/dependencies/technologies/{index}"
            marks[(at, False)] = located.where(at)
            for label, _op, _value in dep.selector:
                marks[(f"{at}/selector/{label}", True)] = located.where(f"{at}/selector/{label}", key=True)
        return cls(located.path, marks)

    def error(self, pointer: str, message: str, key: bool = False, warning: bool = False) -> SpecError:
        line, col = self.marks.get((pointer, key), (1, 1))
        return SpecError(self.path, line, col, pointer, message, warning)


def selector_warnings(located: _Marked, service: Service, catalog: Mapping[str, Any]) -> list[SpecError]:
    """A warning per dependency selector label that silences some of the alerts the service gets.
    ``catalog``: technology name → :class:`generators.catalog.Technology` (unknown ones are skipped)."""
    from generators.tech_alerts import reads_target_series, selected_rules

    warnings: list[SpecError] = []
    for index, dep in enumerate(service.technologies):
        tech = catalog.get(dep.type)
        if tech is None:
            continue
        rules = selected_rules(tech, service.tier)
        if not dep.selector:
            left_out = [rule["name"] for rule in rules if reads_target_series(rule)]
            if left_out:
                warnings.append(located.error(f"/dependencies/technologies/{index}", (
                    f"{dep.type} '{dep.name}' has no selector, so {', '.join(left_out)} "
                    f"{'is' if len(left_out) == 1 else 'are'} left out: unscoped, a rule on 'up' fires for every "
                    "scrape target in Prometheus that is down; add a selector that matches this dependency's "
                    "targets"), warning=True))
            continue
        for matcher in dep.selector:
            silenced = silenced_rules(tech.data, rules, matcher)
            if not silenced:
                continue
            label = matcher[0]
            warnings.append(located.error(f"/dependencies/technologies/{index}/selector/{label}", (
                f"{dep.type} '{dep.name}': the exporter puts no '{label}' label on the metrics of "
                f"{', '.join(silenced)}: {'this alert' if len(silenced) == 1 else 'these alerts'} can never fire "
                f"for this dependency, unless your scrape config adds '{label}' to every target; select it by "
                "instance, job or a label your scrape config adds"),
                key=True, warning=True))
    return warnings




def spec_selector_warnings(located: _Marked, service: Service, catalog_dir: str,
                           cache_dir: str | None = None) -> list[SpecError]:
    """:func:`selector_warnings` with the technologies read from ``catalog_dir`` (kept in ``cache_dir``
    when given). A technology the catalog lacks or cannot load is skipped: that is reported as an error
    of its own (unknown technology; the catalog file's lint)."""
    from generators.catalog import load_technology, load_technology_cached, technology_files
    from generators.errors import SpecErrors

    files = technology_files(catalog_dir)
    catalog: dict[str, Any] = {}
    for dep in service.technologies:
        if dep.type in files and dep.type not in catalog:
            try:
                path = files[dep.type]
                catalog[dep.type] = (load_technology(path) if cache_dir is None
                                     else load_technology_cached(path, cache_dir))
            except SpecErrors:
                continue
    return selector_warnings(located, service, catalog)


__all__ = ["TARGET_LABELS", "TARGET_SERIES", "declared_labels", "exporter_labels", "lint_metric_labels",
           "silenced_rules", "SelectorMarks", "selector_warnings", "spec_selector_warnings"]
