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
from generators.model import SLO, Service
from generators.yamlload import Located, escape_pointer_token

TEMPLATE_MARKS = ("{{", "}}")
_SELECTORS = ("/observability/sli/selector", "/observability/sli/error_matchers")  # besides the technologies
_SLO_SELECTORS = (("availability", "selector"), ("availability", "error_matchers"), ("latency", "selector"))


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
    for index, entry in enumerate(data.get("slos", ())):
        if "description" in entry:
            yield f"/slos/{index}/description", entry["description"]
        alerting = entry.get("alerting", {})
        for field in ("labels", "annotations"):
            for key, value in alerting.get(field, {}).items():
                yield f"/slos/{index}/alerting/{field}/{escape_pointer_token(key)}", value


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
    for index, entry in enumerate(data.get("slos", ())):
        for kind, key in _SLO_SELECTORS:
            if key in entry.get(kind, ()):
                yield f"/slos/{index}/{kind}/{key}", entry[kind][key]


def _slo_queries(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(pointer, PromQL) of every query of the spec's `slos:` entries, ``$window`` set as validation sets it."""
    from generators.slo_spec import CHECK_WINDOWS, WINDOW_PLACEHOLDER

    for index, entry in enumerate(data.get("slos", ())):
        for key in ("bad", "good", "total"):
            if key in entry.get("events", ()):
                yield f"/slos/{index}/events/{key}", entry["events"][key]
        if "ratio_query" in entry:
            yield f"/slos/{index}/ratio_query", entry["ratio_query"].replace(WINDOW_PLACEHOLDER, CHECK_WINDOWS[0])
        if "query" in entry.get("threshold", ()):
            yield f"/slos/{index}/threshold/query", entry["threshold"]["query"]


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
            if label == "le" and (pointer == _SELECTORS[0] or pointer.endswith("/latency/selector")):
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


def query_regex_errors(located: Located) -> list[SpecError]:
    """Regex matchers inside the `slos:` queries that Prometheus would not compile, at the query's line:col.
    A query that does not parse is left to generators.slo_spec, which reports it."""
    from generators.promql_scope import PromQLError, matchers_of, parse, selectors

    errors = []
    for pointer, query in _slo_queries(located.data):
        try:
            found = [m for node in selectors(parse(query)) for m in matchers_of(node)]
        except PromQLError:
            continue
        for label, op, value in found:
            problem = regex_problem(value) if op in ("=~", "!~") else None
            if problem:
                errors.append(located.error(pointer, f"matcher {label}{op}{excerpt(value)} {problem}"))
    return errors


def sli_errors(located: Located, service: Service) -> list[SpecError]:
    """SLI matchers the generated promtool tests cannot be made for (checked only when the spec sets them:
    the defaults always work)."""
    data = located.data
    sli = data.get("observability", {}).get("sli", {})
    if sli.get("error_matchers") == {}:
        return [located.error("/observability/sli/error_matchers", (
            "error_matchers needs at least one matcher: with none, every request would count as an error"))]
    checked: list[tuple[str, SLO | None]] = []
    if "selector" in sli or "error_matchers" in sli:
        checked.append(("/observability/sli", None))
    for index, (entry, slo) in enumerate(zip(data.get("slos", ()), service.slos)):
        # An empty error_matchers is generators.slo_spec's to report; a shape error, its SLI-kind check's.
        own = entry.get(slo.kind) if slo.kind in ("availability", "latency") else None
        if isinstance(own, dict) and own.get("error_matchers") != {} and {"selector", "error_matchers"} & set(own):
            checked.append((f"/slos/{index}/{slo.kind}", slo))
    if not checked:
        return []
    from generators.slo_tests import series_problem

    errors = []
    for pointer, one in checked:
        problem = series_problem(service, one)
        if problem is not None:
            what = ("the selector" if one is not None and one.kind == "latency"
                    else "the selector and error matchers, for good and for failed requests,")
            errors.append(located.error(pointer, (
                f"the generated promtool tests need label values that match {what} and nthlayer finds none "
                f"({clip(problem)}): use matchers that do not contradict each other, and regexes that offer a "
                "literal alternative (such as 'prod|prod-.*')")))
    return errors


def value_errors(located: Located) -> list[SpecError]:
    """Every problem of this module's checks on one schema-valid spec."""
    data = located.data
    reserved = [_reserved(located, "/labels", label) for label in data.get("labels", {}) if label.startswith("__")]
    if "slos" not in data:  # the 1000-service hot path: most specs have none
        return reserved + template_errors(located) + regex_errors(located)
    for index, entry in enumerate(data["slos"]):
        reserved += [_reserved(located, f"/slos/{index}/alerting/labels", label)
                     for label in entry.get("alerting", {}).get("labels", {}) if label.startswith("__")]
    return reserved + template_errors(located) + regex_errors(located) + query_regex_errors(located)


__all__ = ["TEMPLATE_MARKS", "re2_options", "template_errors", "regex_problem", "regex_errors", "query_regex_errors",
           "sli_errors", "value_errors"]
