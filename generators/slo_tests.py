"""promtool unit tests for a service's SLO rules, with input series built from the model.

Every scenario drives both SLOs of the service at once (each at a multiple of
its *own* error budget) through the service's real metric names and selector,
so the file proves the rules for this service, not for a generic example:

- burst: 1h of clean traffic, then 100 % errors: the fast alert fires as soon
  as the maths allows (within 10 minutes when the objective permits it);
- steady: a 0.5x budget burn for 4h: nothing fires;
- sustained: a burn just above the slowest enabled alert's factor (2x for a
  30-day tier-1 SLO, where that alert is the 1x ticket): it fires, faster
  ones do not, and the budget alerts do not (a few hours of it spend a small
  share of the window's budget);
- low traffic: every request fails but traffic is below min_request_rate: no
  page; once traffic rises, the fast page fires;
- absent: no series at all: the absent-metrics alert fires.

Windows longer than the test (1d, 3d, 30d) see only the test's data, and
Prometheus' rate/sum_over_time then measure over what is there, so 4 hours of
1-minute samples are enough and each file runs in well under a second.
"""
from __future__ import annotations

import copy
import math
import re
from functools import lru_cache
from decimal import Decimal
from typing import Any, Callable, NamedTuple

from generators.model import SLO, Matcher, Service
from generators.promql import quote
from generators.slo_maths import burn_threshold, duration_seconds, error_budget
from generators.slo_rules import (ABSENT_ALERT, ABSENT_FOR, BUDGET_ALERT_FOR, absent_alert,
                                  alert_names, burn_alert, burn_alert_name, enabled_burn_windows,
                                  num, printed_text, record_labels)
from generators.slo_test_inputs import Driver, Phase, driver, read_metrics

STEP_SECONDS = 60
# The 3-4 hour scenarios sample every 2 minutes: half the samples for the raw
# 6h rates, and a 5m range still holds at least two samples.
LONG_STEP_MINUTES = 2
# Rules are evaluated every 5 minutes in the long scenarios (Prometheus' default is 1m): promtool
# costs about 0.2 ms per rule evaluation, and a 1m cadence made each file take ~5 s. The burst
# scenario is short and is about minutes, so it has its own file evaluated every minute.
EVAL_MINUTES = 5
BURST_EVAL_MINUTES = 1
HEALTHY_MINUTES = 60
STEADY_MARGIN_MINUTES = 30  # beyond the longest `for`, so a wrong alert would have fired
BURST_DEADLINE_MINUTES = 10
LOW_TRAFFIC_MINUTES = 60
LOW_TRAFFIC_SHARE = Decimal("0.2")  # of min_request_rate
FAST_ALERT = "SLOBurnRateFast"
_FALLBACK_VALUES = ("200", "OK", "500", "nthlayer", "x")



def _matches(matcher: Matcher, value: str) -> bool:
    _label, op, expected = matcher
    if op == "=":
        return value == expected
    if op == "!=":
        return value != expected
    hit = _re2(expected).fullmatch(value) is not None  # RE2, anchored: as Prometheus matches
    return hit if op == "=~" else not hit


@lru_cache(maxsize=256)
def _re2(regex: str) -> Any:
    import re2

    from generators.spec_values import re2_options

    return re2.compile(regex, re2_options())


def _candidates(matchers: list[Matcher]) -> list[str]:
    values: list[str] = []
    for _label, op, value in matchers:
        if op == "=":
            values.append(value)
        if op == "=~":
            for alternative in re.sub(r"^\(\?[a-zA-Z]+\)", "", value).split("|"):  # (?i) and other flags first
                literal = re.sub(r"\([^()]*\)[?*]", "", alternative).strip("^$()")  # drop optional groups
                values += [re.sub(r"\.", "0", literal), literal]  # 5.. → 500 before the raw text
    return values + list(_FALLBACK_VALUES)


