"""What a catalog rule watches, as something to draw: the signal an alert compares, and its threshold.

A catalog rule's expression is a condition (``pg_replication_lag_seconds > 30``); a dashboard wants the
quantity behind it (``pg_replication_lag_seconds``) with the line at which the alert fires (30). This
module takes conditions apart on the PromQL syntax tree (generators.promql_scope's parser, never
regexes):

- ``A > 30``, ``30 < A``: the signal ``A``, threshold 30 (constant arithmetic such as ``21 * 86400``
  is folded);
- ``A < 2 * B``: the signal ``A``, and ``2 * B`` drawn as a threshold *series*;
- ``C and D`` / ``C unless D``: the signals of ``C`` (``D`` only guards it);
- ``C or D``: the signals of both;
- anything else (``absent(x)``, ``count(...)``): the whole condition, drawn as it is (it has a value only
  while the alert's condition holds).

Signals are taken from the catalog's own (unscoped) expressions, once per process, and then scoped to a
dependency with :func:`generators.promql_scope.scope`, the function the alerts are scoped with: adding
matchers to every selector commutes with taking a subtree, so the panel reads exactly the series its
alert reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import promql_parser as pq

from generators.promql_scope import parse, render

COMPARISONS = frozenset({">", "<", ">=", "<=", "==", "!="})
_FLIPPED = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "==": "==", "!=": "!="}
_ARITHMETIC = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
               "/": lambda a, b: a / b}


@dataclass(frozen=True)
class Signal:
    """One quantity a rule's condition compares: ``expr`` with the threshold ``op`` ``value`` (a number)
    or ``op`` ``series`` (PromQL); both None when the condition is drawn whole."""

    expr: str
    op: str | None = None
    value: Decimal | None = None
    series: str | None = None


def _bare(node: Any) -> Any:
    while isinstance(node, pq.ParenExpr):
        node = node.expr
    return node


def constant(node: Any) -> Decimal | None:
    """The value of a constant numeric expression (``3 * 86400``, ``-1``), None when it is not one."""
    node = _bare(node)
    try:
        if isinstance(node, pq.NumberLiteral):
            return Decimal(repr(node.val)).normalize()
        if isinstance(node, pq.UnaryExpr):
            inner = constant(node.expr)
            return None if inner is None else -inner
        if isinstance(node, pq.BinaryExpr) and str(node.op) in _ARITHMETIC:
            left, right = constant(node.lhs), constant(node.rhs)
            if left is None or right is None:
                return None
            return _ARITHMETIC[str(node.op)](left, right).normalize()
    except (InvalidOperation, ZeroDivisionError, ValueError):
        return None
    return None


def _text(node: Any) -> str:
    """PromQL text of a subtree; the renderer writes a bare metric name with empty braces (``pg_up{}``),
    which are dropped (outside string literals) so the panel shows the query as the catalog wrote it."""
    text = render(node)
    if "{}" not in text:
        return text
    parts = []
    quoted: str | None = None
    index = 0
    while index < len(text):
        char = text[index]
        if quoted is None and text.startswith("{}", index):
            index += 2
            continue
        if quoted is not None and char == "\\":
            parts.append(text[index:index + 2])
            index += 2
            continue
        if char in "\"'`":
            quoted = None if quoted == char else (char if quoted is None else quoted)
        parts.append(char)
        index += 1
    result = "".join(parts)
    if str(parse(result)) != str(parse(text)):
        raise ValueError(f"internal error: dropping empty braces changed {text}")
    return result


def _signals(node: Any) -> list[Signal]:
    node = _bare(node)
    if isinstance(node, pq.BinaryExpr):
        op = str(node.op)
        if op in ("and", "unless"):
            return _signals(node.lhs)
        if op == "or":
            return _signals(node.lhs) + _signals(node.rhs)
        if op in COMPARISONS and not (node.modifier is not None and node.modifier.return_bool):
            right, left = constant(node.rhs), constant(node.lhs)
            if right is not None and left is None:
                return [Signal(_text(_bare(node.lhs)), op, right)]
            if left is not None and right is None:
                return [Signal(_text(_bare(node.rhs)), _FLIPPED[op], left)]
            if left is None and right is None and node.modifier is None:
                # Two vectors matched one to one on all labels: the right side is the moving threshold.
                return [Signal(_text(_bare(node.lhs)), op, None, _text(_bare(node.rhs)))]
    return [Signal(_text(node))]


@lru_cache(maxsize=4096)  # a catalog rule's signals, once per process: every dependency of its type shares them
def rule_signals(expr: str) -> tuple[Signal, ...]:
    """The signals of one (unscoped) catalog rule expression, in the order its condition names them."""
    found: list[Signal] = []
    for signal in _signals(parse(expr)):
        if signal not in found:
            found.append(signal)
    return tuple(found)


__all__ = ["Signal", "rule_signals", "constant", "COMPARISONS"]
