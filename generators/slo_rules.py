"""Prometheus SLO rules for a service: recording rules, burn-rate and budget alerts, scrape config.

Recorded series (labels service, slo, team, tier and Sloth's sloth_id, sloth_service,
sloth_slo on every one; names follow Sloth's so its Grafana dashboards work unchanged):

- ``slo:sli_requests:rate5m`` / ``slo:sli_errors:rate5m`` — events per second.
- ``slo:sli_error:ratio_rate<W>`` — share of bad events over W. Windows below a
  day read the raw counters; a day and longer are built from the two 5m rates
  above, summing numerator and denominator *separately* over the window (a
  ratio of sums, never an average of ratios), so a 30-day ratio reads one
  aggregated series instead of every raw counter of the service.
- ``slo:objective:ratio``, ``slo:error_budget:ratio``, ``slo:time_period:days`` — constants.
- ``slo:current_burn_rate:ratio`` (5m) and ``slo:period_burn_rate:ratio``
  (whole SLO window): error ratio ÷ error budget.
- ``slo:sli_requests:timestamp`` — dates the history (see budget_remaining_expr).
- ``slo:error_budget_remaining:ratio`` (and Sloth's ``slo:period_error_budget_remaining:ratio``) —
  1 − the share of the whole window's budget spent so far.
- ``sloth_slo_info`` — an info series (plus objective and sloth_objective labels).

Alerts: one multi-window burn-rate alert per burn window that the tier table
enables (generators.tiers.Tier.burn_alerts), page alerts guarded by a minimum
request rate; an absent-metrics alert per SLO; three error-budget alerts.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

from generators.model import SLO, Service
from generators.tiers import Tier
from generators.promql import selector
from generators.render import render_files
from generators.sli_queries import BAD_SLICE_SERIES, absent_target, bad_slice, raw_rates, raw_ratio
from generators.slo_maths import (RATIO_WINDOWS, BurnWindow, burn_factor, burn_threshold, burn_windows, clean,
                                  duration_seconds, error_budget)

# Windows of a day or more are summed from the recorded 5m rates (see module docstring).
LONG_WINDOW_SECONDS = 86400
# The labels that identify an SLO's recorded series. Reads of recorded 5m series over long ranges
# aggregate by these alone: after a team or tier change the series recorded under the old labels
# stay in range for up to the whole window, and keeping team/tier would yield two series that the
# rule's labels then make identical (an evaluation error, so every long-window rule goes silent).
IDENTITY_LABELS = ("service", "slo")
# Sloth's slo:current_burn_rate:ratio is the 5m error ratio over the budget; its dashboards expect that.
CURRENT_BURN_WINDOW = "5m"
# Sloth's info series; its dashboards list services and SLOs from it.
INFO_SERIES = "sloth_slo_info"
ABSENT_FOR = "10m"
BUDGET_ALERT_FOR = "15m"
# Remaining-budget thresholds (percent) with an alert, loudest last; the tier table
# (generators.tiers.Tier.budget_alerts) says how loud each one is, or that it does not exist.
BUDGET_ALERT_PERCENTS: tuple[int, ...] = (25, 10, 5)
ABSENT_ALERT = "SLOMetricsAbsent"
RULES_FILE = "slo.rules.yaml"
BURST_TEST_FILE = "slo-burst.test.yaml"
TEST_FILE = "slo-rules.test.yaml"
SCRAPE_FILE = "scrape.yaml"


def num(value: Decimal) -> str:
    """A Decimal as exact PromQL number text: 0.001, never 0.0009999999999999432."""
    return format(clean(value), "f")


def burn_alert_name(window: BurnWindow) -> str:
    return f"SLOBurnRate{window.name.capitalize()}"


def ratio_windows(slo: SLO) -> tuple[str, ...]:
    """The error-ratio windows recorded for an SLO: the standard ones plus its whole window."""
    windows = list(RATIO_WINDOWS)
    if slo.window not in windows:
        windows.append(slo.window)
    return tuple(sorted(windows, key=duration_seconds))


def series_labels(service: Service, slo: SLO) -> dict[str, str]:
    """The labels of every rule of an SLO: nthlayer's identity labels, then the spec's `labels:`."""
    return {"service": service.name, "slo": slo.name, "team": service.team, "tier": str(service.tier.number),
            **dict(service.labels)}


def alert_labels(service: Service, slo: SLO, severity: str) -> dict[str, str]:
    """An alert's labels: the SLO's series labels, its `alerting.labels`, and the severity."""
    return {**series_labels(service, slo), **dict(slo.alerting.labels), "severity": severity}


def record_labels(service: Service, slo: SLO) -> dict[str, str]:
    """The labels of every recorded series: ours plus Sloth's identity labels, which Sloth's Grafana
    dashboards select on (sloth_id is Sloth's ``<service>-<slo>``)."""
    return {**series_labels(service, slo), "sloth_id": f"{service.name}-{slo.name}",
            "sloth_service": service.name, "sloth_slo": slo.name}


def recorded(name: str, service: Service, slo: SLO) -> str:
    """A selector for one of this SLO's recorded series (service + slo identify it)."""
    return selector(name, (("service", "=", service.name), ("slo", "=", slo.name)))


def _long_sum(series: str, window: str, identity: tuple[str, ...] = IDENTITY_LABELS) -> str:
    """Sum of a recorded series over ``window``, across its old and new team/tier labels."""
    return f"sum by ({', '.join(identity)}) (sum_over_time({series}[{window}]))"


def summed_ratio(select: Callable[[str], str], window: str, identity: tuple[str, ...] = IDENTITY_LABELS) -> str:
    """Bad over all events in ``window``, each summed from the recorded 5m rates (``select`` names a
    series of one SLO): a ratio of sums, never an average of ratios."""
    errors = _long_sum(select("slo:sli_errors:rate5m"), window, identity)
    total = _long_sum(select("slo:sli_requests:rate5m"), window, identity)
    return f"{errors}\n/\n{total}"


def _time_mean(series: str, window: str) -> str:
    """The mean of a recorded ratio over ``window`` (each evaluation weighs the same), across its old
    and new team/tier labels."""
    by = ", ".join(IDENTITY_LABELS)
    return f"sum by ({by}) (sum_over_time({series}[{window}]))\n/\nsum by ({by}) (count_over_time({series}[{window}]))"


def error_ratio_expr(service: Service, slo: SLO, window: str) -> str:
    if slo.kind == "threshold":
        # Time slices: the share of bad evaluations, from the slice recorded once per evaluation.
        return _time_mean(recorded(BAD_SLICE_SERIES, service, slo), window)
    if duration_seconds(window) >= LONG_WINDOW_SECONDS:
        if not slo.counted:
            # A ratio_query has no event counts to weigh by: the long windows average its 5m ratio.
            return _time_mean(recorded("slo:sli_error:ratio_rate5m", service, slo), window)
        return summed_ratio(lambda name: recorded(name, service, slo), window)
    return raw_ratio(service, slo, window)


def history_series(slo: SLO) -> str:
    """The recorded series whose samples date an SLO's history: its first record of each evaluation."""
    if slo.counted:
        return "slo:sli_requests:rate5m"
    return BAD_SLICE_SERIES if slo.kind == "threshold" else "slo:sli_error:ratio_rate5m"


def budget_remaining_expr(service: Service, slo: SLO) -> str:
    """1 − the share of the whole window's error budget spent so far.

    The period error ratio covers only the history Prometheus has (rules loaded 20 minutes ago: 20
    minutes). Judged as is, 20 minutes at 30x the budget would read as 30 budgets spent. The budget
    is an allowance for the whole window, so the spend is scaled by the share of the window that
    the history covers (the requests of the missing part assumed at the recorded average rate):
    spent = period burn rate × history ÷ window. History is measured from the oldest recorded
    request-rate sample in the window; once it covers the window the factor is 1, up to one rule
    evaluation interval (a rounding of under 0.003 % for a 30-day window evaluated every minute).
    """
    return remaining_expr(lambda name: recorded(name, service, slo), slo.window)


def remaining_expr(select: Callable[[str], str], window: str, identity: tuple[str, ...] = IDENTITY_LABELS) -> str:
    """:func:`budget_remaining_expr` for the SLO whose recorded series ``select`` names."""
    seconds = duration_seconds(window)
    by = ", ".join(identity)
    oldest = f"min by ({by}) (min_over_time({select('slo:sli_requests:timestamp')}[{window}]))"
    return (f"1 - (\n{select('slo:period_burn_rate:ratio')}\n"
            f"* on ({by}) group_left\nclamp_max((time() - {oldest}) / {seconds}, 1)\n)")


def recording_rules(service: Service, slo: SLO) -> list[dict[str, Any]]:
    labels = record_labels(service, slo)
    rules: list[dict[str, Any]] = []
    if slo.counted:
        errors5m, total5m = raw_rates(service, slo, "5m")
        rules += [
            {"record": "slo:sli_requests:rate5m", "expr": total5m},
            {"record": "slo:sli_errors:rate5m", "expr": errors5m},
        ]
    elif slo.kind == "threshold":
        rules.append({"record": BAD_SLICE_SERIES, "expr": bad_slice(slo)})
    for window in ratio_windows(slo):
        rules.append({"record": f"slo:sli_error:ratio_rate{window}", "expr": error_ratio_expr(service, slo, window)})
    rules += budget_rules(lambda name: recorded(name, service, slo), slo, history_series(slo))
    return labelled(rules, labels, slo)


def budget_rules(select: Callable[[str], str], slo: SLO, history: str,
                 identity: tuple[str, ...] = IDENTITY_LABELS) -> list[dict[str, Any]]:
    """The rules after the error ratios: constants, burn rates, the history's start, the budget left
    (``select`` names a recorded series of the SLO; ``history`` is its first record of each evaluation)."""
    budget = num(error_budget(slo.objective))
    return [
        {"record": "slo:objective:ratio", "expr": f"vector({num(slo.objective)})"},
        {"record": "slo:error_budget:ratio", "expr": f"vector({budget})"},
        {"record": "slo:time_period:days", "expr": f"vector({slo.window_days})"},
        {"record": "slo:current_burn_rate:ratio",
         "expr": f"{select(f'slo:sli_error:ratio_rate{CURRENT_BURN_WINDOW}')} / {budget}"},
        {"record": "slo:period_burn_rate:ratio",
         "expr": f"{select(f'slo:sli_error:ratio_rate{slo.window}')} / {budget}"},
        {"record": "slo:sli_requests:timestamp",
         "expr": f"max by ({', '.join(identity)}) (timestamp({select(history)}))"},
        {"record": "slo:error_budget_remaining:ratio", "expr": remaining_expr(select, slo.window, identity)},
        # The same figure under Sloth's name, for its dashboards.
        {"record": "slo:period_error_budget_remaining:ratio", "expr": select("slo:error_budget_remaining:ratio")},
    ]


def labelled(rules: list[dict[str, Any]], labels: dict[str, str], slo: SLO) -> list[dict[str, Any]]:
    """``rules`` with ``labels`` each, then the info series Sloth's dashboards list SLOs from."""
    # A copy per rule: a shared dict would be written as a YAML anchor and aliases.
    result = [{**rule, "labels": dict(labels)} for rule in rules]
    result.append({"record": INFO_SERIES, "expr": "vector(1)",
                   "labels": {**labels, "objective": num(slo.objective), "sloth_objective": num(slo.objective * 100)}})
    return result


def _allowed(slo: SLO, severity: str) -> bool:
    """Whether the SLO's `alerting` switches keep alerts of ``severity`` (page/critical pages, the rest
    are tickets)."""
    return slo.alerting.page if severity in ("page", "critical") else slo.alerting.ticket


def enabled_burn_windows(service: Service, slo: SLO) -> list[tuple[BurnWindow, str]]:
    """(window, severity) for every burn alert this service's tier generates for the SLO's window,
    less those the SLO's `alerting` switches off."""
    return tier_burn_windows(service.tier, slo)


def tier_burn_windows(tier: Tier, slo: SLO) -> list[tuple[BurnWindow, str]]:
    """:func:`enabled_burn_windows` for an SLO judged by ``tier`` (a service's or a composite's)."""
    result = []
    for window in burn_windows(slo.window_days):
        severity = tier.burn_alerts.get(window.name)
        if severity is not None and _allowed(slo, severity):
            result.append((window, severity))
    return result


_LITERAL_BRACES = '{{"{{"}}'  # a Go template action that prints "{{"


def template_literal(text: str) -> str:
    """``text`` as a Go template that prints it unchanged: Prometheus expands annotations as templates, and
    a selector value quoted in one (an SLI regex such as ``x{{2}}``) must not open an action."""
    return text.replace("{{", _LITERAL_BRACES) if "{{" in text else text


def printed_text(template: str) -> str:
    """What Prometheus prints for a :func:`template_literal` (its exact inverse: every "{{" of the output
    starts or sits inside one of the actions it wrote)."""
    return template.replace(_LITERAL_BRACES, "{{") if _LITERAL_BRACES in template else template


def _annotations(service: Service, slo: SLO, summary: str, description: str) -> dict[str, str]:
    # The runbook URL needs no escaping: validation refuses '{{' in it (generators.spec_values).
    annotations = {"summary": template_literal(summary), "description": template_literal(description)}
    if service.runbook_url:
        annotations["runbook_url"] = service.runbook_url
    annotations.update(slo.alerting.annotations)
    return annotations


def _events(slo: SLO) -> str:
    """What an SLO's ratio counts, for alert text."""
    return {"events": "events", "ratio_query": "events", "threshold": "time slices"}.get(slo.kind, "requests")


def burn_alert(service: Service, slo: SLO, window: BurnWindow, severity: str) -> dict[str, Any]:
    threshold = num(burn_threshold(window, slo.objective, slo.window_days))
    factor = num(burn_factor(window, slo.window_days))
    expr = burn_expr(lambda name: recorded(name, service, slo), slo, window, severity)
    share = num(window.budget_share * 100)
    return {
        "alert": burn_alert_name(window),
        "expr": expr,
        "for": window.for_,
        # The SLO's labels again: identical rules (name + labels) in one file fail promtool's lint.
        "labels": alert_labels(service, slo, severity),
        "annotations": _annotations(
            service, slo,
            f"{service.name} {slo.name}: error budget burning {factor}x too fast",
            (f"{service.name} {slo.name} errors are above {threshold} of {_events(slo)} over both {window.long} and "
             f"{window.short}: at this rate {share}% of the {slo.window} error budget is spent within "
             f"{window.long}."),
        ),
    }


def burn_expr(select: Callable[[str], str], slo: SLO, window: BurnWindow, severity: str) -> str:
    """The condition of a multi-window burn alert on the recorded series ``select`` names."""
    threshold = num(burn_threshold(window, slo.objective, slo.window_days))
    expr = (f"(\n  {select(f'slo:sli_error:ratio_rate{window.long}')} > {threshold}\n"
            f"and\n  {select(f'slo:sli_error:ratio_rate{window.short}')} > {threshold}\n)")
    if severity == "page" and slo.guard is not None:
        # Too few requests make the ratio meaningless (1 failure in 3 requests is 33 %): no page then.
        expr += (f"\nand\n  avg_over_time({select('slo:sli_requests:rate5m')}[{window.long}])"
                 f" >= {num(slo.guard)}")
    return expr


def absent_severity(service: Service, slo: SLO) -> str | None:
    """The absent-metrics alert's severity: the fast burn alert's, within the SLO's switches (None: no alert)."""
    severity = service.tier.burn_alerts.get("fast") or "ticket"
    if not _allowed(slo, severity):
        severity = "ticket"
    return severity if _allowed(slo, severity) else None


def absent_alert(service: Service, slo: SLO) -> dict[str, Any] | None:
    severity = absent_severity(service, slo)
    if severity is None:
        return None
    metric = absent_target(service, slo)
    return {
        "alert": ABSENT_ALERT,
        "expr": f"absent({metric})",
        "for": ABSENT_FOR,
        # The other SLO alerts get Sloth's identity labels from the recorded series they read.
        "labels": {**record_labels(service, slo), **dict(slo.alerting.labels), "severity": severity},
        "annotations": _annotations(
            service, slo,
            f"{service.name} {slo.name}: SLI metrics are missing",
            f"No {metric} series for {ABSENT_FOR}: the {slo.name} SLO cannot be measured.",
        ),
    }


def budget_alert_name(percent: int) -> str:
    return f"SLOErrorBudgetBelow{percent}Percent"


def enabled_budget_alerts(service: Service, slo: SLO) -> list[tuple[int, str]]:
    """(remaining percent, severity) for every budget alert the service's tier generates for the SLO,
    less those its `alerting` switches off."""
    return tier_budget_alerts(service.tier, slo)


def tier_budget_alerts(tier: Tier, slo: SLO) -> list[tuple[int, str]]:
    """:func:`enabled_budget_alerts` for an SLO judged by ``tier`` (a service's or a composite's)."""
    if not slo.alerting.budget:
        return []
    policy = tier.budget_alerts
    return [(percent, policy[percent]) for percent in BUDGET_ALERT_PERCENTS
            if policy.get(percent) and _allowed(slo, policy[percent])]


def budget_alerts(service: Service, slo: SLO) -> list[dict[str, Any]]:
    alerts = []
    for percent, severity in enabled_budget_alerts(service, slo):
        threshold = Decimal(percent) / 100
        alerts.append({
            "alert": budget_alert_name(percent),
            "expr": f"{recorded('slo:error_budget_remaining:ratio', service, slo)} < {num(threshold)}",
            "for": BUDGET_ALERT_FOR,
            "labels": alert_labels(service, slo, severity),
            "annotations": _annotations(
                service, slo,
                f"{service.name} {slo.name}: less than {percent}% of the error budget left",
                f"Less than {percent}% of the {slo.window} {slo.name} error budget of {service.name} remains.",
            ),
        })
    return alerts


def alert_names(service: Service) -> list[str]:
    """Every alert name the rule file of a service defines, sorted."""
    names = set()
    for slo in service.slos:
        names.update(burn_alert_name(w) for w, _ in enabled_burn_windows(service, slo))
        names.update(budget_alert_name(percent) for percent, _ in enabled_budget_alerts(service, slo))
        if absent_severity(service, slo) is not None:
            names.add(ABSENT_ALERT)
    return sorted(names)


def rule_groups(service: Service) -> dict[str, Any]:
    """One group per SLO: rules in a group run in order, so alerts see this evaluation's records."""
    groups = []
    for slo in service.slos:
        rules = recording_rules(service, slo)
        rules += [burn_alert(service, slo, w, sev) for w, sev in enabled_burn_windows(service, slo)]
        absent = absent_alert(service, slo)
        if absent is not None:
            rules.append(absent)
        rules += budget_alerts(service, slo)
        groups.append({"name": f"slo:{service.name}:{slo.name}", "rules": rules})
    return {"groups": groups}


def scrape_config(service: Service) -> dict[str, Any]:
    """A scrape_configs entry for job <service> (the SLIs' default ``job`` label).

    Without declared targets it discovers the service's DNS name (A records), which needs no
    per-environment target list: the name resolves in Kubernetes (a Service), Docker Compose and
    Consul DNS alike. Port and path come from ``observability.scrape`` (default 9090, /metrics).
    """
    scrape = service.scrape
    entry: dict[str, Any] = {"job_name": service.name, "metrics_path": scrape.path}
    if scrape.targets:
        entry["static_configs"] = [{"targets": list(scrape.targets)}]
    else:
        entry["dns_sd_configs"] = [{"names": [service.name], "type": "A", "port": scrape.port}]
    return {"scrape_configs": [entry]}


# The Service fields slo_rule_documents reads (generators.shapes templates on these alone).
READS = frozenset({"name", "source", "team", "tier", "sli", "slos", "scrape", "runbook_url", "labels"})


def slo_rule_documents(service: Service) -> dict[str, tuple[Any, bool]]:
    """The rule file, its promtool test files and the scrape snippet: file name → (document, multi)."""
    from generators.slo_tests import burst_promtool_tests, promtool_tests

    if not service.slos:  # `slos: []`: no SLO artifacts, only what Prometheus needs to scrape the service
        return {SCRAPE_FILE: (scrape_config(service), False)}
    return {
        RULES_FILE: (rule_groups(service), False),
        TEST_FILE: (promtool_tests(service, RULES_FILE), False),
        BURST_TEST_FILE: (burst_promtool_tests(service, RULES_FILE), False),
        SCRAPE_FILE: (scrape_config(service), False),
    }


def slo_rule_files(service: Service, out_dir: str) -> dict[str, bytes]:
    """The files of :func:`slo_rule_documents`, rendered, keyed by path under ``out_dir``."""
    return render_files(slo_rule_documents(service), service.source, out_dir)


__all__ = ["template_literal", "printed_text", "slo_rule_files", "slo_rule_documents", "rule_groups", "scrape_config",
           "alert_names", "enabled_burn_windows", "burn_alert_name", "series_labels", "record_labels", "num"]
