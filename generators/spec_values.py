"""Checks on spec values that end up inside Prometheus rule files, so that a valid spec never builds a
file Prometheus rejects or reads differently from what the user wrote.

- Free text that reaches alert labels or annotations (``labels`` values, runbook URLs; and the description,
  which OpenSLO and PagerDuty show and annotations may) must not hold ``{{`` or ``}}``: Prometheus expands
  alert labels and annotations as Go templates, so ``{{`` either breaks the rule file ("unclosed action")
  or, well formed, runs a query when the alert fires. Generated annotation text that quotes a selector
  escapes it instead (generators.slo_rules.template_literal).
- Label names starting with ``__`` are Prometheus' own: refused in ``labels`` and in selectors.
- A regex matcher (``=~``/``!~`` in a selector or error matcher) must compile as Prometheus compiles it:
  Go's RE2, the value as written and anchored as ``^(?:value)$``. ``google-re2`` judges (C++ RE2, the same
  syntax), plus the two constructs C++ RE2 takes and Go's does not (``\\C``, ``(?<name>``), and the PromQL
  parser nthlayer scopes catalog expressions with.
- SLI matchers must leave label values for the generated promtool tests' series (:func:`sli_errors`).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterator

from generators.errors import SpecError, clip, excerpt
from generators.model import Service
from generators.yamlload import Located, escape_pointer_token

TEMPLATE_MARKS = ("{{", "}}")
_SELECTORS = ("/observability/sli/selector", "/observability/sli/error_matchers")  # besides the technologies


def _text_fields(data: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(pointer, value) of every free-text value that reaches alert labels or annotations."""
    for key in ("description", "runbook_url"):
        if key in data:
            yield f"/{key}", data[key]
    for key, value in data.get("labels", {}).items():
        yield f"/labels/{escape_pointer_token(key)}", value
    for index, tech in enumerate(data.get("dependencies", {}).get("technologies", ())):
        if "runbook_url" in tech:
            yield f"/dependencies/technologies/{index}/runbook_url", tech["runbook_url"]


def template_errors(located: Located) -> list[SpecError]:
    """``{{``/``}}`` in text that Prometheus would read as a Go template."""
    errors = []
    for pointer, value in _text_fields(located.data):
        found = [mark for mark in TEMPLATE_MARKS if mark in value]
        if found:
            errors.append(located.error(pointer, (
                f"{excerpt(value)} contains {' and '.join(repr(m) for m in found)}: Prometheus reads alert labels "
                "and annotations as templates, so this would break the rule file or run a query; remove it")))
    return errors


def _selectors(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    sli = data.get("observability", {}).get("sli", {})
    for pointer in _SELECTORS:
        key = pointer.rsplit("/", 1)[1]
        if key in sli:
            yield pointer, sli[key]
    for index, tech in enumerate(data.get("dependencies", {}).get("technologies", ())):
        if "selector" in tech:
            yield f"/dependencies/technologies/{index}/selector", tech["selector"]


def _go_only_problem(regex: str) -> str | None:
    """Syntax C++ RE2 accepts and Go's regexp (Prometheus) rejects."""
    index, in_class = 0, False
    while index < len(regex):
        char = regex[index]
        if char == "\\":
            if regex[index + 1:index + 2] == "C":
                return "invalid escape sequence: \\C"
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if regex[index + 1:index + 2] == "]":  # a ']' right after '[' is a literal member
                index += 1
        elif regex.startswith("(?<", index) and regex[index + 3:index + 4] not in ("=", "!"):
            return "named groups are written (?P<name>...) in Go's regexp"
        index += 1
    return None


@lru_cache(maxsize=1)
def re2_options() -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False  # it would print every rejected pattern to stderr
    return options


@lru_cache(maxsize=1024)
def regex_problem(regex: str) -> str | None:
    """Why Prometheus would reject ``regex`` as a label matcher's regex, or None when it accepts it."""
    import re2

    for candidate in (regex, f"^(?:{regex})$"):
        try:
            re2.compile(candidate, re2_options())
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
            if candidate is not regex:  # the fragment after ': ' would quote our anchoring, not the user's text
                reason = reason.split(": ", 1)[0]
            return f"{_NOT_RE2}: {clip(reason, 80)}"
    go_only = _go_only_problem(regex)
    if go_only:
        return f"{_NOT_RE2}: {go_only}"
    from generators.promql import quote
    from generators.promql_scope import PromQLError, parse

    try:
        parse(f"x{{l=~{quote(regex)}}}")
    except PromQLError as exc:
        return f"cannot be read by nthlayer's PromQL parser ({clip(str(exc), 80)}); write it another way"
    return None


_NOT_RE2 = ("is not a regular expression Prometheus accepts (Go's RE2 syntax, which has no lookaround, "
            "backreferences or possessive quantifiers)")


def _reserved(located: Located, pointer: str, label: str) -> SpecError:
    return located.error(f"{pointer}/{escape_pointer_token(label)}", (
        f"{excerpt(label)}: label names starting with '__' are reserved for Prometheus' own use "
        "(the metric name is __name__)"), key=True)


def regex_errors(located: Located) -> list[SpecError]:
    """Regex matchers that Prometheus (Go's RE2) would not compile, and matchers on its reserved labels."""
    errors = []
    for pointer, selector in _selectors(located.data):
        for label, value in selector.items():
            if label.startswith("__"):
                errors.append(_reserved(located, pointer, label))
                continue
            if label == "le" and pointer == _SELECTORS[0]:
                errors.append(located.error(f"{pointer}/le", (
                    "'le' is the histogram's bucket label, which nthlayer sets to the latency threshold; "
                    "the SLI selector cannot match on it"), key=True))
                continue
            for op in ("=~", "!~"):
                if value.startswith(op):
                    problem = regex_problem(value[len(op):])
                    if problem:
                        errors.append(located.error(f"{pointer}/{escape_pointer_token(label)}",
                                                    f"{excerpt(value[len(op):])} {problem}"))
    return errors


def sli_errors(located: Located, service: Service) -> list[SpecError]:
    """SLI matchers the generated promtool tests cannot be made for (checked only when the spec sets them:
    the defaults always work)."""
    sli = located.data.get("observability", {}).get("sli", {})
    if sli.get("error_matchers") == {}:
        return [located.error("/observability/sli/error_matchers", (
            "error_matchers needs at least one matcher: with none, every request would count as an error"))]
    if "selector" not in sli and "error_matchers" not in sli:
        return []
    from generators.slo_tests import series_problem

    problem = series_problem(service)
    if problem is None:
        return []
    return [located.error("/observability/sli", (
        f"the generated promtool tests need label values that match the selector and error matchers, for good "
        f"and for failed requests, and nthlayer finds none ({clip(problem)}): use matchers that do not "
        "contradict each other, and regexes that offer a literal alternative (such as 'prod|prod-.*')"))]


def value_errors(located: Located) -> list[SpecError]:
    """Every problem of this module's checks on one schema-valid spec."""
    reserved = [_reserved(located, "/labels", label) for label in located.data.get("labels", {})
                if label.startswith("__")]
    return reserved + template_errors(located) + regex_errors(located)


__all__ = ["TEMPLATE_MARKS", "re2_options", "template_errors", "regex_problem", "regex_errors", "sli_errors",
           "value_errors"]
