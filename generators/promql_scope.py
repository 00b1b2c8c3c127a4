"""PromQL through a real parser: scope expressions to one instance, list their metrics, lint counters.

Everything here works on the syntax tree of ``promql_parser`` (the Rust
PromQL parser's Python binding), never on regexes over the text.

Two quirks of that binding (0.12) shape the code:
- ``str(expr)`` writes label values and string literals between quotes
  without escaping them, so a value holding ``"`` or ``\\`` comes out as
  invalid PromQL. We therefore render with unique placeholder values and
  substitute properly quoted values afterwards.
- setting ``.matchers`` on a node does not reach the tree ``transform``
  builds, so replacement selectors are parsed from text instead.
Every rendered expression is parsed again and compared with what we meant to
write, so a rendering bug fails loudly instead of shipping a wrong alert.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable

import promql_parser as pq

from generators.model import Matcher
from generators.promql import quote

COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
# Functions that turn a raw counter into something meaningful (or only ask whether it exists).
COUNTER_SAFE_FUNCTIONS = frozenset({
    "rate", "irate", "increase", "resets", "changes", "absent", "absent_over_time", "present_over_time",
})

# MatchOp values are not hashable, so this is a list of pairs, not a dict.
_OPS: tuple[tuple[Any, str], ...] = (
    (pq.MatchOp.Equal, "="),
    (pq.MatchOp.NotEqual, "!="),
    (pq.MatchOp.Re, "=~"),
    (pq.MatchOp.NotRe, "!~"),
)


def _op_text(op: Any) -> str:
    return next(text for value, text in _OPS if value == op)
_PLACEHOLDER = "__nthlayer_value_{}__"


def _register_prometheus2_functions() -> None:
    # Prometheus 2.x (what promtool here checks against) still has holt_winters;
    # the parser only knows its Prometheus 3 name.
    matrix, scalar, vector = pq.ValueType.Matrix, pq.ValueType.Scalar, pq.ValueType.Vector
    try:
        pq.register_extra_functions([pq.Function("holt_winters", [matrix, scalar, scalar], vector)])
    except (TypeError, ValueError):  # pragma: no cover - a binding without this hook
        pass


_register_prometheus2_functions()


class PromQLError(ValueError):
    """An expression that does not parse, or that we cannot handle faithfully."""


def parse(expr: str) -> Any:
    """Parse PromQL; raise PromQLError with the parser's message."""
    try:
        return pq.parse(expr)
    except (ValueError, TypeError) as exc:
        raise PromQLError(str(exc)) from None


def _matchers(node: Any) -> list[Matcher]:
    selectors = node.matchers
    if selectors.or_matchers:
        raise PromQLError("'or' inside a label selector is not supported by Prometheus 2.x")
    return [(str(m.name), _op_text(m.op), str(m.value)) for m in selectors.matchers]


def matchers_of(node: Any) -> list[Matcher]:
    """A vector selector's matchers as (label, op, value), its ``__name__`` matcher included."""
    return _matchers(node)


def metric_name(node: Any) -> str | None:
    """The fixed metric name of a vector selector: its name, or a ``__name__="..."`` matcher."""
    if node.name:
        return str(node.name)
    for label, op, value in _matchers(node):
        if label == "__name__" and op == "=":
            return value
    return None


def _walk(expr: Any, visit: Callable[[Any, list[Any]], None]) -> None:
    """Call ``visit(node, ancestors)`` for every node, depth first."""
    stack: list[Any] = []

    def pre(node: Any) -> bool:
        visit(node, stack)
        stack.append(node)
        return True

    def post(node: Any) -> bool:
        stack.pop()
        return True

    pq.walk(expr, pre, post)


walk = _walk


def selectors(expr: Any) -> list[Any]:
    found: list[Any] = []
    _walk(expr, lambda node, _: found.append(node) if isinstance(node, pq.VectorSelector) else None)
    return found


def metric_names(expr: str) -> tuple[set[str], list[str]]:
    """Metric names an expression reads, and problems (selectors whose name is not fixed)."""
    names: set[str] = set()
    problems: list[str] = []
    for node in selectors(parse(expr)):
        name = metric_name(node)
        if name is None:
            problems.append(f"selector {node} has no fixed metric name, so its metrics cannot be checked")
        else:
            names.add(name)
    return names, problems


