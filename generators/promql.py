"""Small, exact helpers for writing PromQL text."""
from __future__ import annotations

from decimal import Decimal
from typing import Iterable

from generators.model import Matcher


def quote(value: str) -> str:
    """A PromQL double-quoted string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def selector(metric: str, matchers: Iterable[Matcher]) -> str:
    body = ",".join(f"{label}{op}{quote(value)}" for label, op, value in matchers)
    return f"{metric}{{{body}}}"


def le_matcher(seconds: Decimal) -> Matcher:
    """Match a histogram bucket boundary however the client library spelled it.

    Go clients write le="1", the Python client and Prometheus 3 write le="1.0";
    a non-integral boundary such as 0.5 is spelled the same everywhere.
    """
    text = format(seconds.normalize(), "f")
    if "." in text:
        return ("le", "=", text)
    return ("le", "=~", f"{text}(\\.0)?")
