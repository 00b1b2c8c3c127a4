"""Human wording for JSON Schema violations (jsonschema's own messages are Python reprs of whole values:
"-5 is less than or equal to the minimum of 0", or all of a 5000-character string).

Every value quoted here goes through :func:`generators.errors.excerpt`, so an error line never carries more
than a short excerpt of what the user wrote.
"""
from __future__ import annotations

import difflib
from typing import Any

from generators.errors import clip, excerpt


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 item``, ``2 items`` (``nouns`` for irregular plurals)."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def type_name(value: Any) -> str:
    """What a YAML value is, for "expected X, found Y" (scalars with a clipped excerpt)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"a {type(value).__name__} ({clip(repr(value))})"


def _number(value: Any) -> str:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else excerpt(value, 60)


def _first_repeated(items: list[Any]) -> Any:
    seen: list[Any] = []  # items may be unhashable (mappings)
    for item in items:
        if item in seen:
            return item
        seen.append(item)
    return None


def unknown_key(key: str, allowed: list[str]) -> str:
    """``unknown key 'tierr'; did you mean 'tier'? (allowed keys: …)``."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key {excerpt(key, 60)}{hint} (allowed keys: {', '.join(allowed)})"


def describe(error: Any) -> str:
    """The message for one jsonschema ValidationError, in our words."""
    custom = error.schema.get("x-messages", {}) if isinstance(error.schema, dict) else {}
    kind, limit, value = error.validator, error.validator_value, error.instance
    if kind in custom:
        shown = value if value is None or isinstance(value, (bool, int, float)) else clip(value)
        return custom[kind].format(instance=shown)
    if kind == "type":
        expected = " or ".join(limit) if isinstance(limit, list) else limit
        expected = {"object": "a mapping", "array": "a list"}.get(expected, f"a {expected}")
        return f"expected {expected}, found {type_name(value)}"
    if kind == "exclusiveMinimum":
        return f"{_number(value)} is not allowed: it must be greater than {_number(limit)}"
    if kind == "minimum":
        return f"{_number(value)} is not allowed: it must be at least {_number(limit)}"
    if kind == "exclusiveMaximum":
        return f"{_number(value)} is not allowed: it must be less than {_number(limit)}"
    if kind == "maximum":
        return f"{_number(value)} is not allowed: it must be at most {_number(limit)}"
    if kind == "maxLength":
        return f"{excerpt(value, 60)} is too long: at most {plural(limit, 'character')}, it has {len(value)}"
    if kind == "minLength":
        return f"{excerpt(value, 60)} is too short: at least {plural(limit, 'character')}"
    if kind == "minItems":
        return f"needs at least {plural(limit, 'item')}, has {len(value)}"
    if kind == "maxItems":
        return f"at most {plural(limit, 'item')} allowed, has {len(value)}"
    if kind == "maxProperties":
        return f"at most {plural(limit, 'key')} allowed, has {len(value)}"
    if kind == "uniqueItems":
        return f"lists {excerpt(_first_repeated(value), 60)} more than once; each item may appear once"
    if kind == "enum":
        return f"{excerpt(value, 60)} is not one of {', '.join(str(option) for option in limit)}"
    if kind == "pattern":
        return f"{excerpt(value)} does not match the pattern {limit}"
    return clip(error.message, 300)


__all__ = ["plural", "type_name", "unknown_key", "describe"]