def _call_name(node: Any) -> str | None:
    return str(node.func.name) if isinstance(node, pq.Call) else None


def raw_counters(expr: str, gauges: Iterable[str] = ()) -> list[str]:
    """Counter-looking metrics read outside rate()/increase()/… (sorted, unique).

    ``gauges`` are names that end like counters but are documented gauges
    (postgres_exporter's ``pg_stat_activity_count``, for one).
    """
    allowed = set(gauges)
    bad: set[str] = set()

    def visit(node: Any, ancestors: list[Any]) -> None:
        if not isinstance(node, pq.VectorSelector):
            return
        name = metric_name(node)
        if name is None or name in allowed or not name.endswith(COUNTER_SUFFIXES):
            return
        if not any(_call_name(a) in COUNTER_SAFE_FUNCTIONS for a in ancestors):
            bad.add(name)

    _walk(parse(expr), visit)
    return sorted(bad)


class _Placeholders:
    """Swap every label value and string literal for a unique placeholder, remembering the real text."""

    def __init__(self, source: str) -> None:
        if _PLACEHOLDER.format("")[:-2] in source:
            raise PromQLError("expression contains nthlayer's reserved placeholder text")
        self.values: list[str] = []

    def _hold(self, value: str) -> str:
        self.values.append(value)
        return _PLACEHOLDER.format(len(self.values) - 1)

    def selector(self, node: Any, extra: tuple[Matcher, ...]) -> Any:
        existing = _matchers(node)
        combined = existing + [m for m in extra if m not in existing]
        name = str(node.name) if node.name else ""
        body = ",".join(f'{label}{op}"{self._hold(value)}"' for label, op, value in combined)
        # str(node) is name + str(matchers) + " offset …"/" @ …"; keep that suffix as rendered.
        rendered = str(node)
        head = name + str(node.matchers)
        if not rendered.startswith(head):
            raise PromQLError(f"cannot re-render selector {rendered}")
        return parse(f"{name}{{{body}}}{rendered[len(head):]}")

    def string(self, node: Any) -> Any:
        return parse(f'"{self._hold(str(node.val))}"')

    def substitute(self, text: str) -> str:
        # Highest index first, so __nthlayer_value_1__ never eats into …_10__.
        for index in range(len(self.values) - 1, -1, -1):
            text = text.replace(f'"{_PLACEHOLDER.format(index)}"', quote(self.values[index]))
        return text


def _with_placeholders(expr: Any, source: str, extra: tuple[Matcher, ...]) -> tuple[str, _Placeholders]:
    holder = _Placeholders(source)

    def pre(node: Any) -> Any:
        if isinstance(node, pq.VectorSelector):
            return holder.selector(node, extra)
        if isinstance(node, pq.StringLiteral):
            return holder.string(node)
        return None

    # The renderer puts two spaces after and/or/unless; values are placeholders here, so no
    # string content can be touched by tidying that.
    return re.sub(r" {2,}", " ", str(pq.transform(expr, pre, None))), holder


def render(tree: Any) -> str:
    """PromQL text for a syntax tree, label values and strings quoted properly (the binding's
    ``str()`` does not escape them). Raises PromQLError when the text does not parse back to the tree."""
    text, holder = _with_placeholders(tree, str(tree), ())
    result = holder.substitute(text)
    if str(parse(result)) != str(tree):
        raise PromQLError(f"internal error: rendered PromQL does not round-trip: {result}")
    return result


_SENTINEL = "__nthlayer_scope_{}__"
_TEMPLATES: dict[tuple[str, tuple[tuple[str, str], ...]], str | None] = {}


def _template(expr: str, shape: tuple[tuple[str, str], ...]) -> str | None:
    """:func:`scope` of ``expr`` with stand-in values for matchers of ``shape`` (label, op), or None
    when the real values could change the result (a selector already has a matcher of that shape, so
    an identical one would not be repeated)."""
    if _SENTINEL.format("")[:-2] in expr:
        return None
    existing = {(label, op) for node in selectors(parse(expr)) for label, op, _value in _matchers(node)}
    if existing & set(shape):
        return None
    return _scope(expr, tuple((label, op, _SENTINEL.format(i)) for i, (label, op) in enumerate(shape)))


