"""Prometheus rules of a composite SLO: its weighted events, error ratios, burn-rate and budget alerts.

The composite reads only what its components' own rule files record (generators.slo_rules):
``slo:sli_requests:rate5m`` and ``slo:sli_errors:rate5m`` of each component ``{service, slo}``. It records

- ``slo:sli_requests:rate5m`` / ``slo:sli_errors:rate5m`` ``{composite="<name>"}``: Σ weight × the
  component's events per second (a component without series counts as none, so one service whose rules
  are not loaded yet does not blank the composite; its own SLOMetricsAbsent alert says so);
- ``slo:sli_error:ratio_rate<W>`` for every window a service SLO records (generators.slo_maths.RATIO_WINDOWS
  plus the composite's window): 5m is the ratio of the two series above; every longer window sums both
  over W before dividing, a ratio of weighted event sums, never an average of ratios. A quiet component
  therefore weighs by its few events: 1 failure in 10 requests moves a composite of a million requests by
  one in a million, not by a third;
- the budget series of every SLO (objective, burn rates, budget remaining, Sloth's info series), by the
  very functions the service rules use.

Series and alerts carry ``composite`` and ``slo`` (both the composite's name), ``team``, ``tier`` and Sloth's
identity labels; alerts also carry ``service`` = ``alerting.route_via``, so Alertmanager routes them along
that service's route. The burn windows, factors and severities are the service SLOs' (tier table).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from generators.composite import COMPOSITE_LABEL, Composite, Member
from generators.promql import selector
from generators.render import render_files
from generators.slo_maths import BurnWindow, burn_factor, burn_threshold
from generators.tiers import Tier
from generators.slo_rules import (BUDGET_ALERT_FOR, budget_alert_name, budget_rules, burn_alert_name, burn_expr,
                                  labelled, num, ratio_windows, summed_ratio, template_literal, tier_budget_alerts,
                                  tier_burn_windows)

IDENTITY = (COMPOSITE_LABEL, "slo")
RULES_FILE = "composite.rules.yaml"
TEST_FILE = "composite.test.yaml"
# The folder of out/ that holds one folder per composite (a name no service may take: generators.spec).
OUT_DIR = "composites"


def tier_of(composite: Composite) -> Tier:
    """The composite's tier (bound: generators.composite.bind resolves the default)."""
    assert composite.tier is not None, "bind() the composite first"
    return composite.tier


def series_labels(composite: Composite) -> dict[str, str]:
    """The labels of every rule of the composite: its identity, then its `labels:`."""
    return {COMPOSITE_LABEL: composite.name, "slo": composite.name, "team": composite.team,
            "tier": str(tier_of(composite).number), **dict(composite.labels)}


def record_labels(composite: Composite) -> dict[str, str]:
    """Recorded series' labels: ours plus Sloth's identity labels (its dashboards list the composite)."""
    return {**series_labels(composite), "sloth_id": f"{COMPOSITE_LABEL}-{composite.name}",
            "sloth_service": composite.name, "sloth_slo": composite.name}


def alert_labels(composite: Composite, severity: str) -> dict[str, str]:
    routed = {"service": composite.route_via} if composite.route_via else {}
    return {**series_labels(composite), **routed, **dict(composite.alerting.labels), "severity": severity}


def recorded(name: str, composite: Composite) -> str:
    """A selector for one of the composite's recorded series."""
    return selector(name, ((COMPOSITE_LABEL, "=", composite.name), ("slo", "=", composite.name)))


def component_series(name: str, member: Member) -> str:
    """A component's recorded series (its service's rule file writes it)."""
    return selector(name, (("service", "=", member.service.name), ("slo", "=", member.slo.name)))


def weighted_sum(name: str, members: tuple[Member, ...]) -> str:
    """Σ weight × the components' series ``name``; a component without series counts as 0."""
    terms = []
    for member in members:
        # sum(): the series of a component recorded under its old team/tier labels too, just after a change,
        # would otherwise be two series; one of them is stale within 5 minutes.
        term = f"(sum({component_series(name, member)}) or vector(0))"
        terms.append(term if member.weight == 1 else f"{num(member.weight)} * {term}")
    return "\n+\n".join(terms)


def error_ratio_expr(composite: Composite, window: str) -> str:
    if window == "5m":
        return f"{recorded('slo:sli_errors:rate5m', composite)}\n/\n{recorded('slo:sli_requests:rate5m', composite)}"
    return summed_ratio(lambda name: recorded(name, composite), window, IDENTITY)


def recording_rules(composite: Composite, members: tuple[Member, ...]) -> list[dict[str, Any]]:
    slo = composite.slo()
    rules: list[dict[str, Any]] = [
        {"record": "slo:sli_requests:rate5m", "expr": weighted_sum("slo:sli_requests:rate5m", members)},
        {"record": "slo:sli_errors:rate5m", "expr": weighted_sum("slo:sli_errors:rate5m", members)},
    ]
    for window in ratio_windows(slo):
        rules.append({"record": f"slo:sli_error:ratio_rate{window}", "expr": error_ratio_expr(composite, window)})
    rules += budget_rules(lambda name: recorded(name, composite), slo, "slo:sli_requests:rate5m", IDENTITY)
    return labelled(rules, record_labels(composite), slo)