def sample_value(matchers: list[Matcher], violate: Matcher | None = None) -> str:
    """A label value that satisfies every matcher (and fails ``violate``, if given)."""
    for value in _candidates(matchers + ([violate] if violate else [])):
        if all(_matches(m, value) for m in matchers) and (violate is None or not _matches(violate, value)):
            return value
    wanted = ", ".join(f"{l}{op}{quote(v)}" for l, op, v in matchers)
    raise ValueError(f"cannot invent a label value for test series matching {wanted}")


def concrete_labels(matchers: tuple[Matcher, ...], violate: Matcher | None = None) -> dict[str, str]:
    by_label: dict[str, list[Matcher]] = {}
    for matcher in matchers:
        by_label.setdefault(matcher[0], []).append(matcher)
    if violate is not None:
        by_label.setdefault(violate[0], [])
    return {label: sample_value(group, violate if violate and violate[0] == label else None)
            for label, group in sorted(by_label.items())}


def _series_name(metric: str, labels: dict[str, str]) -> str:
    return metric + "{" + ",".join(f"{k}={quote(v)}" for k, v in labels.items()) + "}"


def _counter_values(phases: list[tuple[int, Decimal]], step: int) -> str:
    """Expanding notation for a counter sampled every ``step`` minutes that grows by a
    per-minute increment in each phase (phase lengths are multiples of ``step``)."""
    parts = ["0"]
    value = Decimal(0)
    for minutes, per_minute in phases:
        increment = per_minute * step
        parts.append(f"{num(value + increment)}+{num(increment)}x{minutes // step - 1}")
        value += increment * (minutes // step)
    return " ".join(parts)


def input_series(service: Service, slo: SLO, phases: list[Phase], step: int = 1) -> list[dict[str, str]]:
    """The raw counters of one SLO, good and bad requests following ``phases``, one sample per ``step`` minutes.

    Callers give every SLO of the service the same traffic (requests per minute in each phase): only
    the share of bad requests differs, so SLIs sharing a counter agree on its total.
    """
    sli = slo.sli_of(service)
    good = [(m, rate * (1 - bad)) for m, rate, bad in phases]
    total = [(m, rate) for m, rate, _ in phases]
    if slo.kind == "availability":
        bad_labels = concrete_labels(sli.selector + sli.error_matchers)
        good_labels = concrete_labels(sli.selector + sli.error_matchers[1:], violate=sli.error_matchers[0])
        return [
            {"series": _series_name(sli.requests_metric, good_labels), "values": _counter_values(good, step)},
            {"series": _series_name(sli.requests_metric, bad_labels),
             "values": _counter_values([(m, rate * bad) for m, rate, bad in phases], step)},
        ]
    labels = concrete_labels(sli.selector)
    bucket = {**labels, "le": format(slo.threshold_seconds.normalize(), "f")}
    series = [{"series": _series_name(f"{sli.latency_histogram}_bucket", bucket), "values": _counter_values(good, step)}]
    if not _count_is_requests_metric(service, slo):
        series.append({"series": _series_name(f"{sli.latency_histogram}_count", labels),
                       "values": _counter_values(total, step)})
    return series


def _count_is_requests_metric(service: Service, latency: SLO) -> bool:
    """Whether availability counts requests on the latency histogram's ``_count`` (Sloth's getting-started).

    Then the availability SLO's good and bad series already are the histogram's total: a second
    ``_count`` series would double every request the latency SLI reads. Every scenario drives all
    SLOs with the same traffic, so those series carry the right totals for the latency SLO too.
    """
    sli = latency.sli_of(service)
    return any(slo.kind == "availability" and slo.sli_of(service).requests_metric == f"{sli.latency_histogram}_count"
               and slo.sli_of(service).selector == sli.selector for slo in service.slos)


def series_problem(service: Service, slo: SLO | None = None) -> str | None:
    """Why no test series can be made for this service's SLI matchers (a selector and error matchers
    that contradict each other, say), or None: validation asks, so a build never meets it. With ``slo``
    (an availability or latency SLO), its own SLI's: a latency SLO's series use its selector alone."""
    sli = service.sli if slo is None else slo.sli_of(service)
    if slo is not None and slo.kind == "latency":
        return _series_problem(sli.selector, ())
    return _series_problem(sli.selector, sli.error_matchers)


@lru_cache(maxsize=1024)
def _series_problem(selector: tuple[Matcher, ...], error_matchers: tuple[Matcher, ...]) -> str | None:
    import re2

    try:  # the label sets input_series makes: failed and good requests, and the latency histogram's
        if error_matchers:  # none: a latency SLI's histogram series only
            concrete_labels(selector + error_matchers)
            concrete_labels(selector + error_matchers[1:], violate=error_matchers[0])
        concrete_labels(selector)
    except ValueError as exc:
        return str(exc)
    except re2.error:  # an invalid regex: validation reports it itself
        return None
    return None


def requests_per_minute(service: Service) -> Decimal:
    """Test traffic: at least 1 req/s and 10x the highest page guard, in whole requests per second."""
    guard = max((slo.guard for slo in service.slos if slo.guard is not None), default=Decimal(0))
    per_second = max(Decimal(1), Decimal(math.ceil(guard * 10)))
    return per_second * STEP_SECONDS


def _expected(labels: dict[str, str], rule: dict[str, Any]) -> dict[str, Any]:
    # Annotations as Prometheus prints them: a quoted selector's "{{" is escaped in the rule (template_literal).
    annotations = {key: printed_text(value) for key, value in rule["annotations"].items()}
    # Prometheus keeps no label with an empty value (absent() of a selector matching env="" gives no env).
    merged = {**labels, **rule["labels"]}
    return {"exp_labels": {key: value for key, value in merged.items() if value != ""},
            "exp_annotations": annotations}


def _burn_expectations(service: Service, slo: SLO, window_name: str) -> dict[str, Any]:
    for window, severity in enabled_burn_windows(service, slo):
        if window.name == window_name:
            return _expected(record_labels(service, slo), burn_alert(service, slo, window, severity))
    raise KeyError(window_name)


def _check(minutes: int, alerts: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    # Expectations checked twice are copied: a shared object would make the YAML writer fall back to
    # PyYAML (and anchors); shared empty lists it writes itself.
    return [{"eval_time": f"{minutes}m", "alertname": name, "exp_alerts": _copy(alerts.get(name, []))}
            for name in sorted(alerts)]


def _copy(expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return copy.deepcopy(expected) if expected else expected


def _after_eval(minute: int, every: int = EVAL_MINUTES) -> int:
    """The first rule evaluation at or after ``minute`` when rules run ``every`` minutes."""
    return -(-minute // every) * every


class _Conflict(Exception):
    """Two SLOs' test inputs disagree on one series: the scenarios cannot feed both."""


class _Plan(NamedTuple):
    """How each SLO takes part in the scenarios: driven (its inputs synthesized) or not (no input at all:
    only its absent-metrics alert is expected to fire)."""

    drivers: dict[str, Driver]
    undriven: tuple[SLO, ...]

    def driven(self, service: Service) -> list[SLO]:
        return [slo for slo in service.slos if slo.name in self.drivers]

    def events(self, slo: SLO) -> bool:
        """Driven with any share of bad events (not time slices, which are good or bad as a whole)."""
        found = self.drivers.get(slo.name)
        return found is not None and not found.slices


def _plan(service: Service) -> _Plan:
    drivers: dict[str, Driver] = {}
    undriven: list[SLO] = []
    for slo in service.slos:
        found = driver(service, slo)
        if found is None:
            undriven.append(slo)
        else:
            drivers[slo.name] = found
    fed = frozenset().union(*(d.metrics for d in drivers.values()))
    if any(read_metrics(service, slo) & fed for slo in undriven):
        raise _Conflict  # an undriven SLO would read another's inputs: its alerts could not be predicted
    return _Plan(drivers, tuple(undriven))


def _inputs(service: Service, plan: _Plan, phases: Callable[[SLO], list[Phase]], step: int = 1
            ) -> list[dict[str, str]]:
    """Every driven SLO's series for its phases; a series two SLOs share must agree."""
    merged: dict[str, str] = {}
    for slo in plan.driven(service):
        for item in plan.drivers[slo.name].series(phases(slo), step):
            if merged.setdefault(item["series"], item["values"]) != item["values"]:
                raise _Conflict
    return [{"series": name, "values": values} for name, values in merged.items()]


def _absent_labels(service: Service, slo: SLO) -> dict[str, str]:
    """The labels absent() gives: its selector's equality matchers."""
    if slo.kind in ("availability", "latency"):
        return {label: value for label, op, value in slo.sli_of(service).selector if op == "="}
    return {"service": service.name, "slo": slo.name}


def _undriven_absent(service: Service, plan: _Plan) -> list[dict[str, Any]]:
    """The absent alerts of the SLOs without input: firing from the first check of any scenario on."""
    found = []
    for slo in plan.undriven:
        rule = absent_alert(service, slo)
        if rule is not None:
            found.append(_expected(_absent_labels(service, slo), rule))
    return found


def _quiet(service: Service, plan: _Plan) -> dict[str, list[dict[str, Any]]]:
    alerts: dict[str, list[dict[str, Any]]] = {name: [] for name in alert_names(service)}
    absent = _undriven_absent(service, plan)
    if absent:
        alerts[ABSENT_ALERT] = absent
    return alerts


def _has_fast(service: Service, slo: SLO) -> bool:
    return any(w.name == "fast" for w, _ in enabled_burn_windows(service, slo))


def _fast_fire_minutes(service: Service, slo: SLO, slices: bool = False,
                       every: int = BURST_EVAL_MINUTES) -> tuple[int, int]:
    """(earliest, certain) minute after a 100 % burst starts at which the fast alert fires.

    With 1h of clean history the 1h error ratio k minutes into the burst is
    k/60, so the alert turns pending at the first evaluation with k/60 above
    the threshold and fires the first evaluation ``for`` later. 'earliest'
    allows for float rounding when 60 x threshold is a whole number. Time
    slices count the evaluations in the hour: k+1 bad of 61 (60 if the
    range left out its first instant), so both bound the minute.
    """
    window = next(w for w, _ in enabled_burn_windows(service, slo) if w.name == "fast")
    threshold = burn_threshold(window, slo.objective, slo.window_days)
    # The last k at which the ratio may still be at or under the threshold.
    early = int(threshold * 60) - 1 if slices else int(threshold * 60)
    late = int(threshold * 61) - 1 if slices else early
    hold = _after_eval(duration_seconds(window.for_) // 60, every)
    earliest = _after_eval(HEALTHY_MINUTES + early, every) + hold - HEALTHY_MINUTES
    certain = _after_eval(HEALTHY_MINUTES + late + 1, every) + hold - HEALTHY_MINUTES
    return max(earliest, 0), certain


def burst_test(service: Service, plan: _Plan) -> dict[str, Any] | None:
    """Every driven SLO bursts; those with a fast (page) alert must page, those without stay silent."""
    rate = requests_per_minute(service)
    paging = [slo for slo in plan.driven(service) if _has_fast(service, slo)]
    if not paging:
        return None
    timing = {slo.name: _fast_fire_minutes(service, slo, not plan.events(slo)) for slo in paging}
    times = sorted({BURST_DEADLINE_MINUTES} | {certain for _, certain in timing.values()})
    # Skip times at which some SLO may or may not have fired yet (float rounding at its threshold).
    times = [t for t in times if not any(early <= t < certain for early, certain in timing.values())]
    length = max(times) + 5
    series = _inputs(service, plan, lambda slo: [(HEALTHY_MINUTES, rate, Decimal(0)), (length, rate, Decimal(1))])
    name = FAST_ALERT
    checks = _check(HEALTHY_MINUTES, {name: []})
    for minutes in times:
        firing = [_burn_expectations(service, slo, "fast") for slo in paging if timing[slo.name][1] <= minutes]
        checks += _check(HEALTHY_MINUTES + minutes, {name: firing})
    detail = ", ".join(f"{name} by minute {certain}" for name, (_, certain) in timing.items())
    return _test(f"burst: 100% errors after 1h of clean traffic page fast ({detail})", series, checks)


def _longest_for_minutes(service: Service) -> int:
    holds = [duration_seconds(w.for_) // 60 for slo in service.slos for w, _ in enabled_burn_windows(service, slo)]
    longest = max(holds + [duration_seconds(BUDGET_ALERT_FOR) // 60, duration_seconds(ABSENT_FOR) // 60])
    unit = math.lcm(EVAL_MINUTES, LONG_STEP_MINUTES)  # whole evaluations and whole samples
    return -(-longest // unit) * unit


def steady_test(service: Service, plan: _Plan) -> dict[str, Any]:
    rate = requests_per_minute(service)
    minutes = _longest_for_minutes(service) + STEADY_MARGIN_MINUTES
    # Time slices cannot be half a budget bad in a few hours: they stay good.
    series = _inputs(service, plan, lambda slo: [(minutes, rate, error_budget(slo.objective) / 2 if plan.events(slo)
                                                  else Decimal(0))], LONG_STEP_MINUTES)
    nothing = _quiet(service, plan)
    checks = _check(60, nothing) + _check(minutes, nothing)
    return _test(f"steady: a 0.5x budget burn for {minutes}m fires nothing", series, checks, LONG_STEP_MINUTES)


def sustained_share(service: Service, slo: SLO) -> Decimal:
    """Share of bad requests for the sustained test: twice the slowest alert's threshold,
    or halfway to the next threshold when twice would reach it (equal values make flaky tests)."""
    thresholds = sorted({burn_threshold(w, slo.objective, slo.window_days)
                         for w, _ in enabled_burn_windows(service, slo)})
    lowest = thresholds[0]
    above = [t for t in thresholds if t > lowest] + [Decimal(1)]
    return 2 * lowest if 2 * lowest < above[0] else (lowest + above[0]) / 2


def sustained_test(service: Service, plan: _Plan) -> dict[str, Any] | None:
    rate = requests_per_minute(service)
    burning = [slo for slo in service.slos if plan.events(slo) and enabled_burn_windows(service, slo)]
    if not burning:
        return None
    shares = {slo.name: sustained_share(service, slo) for slo in burning}
    # Ratios are at their final value from the first evaluation with two samples (5m).
    minutes = _longest_for_minutes(service) + STEADY_MARGIN_MINUTES
    series = _inputs(service, plan, lambda slo: [(minutes, rate, shares.get(slo.name, Decimal(0)))],
                     LONG_STEP_MINUTES)
    alerts = _quiet(service, plan)
    for slo in burning:
        labels = record_labels(service, slo)
        for window, severity in enabled_burn_windows(service, slo):
            if burn_threshold(window, slo.objective, slo.window_days) < shares[slo.name]:
                alerts[burn_alert_name(window)].append(_expected(labels, burn_alert(service, slo, window, severity)))
        # The budget alerts stay silent: a few hours at a few times the budget spend a small share of
        # the whole window's allowance (tests/test_slo_rule_defects.py proves them on an exhaustion).
    detail = ", ".join(f"{slo.name} {num(shares[slo.name] / error_budget(slo.objective))}x" for slo in burning)
    return _test(f"sustained: a burn above the slowest alert's factor fires it ({detail})", series,
                 _check(minutes, alerts), LONG_STEP_MINUTES)


def low_traffic_test(service: Service, plan: _Plan) -> dict[str, Any] | None:
    """The SLOs whose pages are guarded fail every request at low traffic: no page until traffic rises.
    The other driven SLOs stay healthy."""
    guarded = [slo for slo in service.slos if plan.events(slo) and slo.guard is not None and _has_fast(service, slo)
               and enabled_burn_windows(service, slo)[0][1] == "page"]
    if not guarded:
        return None
    rate = requests_per_minute(service)
    low = min(slo.guard for slo in guarded if slo.guard is not None) * LOW_TRAFFIC_SHARE * STEP_SECONDS
    names = {slo.name for slo in guarded}
    series = _inputs(service, plan, lambda slo: [(LOW_TRAFFIC_MINUTES, low, Decimal(slo.name in names)),
                                                 (LOW_TRAFFIC_MINUTES // 2, rate, Decimal(slo.name in names))])
    pages = {burn_alert_name(w): [] for slo in service.slos
             for w, severity in enabled_burn_windows(service, slo) if severity == "page"}
    fast = FAST_ALERT
    checks = _check(LOW_TRAFFIC_MINUTES, pages)
    # The guard (1h average of the 5m request rate) passes 5-10 minutes after traffic rises.
    checks += _check(LOW_TRAFFIC_MINUTES + 20, {fast: [_burn_expectations(service, slo, "fast") for slo in guarded]})
    return _test(f"low traffic: every request failing at {num(low / STEP_SECONDS)} req/s does not page; "
                 "normal traffic does", series, checks)


def absent_test(service: Service) -> dict[str, Any]:
    alerts: dict[str, list[dict[str, Any]]] = {name: [] for name in alert_names(service)}
    for slo in service.slos:
        rule = absent_alert(service, slo)
        if rule is not None:
            alerts[ABSENT_ALERT].append(_expected(_absent_labels(service, slo), rule))
    minutes = _after_eval(duration_seconds(ABSENT_FOR) // 60) + 2 * EVAL_MINUTES
    return _test("absent: no SLI series at all fires the absent-metrics alert", [], _check(minutes, alerts))


def _test(name: str, series: list[dict[str, str]], checks: list[dict[str, Any]], step: int = 1) -> dict[str, Any]:
    return {"name": name, "interval": f"{step}m", "input_series": series,
            "alert_rule_test": checks}


def promtool_tests(service: Service, rule_file: str) -> dict[str, Any]:
    """The promtool test document; ``rule_file`` is relative to the test file.

    When the SLOs' inputs cannot be synthesized without disagreeing (two SLOs feeding one series
    differently, or an SLO whose queries are not driven reading another's inputs), only the absent
    scenario is generated."""
    tests: list[dict[str, Any] | None] = []
    try:
        plan = _plan(service)
        tests += [steady_test(service, plan), sustained_test(service, plan), low_traffic_test(service, plan)]
    except _Conflict:
        tests = []
    tests.append(absent_test(service))
    return {"rule_files": [rule_file], "evaluation_interval": f"{EVAL_MINUTES}m",
            "tests": [test for test in tests if test is not None]}


def burst_promtool_tests(service: Service, rule_file: str) -> dict[str, Any]:
    """The burst scenario alone, with rules evaluated every minute: it proves minutes-to-page.

    SLO windows of 1-2 days have no fast burn alert, nor do SLOs whose paging is off; a file whose SLOs
    all lack it holds no test.
    """
    try:
        test = burst_test(service, _plan(service))
    except _Conflict:
        test = None
    return {"rule_files": [rule_file], "evaluation_interval": f"{BURST_EVAL_MINUTES}m",
            "tests": [test] if test is not None else []}


__all__ = ["promtool_tests", "series_problem", "burst_promtool_tests", "input_series", "sample_value", "concrete_labels", "sustained_share"]
