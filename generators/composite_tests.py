"""promtool unit tests for a composite's rules, fed with its components' recorded series.

The composite's rule file reads only what the component services' rule files record
(``slo:sli_requests:rate5m`` and ``slo:sli_errors:rate5m`` of each ``{service, slo}``), so the test feeds
those series directly, every minute, and loads the composite's rules alone:

- burst: every component serves clean traffic for an hour, then one component (the first) fails every
  request: the composite's fast burn alert fires within minutes; before the burst nothing fires;
- healthy: every component fails at half its share of the composite's budget for three hours: no burn
  alert fires (the other components stay healthy, the composite stays silent);
- quiet component: one component with very little traffic fails half its requests while the others are
  clean: the composite's recorded 5m ratio is exactly Σ weight × bad ÷ Σ weight × events (checked to the
  last bit), far below the fast threshold, and no burn alert fires. An average of the components' ratios
  would read (0.5 + 0 + …) ÷ n and page.
"""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from generators.composite import Composite, Member
from generators.composite_rules import alert_labels, burn_alert, enabled_burn_windows, record_labels, recorded
from generators.promql import quote
from generators.slo_maths import burn_threshold, duration_seconds
from generators.slo_rules import burn_alert_name, num, printed_text

HEALTHY_MINUTES = 60
BASE_RATE = Decimal(10)  # requests per second of a component in the scenarios
QUIET_RATE = Decimal("0.01")  # the quiet component's requests per second
HEALTHY_SHARE = Decimal("0.5")  # of the budget, per component, in the healthy scenario
HEALTHY_SCENARIO_MINUTES = 180


def _series(name: str, member: Member, values: str) -> dict[str, str]:
    labels = f'service={quote(member.service.name)},slo={quote(member.slo.name)}'
    return {"series": f"{name}{{{labels}}}", "values": values}


def _constant(value: Decimal, minutes: int) -> str:
    return f"{num(value)}x{minutes}"


def _burn_names(composite: Composite) -> list[str]:
    return sorted({burn_alert_name(w) for w, _ in enabled_burn_windows(composite)})


def _silent(composite: Composite, minutes: int) -> list[dict[str, Any]]:
    return [{"eval_time": f"{minutes}m", "alertname": name, "exp_alerts": []} for name in _burn_names(composite)]


def _fast(composite: Composite) -> tuple[Any, str] | None:
    return next(((w, s) for w, s in enabled_burn_windows(composite) if w.name == "fast"), None)


def base_rate(composite: Composite, members: tuple[Member, ...]) -> Decimal:
    """Requests per second of each component in the burst: BASE_RATE, or more when the page's traffic
    guard (weighted events per second) asks for more, so the guard never silences the burst."""
    if composite.guard is None:
        return BASE_RATE
    weights = sum((m.weight for m in members), Decimal(0))
    return max(BASE_RATE, Decimal(math.ceil(2 * composite.guard / weights)))


def burst_rate(composite: Composite, members: tuple[Member, ...]) -> Decimal:
    """Requests per second of the bursting (first) component: the others serve :func:`base_rate` each, and
    the burst's weighted share of the composite's events must be well above the fast threshold."""
    base = base_rate(composite, members)
    threshold = burn_threshold(_fast_window(composite), composite.objective, composite.window_days)
    target = (1 + threshold) / 2  # halfway between the threshold and 100 %
    others = sum((m.weight * base for m in members[1:]), Decimal(0))
    needed = target * others / (members[0].weight * (1 - target))
    return max(base, Decimal(math.ceil(needed)))


def _fast_window(composite: Composite) -> Any:
    fast = _fast(composite)
    assert fast is not None
    return fast[0]