def scoped_by_position(expr: str, shape: tuple[tuple[str, str], ...]) -> bool:
    """Whether :func:`scope` of ``expr`` with equality matchers of this (label, op) shape only places
    their values, never compares them with the expression's own matchers: then scoping with stand-in
    values and substituting the real ones gives what scoping with the real ones gives."""
    return not shape or _cached_template(expr, shape) is not None


def _cached_template(expr: str, shape: tuple[tuple[str, str], ...]) -> str | None:
    key = (expr, shape)
    if key not in _TEMPLATES:
        _TEMPLATES[key] = _template(expr, shape)
    return _TEMPLATES[key]


def scope(expr: str, matchers: Iterable[Matcher]) -> str:
    """``expr`` with ``matchers`` added to every vector selector (identical ones not repeated).

    With no matchers the expression is returned as written.
    """
    extra = tuple(matchers)
    if not extra:
        return expr.strip()
    # Parsing and round-tripping dominates a build, and the same catalog rule is scoped once per
    # dependency instance: do it once per (rule, matcher labels and ops), then drop the values in.
    # Regex values must be checked by the parser, and an empty value can leave a selector matching
    # nothing but empty labels: those take the full path.
    if all(value and op in ("=", "!=") and not any(c in value for c in '\\"\n') for _label, op, value in extra):
        result = _cached_template(expr, tuple((label, op) for label, op, _value in extra))
        if result is not None:
            for index, (_label, _op, value) in enumerate(extra):
                result = result.replace(quote(_SENTINEL.format(index)), quote(value))
            return result
    return _scope(expr, extra)


def _scope(expr: str, extra: tuple[Matcher, ...]) -> str:
    tree = parse(expr)
    if not selectors(tree):
        return expr.strip()
    templated, holder = _with_placeholders(tree, expr, extra)
    result = holder.substitute(templated)
    # Round trip: parse what we wrote and render it the same way; any difference is a rendering bug.
    check, check_holder = _with_placeholders(parse(result), result, ())
    if check != templated or check_holder.values != holder.values:
        raise PromQLError(f"internal error: scoped PromQL does not round-trip: {result}")
    return result


_RATED = "__nthlayer_rated_{}__"


def rate_selectors(expr: str, window: str) -> str:
    """``expr`` with every vector selector ``s`` replaced by ``rate(s[window])``: an `events` SLI's
    expression over counters, as events per second over ``window``. Raises PromQLError when the result
    is not valid PromQL (e.g. a selector with an ``offset``, which must follow the range)."""
    if _RATED.format("")[:-2] in expr:
        raise PromQLError("expression contains nthlayer's reserved placeholder text")
    tree = parse(expr)
    holder = _Placeholders(expr)
    rated: list[str] = []

    def pre(node: Any) -> Any:
        # Each selector becomes a bare placeholder name (the transform visits what it is given back,
        # so it cannot be handed a rate() holding the selector); the rate() goes in as text after.
        if isinstance(node, pq.VectorSelector):
            if node.name and str(node.name).startswith(_RATED.format("")[:-2]):
                return None
            held = str(holder.selector(node, ()))
            rated.append(held[:-2] if held.endswith("{}") else held)
            return parse(_RATED.format(len(rated) - 1))
        if isinstance(node, pq.StringLiteral):
            return holder.string(node)
        return None

    text = re.sub(r" {2,}", " ", str(pq.transform(tree, pre, None)))
    for index in range(len(rated) - 1, -1, -1):
        # The renderer writes a bare name with empty braces.
        text = text.replace(_RATED.format(index) + "{}", _RATED.format(index))
        text = text.replace(_RATED.format(index), f"rate({rated[index]}[{window}])")
    result = holder.substitute(text)
    parse(result)
    return result


__all__ = ["PromQLError", "COUNTER_SUFFIXES", "parse", "metric_names", "metric_name", "matchers_of", "walk",
           "selectors", "raw_counters", "render", "scope", "scoped_by_position", "rate_selectors"]