def _annotations(composite: Composite, summary: str, description: str) -> dict[str, str]:
    annotations = {"summary": template_literal(summary), "description": template_literal(description)}
    if composite.runbook_url:
        annotations["runbook_url"] = composite.runbook_url
    annotations.update(composite.alerting.annotations)
    return annotations


def components_text(members: tuple[Member, ...]) -> str:
    """The components as alert text: ``payment-api availability ×2, inventory-api availability``."""
    return ", ".join(f"{m.service.name} {m.slo.name}" + ("" if m.weight == 1 else f" ×{num(m.weight)}")
                     for m in members)


def burn_alert(composite: Composite, members: tuple[Member, ...], window: BurnWindow, severity: str
               ) -> dict[str, Any]:
    slo = composite.slo()
    threshold = num(burn_threshold(window, slo.objective, slo.window_days))
    factor = num(burn_factor(window, slo.window_days))
    share = num(window.budget_share * 100)
    return {
        "alert": burn_alert_name(window),
        "expr": burn_expr(lambda name: recorded(name, composite), slo, window, severity),
        "for": window.for_,
        "labels": alert_labels(composite, severity),
        "annotations": _annotations(
            composite,
            f"{composite.name} (composite): error budget burning {factor}x too fast",
            (f"The weighted bad events of {components_text(members)} are above {threshold} over both "
             f"{window.long} and {window.short}: at this rate {share}% of the {slo.window} error budget of "
             f"{composite.name} is spent within {window.long}."),
        ),
    }


def budget_alerts(composite: Composite) -> list[dict[str, Any]]:
    alerts = []
    slo = composite.slo()
    for percent, severity in tier_budget_alerts(tier_of(composite), slo):
        alerts.append({
            "alert": budget_alert_name(percent),
            "expr": f"{recorded('slo:error_budget_remaining:ratio', composite)} < {num(Decimal(percent) / 100)}",
            "for": BUDGET_ALERT_FOR,
            "labels": alert_labels(composite, severity),
            "annotations": _annotations(
                composite,
                f"{composite.name} (composite): less than {percent}% of the error budget left",
                f"Less than {percent}% of the {slo.window} error budget of the composite {composite.name} remains.",
            ),
        })
    return alerts


def enabled_burn_windows(composite: Composite) -> list[tuple[BurnWindow, str]]:
    return tier_burn_windows(tier_of(composite), composite.slo())


def rule_groups(composite: Composite, members: tuple[Member, ...]) -> dict[str, Any]:
    """One group: its rules run in order, so the alerts see this evaluation's records."""
    rules = recording_rules(composite, members)
    rules += [burn_alert(composite, members, w, sev) for w, sev in enabled_burn_windows(composite)]
    rules += budget_alerts(composite)
    return {"groups": [{"name": f"slo-composite:{composite.name}", "rules": rules}]}


def raw_ratio_expr(members: tuple[Member, ...], window: str) -> str:
    """The composite's bad-event ratio over ``window`` straight from the components' raw counters (what
    ``track-budget`` asks Prometheus, with no rules loaded): Σ weight × bad events/s ÷ Σ weight × events/s,
    both rated over the same ``window``, so the rate's division by the window cancels and this is exactly
    the ratio of the weighted event counts."""
    from generators.sli_queries import raw_rates

    bad: list[str] = []
    total: list[str] = []
    for member in members:
        errors, events = raw_rates(member.service, member.slo, window)
        weight = "" if member.weight == 1 else f"{num(member.weight)} * "
        bad.append(f"{weight}({errors} or vector(0))")
        total.append(f"{weight}({events} or vector(0))")
    return "(\n" + "\n+\n".join(bad) + "\n)\n/\n(\n" + "\n+\n".join(total) + "\n)"


def composite_documents(composite: Composite, members: tuple[Member, ...]) -> dict[str, tuple[Any, bool]]:
    """Every file of a composite, relative to out/composites/<name>/: name → (documents, multi)."""
    from generators.composite_openslo import openslo_documents
    from generators.composite_tests import promtool_tests

    files = {f"prometheus/{RULES_FILE}": (rule_groups(composite, members), False),
             f"prometheus/{TEST_FILE}": (promtool_tests(composite, members, RULES_FILE), False)}
    files.update({f"openslo/{name}": docs for name, docs in openslo_documents(composite, members).items()})
    return files


def composite_files(composite: Composite, members: tuple[Member, ...], out_dir: str) -> dict[str, bytes]:
    """The rendered files of :func:`composite_documents`, keyed by path under ``out_dir``
    (out/composites/<name>)."""
    return render_files(composite_documents(composite, members), composite.source, out_dir)


__all__ = ["rule_groups", "composite_documents", "composite_files", "recording_rules", "weighted_sum",
           "enabled_burn_windows", "alert_labels", "record_labels", "OUT_DIR", "RULES_FILE", "TEST_FILE"]