def burst_test(composite: Composite, members: tuple[Member, ...]) -> dict[str, Any] | None:
    fast = _fast(composite)
    if fast is None:  # a 1-2 day window, or paging switched off: no fast alert to prove
        return None
    window, severity = fast
    threshold = burn_threshold(window, composite.objective, composite.window_days)
    if threshold >= 1:  # an objective so loose the alert can never fire (validation warns)
        return None
    base = base_rate(composite, members)
    rate = burst_rate(composite, members)
    share = members[0].weight * rate / sum((m.weight * (rate if i == 0 else base)
                                            for i, m in enumerate(members)), Decimal(0))
    long_minutes = duration_seconds(window.long) // 60
    # The long window's ratio passes the threshold once the burst holds that share of its samples
    # (+1: the range holds both ends), then the alert's `for` must pass, evaluated every minute.
    minutes_to_cross = math.ceil((long_minutes + 1) * threshold / share) + 1
    fire_at = HEALTHY_MINUTES + minutes_to_cross + duration_seconds(window.for_) // 60 + 1
    end = fire_at + 1
    series = []
    for index, member in enumerate(members):
        requests = rate if index == 0 else base
        errors = f"0x{HEALTHY_MINUTES - 1} {_constant(requests, end - HEALTHY_MINUTES)}" if index == 0 \
            else _constant(Decimal(0), end)
        series += [_series("slo:sli_requests:rate5m", member, _constant(requests, end)),
                   _series("slo:sli_errors:rate5m", member, errors)]
    rule = burn_alert(composite, members, window, severity)
    expected = {"exp_labels": {**record_labels(composite), **rule["labels"]},
                "exp_annotations": {k: printed_text(v) for k, v in rule["annotations"].items()}}
    checks = _silent(composite, HEALTHY_MINUTES - 1)
    checks.append({"eval_time": f"{fire_at}m", "alertname": burn_alert_name(window), "exp_alerts": [expected]})
    return _test(f"burst: {members[0].service.name} {members[0].slo.name} fails every request; the composite's "
                 f"fast burn alert fires within {fire_at - HEALTHY_MINUTES} minutes", series, checks)


def healthy_test(composite: Composite, members: tuple[Member, ...]) -> dict[str, Any]:
    budget = 1 - composite.objective
    ratio = budget * HEALTHY_SHARE
    series = []
    for member in members:
        series += [_series("slo:sli_requests:rate5m", member, _constant(BASE_RATE, HEALTHY_SCENARIO_MINUTES)),
                   _series("slo:sli_errors:rate5m", member, _constant(BASE_RATE * ratio, HEALTHY_SCENARIO_MINUTES))]
    return _test(f"healthy: every component fails {num(ratio * 100)}% of its requests (half the composite's "
                 "budget); no burn alert fires", series, _silent(composite, HEALTHY_SCENARIO_MINUTES))


def weighted_ratio(members: tuple[Member, ...], bad: list[Decimal], total: list[Decimal]) -> float:
    """The composite's 5m ratio as Prometheus computes it: float arithmetic, in the rule's own order."""
    def weighted(values: list[Decimal]) -> float:
        result = 0.0
        for index, (member, value) in enumerate(zip(members, values)):
            term = float(value) if member.weight == 1 else float(member.weight) * float(value)
            result = term if index == 0 else result + term
        return result
    return weighted(bad) / weighted(total)


def quiet_component_test(composite: Composite, members: tuple[Member, ...]) -> dict[str, Any]:
    minutes = 30
    total = [QUIET_RATE] + [BASE_RATE * 100] * (len(members) - 1)
    bad = [QUIET_RATE / 2] + [Decimal(0)] * (len(members) - 1)
    series = []
    for member, requests, errors in zip(members, total, bad):
        series += [_series("slo:sli_requests:rate5m", member, _constant(requests, minutes)),
                   _series("slo:sli_errors:rate5m", member, _constant(errors, minutes))]
    expected = weighted_ratio(members, bad, total)
    test = _test(f"quiet component: {members[0].service.name} {members[0].slo.name} fails half of its "
                 f"{num(QUIET_RATE)} requests/s, the others none: the composite's ratio is weighted by events "
                 f"({expected!r}) and no burn alert fires", series, _silent(composite, minutes))
    test["promql_expr_test"] = [{
        "expr": recorded("slo:sli_error:ratio_rate5m", composite),
        "eval_time": f"{minutes}m",
        "exp_samples": [{"labels": _labels_text("slo:sli_error:ratio_rate5m", record_labels(composite)),
                         "value": expected}],
    }]
    return test


def _labels_text(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ", ".join(f"{k}={quote(v)}" for k, v in sorted(labels.items())) + "}"


def _test(name: str, series: list[dict[str, str]], checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "interval": "1m", "input_series": series, "alert_rule_test": checks}


def promtool_tests(composite: Composite, members: tuple[Member, ...], rule_file: str) -> dict[str, Any]:
    """The promtool test document of a composite; ``rule_file`` is relative to the test file."""
    tests = [burst_test(composite, members), healthy_test(composite, members),
             quiet_component_test(composite, members)]
    return {"rule_files": [rule_file], "evaluation_interval": "1m",
            "tests": [test for test in tests if test is not None]}


__all__ = ["promtool_tests", "weighted_ratio", "burst_rate", "alert_labels"]
