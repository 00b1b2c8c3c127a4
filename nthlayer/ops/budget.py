"""Error budgets from Prometheus: how much of each SLO's budget is spent, and how fast it burns.

Query cost does not grow with the number of services: services whose SLOs read
the same metric with the same matchers and window share ONE instant query that
aggregates ``by`` the label that tells them apart (usually ``job``), e.g.

    (sum by (job) (increase(http_requests_total{job=~"a|b",code=~"5.."}[30d]))
      or 0 * sum by (job) (increase(http_requests_total{job=~"a|b"}[30d])))
    / sum by (job) (increase(http_requests_total{job=~"a|b"}[30d]))

and the same ratio over 1h for the burn rate, joined into the same query with
``or`` and told apart by an ``nthlayer_range`` label. The ``or 0 * total`` term
keeps services that never had an error (no 5xx series at all) in the result.

Budget figures are Decimal: budget = (1 − objective) × window minutes,
consumed = error ratio over the window × window minutes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from generators.model import Matcher, Service
from generators.promql import le_matcher, selector
from generators.slo_maths import STATUS_CRITICAL_BELOW_PERCENT, STATUS_WARNING_BELOW_PERCENT
from generators.render import json_default  # noqa: F401  (the commands import it from here)
from nthlayer.state.db import format_time, to_db

if TYPE_CHECKING:  # imported where used: the build's report task reads budgets without either (0.1 s)
    import duckdb

    from nthlayer.integrations.prometheus import PrometheusClient
    from nthlayer.ops.composites import Bound

# The status thresholds are shared with the Grafana overview (generators/grafana_overview.py).
WARNING_BELOW_PERCENT = STATUS_WARNING_BELOW_PERCENT
CRITICAL_BELOW_PERCENT = STATUS_CRITICAL_BELOW_PERCENT
BURN_RANGE = "1h"
RANGE_LABEL = "nthlayer_range"
# Labels that name a service in most setups, in order of preference, for grouping results.
PREFERRED_KEY_LABELS = ("job", "service", "app", "application")

MINUTES = Decimal("0.0001")
PERCENT = Decimal("0.01")
RATE = Decimal("0.01")


@dataclass(frozen=True)
class BudgetReport:
    service: str
    tier: int
    slo: str
    objective: Decimal
    window_days: int
    evaluated_at: datetime
    budget_minutes: Decimal
    error_ratio: Decimal | None  # None: no data (no series, or no traffic in the window)
    consumed_minutes: Decimal | None
    remaining_minutes: Decimal | None
    remaining_percent: Decimal | None
    burn_rate_1h: Decimal | None
    status: str  # HEALTHY | WARNING | CRITICAL | EXHAUSTED | UNKNOWN
    # A composite SLO (docs/composites.md): ``service`` and ``slo`` are both the composite's name.
    composite: bool = False

    @property
    def title(self) -> str:
        """How reasons name it: ``availability SLO``, or ``composite SLO checkout``."""
        return f"composite SLO {self.slo}" if self.composite else f"{self.slo} SLO"

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service, "tier": self.tier, "slo": self.slo, "composite": self.composite,
            "objective": self.objective, "window_days": self.window_days,
            "evaluated_at": format_time(self.evaluated_at),
            "budget_minutes": self.budget_minutes, "error_ratio": self.error_ratio,
            "consumed_minutes": self.consumed_minutes, "remaining_minutes": self.remaining_minutes,
            "remaining_percent": self.remaining_percent, "burn_rate_1h": self.burn_rate_1h,
            "status": self.status,
        }


@dataclass(frozen=True)
class QueryGroup:
    """One query answering one SLO for every service that shares its metric, matchers and window; or
    (``recorded``) the SLOs whose queries are the spec's own, read from their recorded ratios."""
    slo: str  # the SLO's name ("" for a recorded group: each sample's labels name its SLO)
    window_days: int
    key_label: str | None  # None: the selector has no equality matcher; one service per query
    services: dict[str, str]  # key label value → service name
    promql: str
    recorded: frozenset[tuple[str, str]] = frozenset()  # (service, SLO name) read from recorded series


def budget_figures(objective: Decimal, window_days: int, error_ratio: Decimal
                   ) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(budget, consumed, remaining minutes, remaining %) for an error ratio over the whole window."""
    window_minutes = Decimal(window_days * 24 * 60)
    budget = (Decimal(1) - objective) * window_minutes
    consumed = error_ratio * window_minutes
    remaining = budget - consumed
    percent = remaining / budget * 100 if budget else Decimal(0)
    return (budget.quantize(MINUTES), consumed.quantize(MINUTES), remaining.quantize(MINUTES),
            percent.quantize(PERCENT))


def status_of(remaining_percent: Decimal | None) -> str:
    if remaining_percent is None:
        return "UNKNOWN"
    if remaining_percent <= 0:
        return "EXHAUSTED"
    if remaining_percent < CRITICAL_BELOW_PERCENT:
        return "CRITICAL"
    if remaining_percent < WARNING_BELOW_PERCENT:
        return "WARNING"
    return "HEALTHY"


def regex_escape(value: str) -> str:
    """Escape RE2 metacharacters so a label value matches literally inside =~."""
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in value)


def split_selector(matchers: tuple[Matcher, ...]) -> tuple[str | None, str | None, tuple[Matcher, ...]]:
    """(key label, its value, the other matchers): the equality matcher that tells services apart."""
    equal = {label: value for label, op, value in matchers if op == "="}
    key = next((label for label in PREFERRED_KEY_LABELS if label in equal), None)
    if key is None and equal:
        key = sorted(equal)[0]
    if key is None:
        return None, None, matchers
    return key, equal[key], tuple(m for m in matchers if m != (key, "=", equal[key]))


def _ratio(slo: str, key: str | None, values: list[str], others: tuple[Matcher, ...],
           sli_parts: tuple[Any, ...], range_: str) -> str:
    """PromQL for the bad-event ratio over ``range_``, aggregated by the key label."""
    by = f" by ({key})" if key else ""
    scope: tuple[Matcher, ...] = others
    if key:
        scope = ((key, "=", values[0]),) + others if len(values) == 1 else \
            ((key, "=~", "|".join(regex_escape(v) for v in values)),) + others

    def total(metric: str, extra: tuple[Matcher, ...] = ()) -> str:
        return f"sum{by} (increase({selector(metric, scope + extra)}[{range_}]))"

    if slo == "availability":
        metric, error_matchers = sli_parts
        all_requests = total(metric)
        return f"({total(metric, error_matchers)} or 0 * {all_requests}) / {all_requests}"
    histogram, threshold = sli_parts
    count = total(f"{histogram}_count")
    good = total(f"{histogram}_bucket", (le_matcher(threshold),))
    return f"1 - ({good} or 0 * {count}) / {count}"


def plan_queries(services: Iterable[Service]) -> list[QueryGroup]:
    """Group every (service, SLO) into as few queries as their metrics allow.

    Availability and latency SLOs read their raw counters (services sharing metric, matchers and window
    share a query); the SLOs whose queries are the spec's own (events, ratio_query, threshold) read the
    ratios their recording rules keep, ``slo:sli_error:ratio_rate<W>{service, slo}``, one query per window.
    """
    buckets: dict[tuple[Any, ...], dict[str, str]] = {}
    singles: list[tuple[str, str, int, tuple[Any, ...], tuple[Matcher, ...], str]] = []
    recorded: dict[int, set[tuple[str, str]]] = {}
    for service in sorted(services, key=lambda s: s.name):
        for slo in service.slos:
            if slo.kind not in ("availability", "latency"):
                recorded.setdefault(slo.window_days, set()).add((service.name, slo.name))
                continue
            sli = slo.sli_of(service)
            key, value, others = split_selector(sli.selector)
            sli_parts: tuple[Any, ...] = (
                (sli.requests_metric, sli.error_matchers) if slo.kind == "availability"
                else (sli.latency_histogram, slo.threshold_seconds))
            signature = (slo.name, slo.kind, slo.window_days, sli_parts, key, others)
            members = buckets.setdefault(signature, {}) if key is not None and value is not None else None
            if members is None or value in members:
                # No equality matcher to group by, or two specs select the same series: the
                # service gets a query of its own over its full selector.
                singles.append((slo.name, slo.kind, slo.window_days, sli_parts, sli.selector, service.name))
                continue
            members[value] = service.name  # type: ignore[index]
    groups: list[QueryGroup] = []
    for (name, kind, window_days, sli_parts, key, others), members in buckets.items():
        groups.append(_group(name, kind, window_days, sli_parts, key, others, members))
    for name, kind, window_days, sli_parts, full_selector, service_name in singles:
        groups.append(_group(name, kind, window_days, sli_parts, None, full_selector, {"": service_name}))
    for window_days, pairs in recorded.items():
        groups.append(_recorded_group(window_days, frozenset(pairs)))
    return sorted(groups, key=lambda g: (g.slo, g.window_days, g.promql))


def _group(name: str, kind: str, window_days: int, sli_parts: tuple[Any, ...], key: str | None,
           others: tuple[Matcher, ...], members: dict[str, str]) -> QueryGroup:
    values = sorted(members)
    window = _ratio(kind, key, values, others, sli_parts, f"{window_days}d")
    burn = _ratio(kind, key, values, others, sli_parts, BURN_RANGE)
    src = key or ""
    promql = (f'label_replace({window}, "{RANGE_LABEL}", "window", "{src}", ".*") or '
              f'label_replace({burn}, "{RANGE_LABEL}", "{BURN_RANGE}", "{src}", ".*")')
    return QueryGroup(name, window_days, key, dict(members), promql)


def _recorded_group(window_days: int, pairs: frozenset[tuple[str, str]]) -> QueryGroup:
    """One query for the recorded window and 1h ratios of ``pairs`` (service, SLO name)."""
    scope = ((("service", "=~", "|".join(regex_escape(s) for s in sorted({s for s, _ in pairs}))),
              ("slo", "=~", "|".join(regex_escape(n) for n in sorted({n for _, n in pairs})))))

    def ratio(window: str) -> str:
        # max: the series of an SLO recorded under its old team/tier labels too, just after a change.
        return f"max by (service, slo) ({selector(f'slo:sli_error:ratio_rate{window}', scope)})"

    promql = (f'label_replace({ratio(f"{window_days}d")}, "{RANGE_LABEL}", "window", "", "") or '
              f'label_replace({ratio(BURN_RANGE)}, "{RANGE_LABEL}", "{BURN_RANGE}", "", "")')
    return QueryGroup("", window_days, None, {}, promql, pairs)


def _finite(value: Decimal) -> Decimal | None:
    return value if value.is_finite() else None


def evaluate(client: PrometheusClient, services: list[Service], at: datetime,
             composites: Sequence[Bound] = ()) -> list[BudgetReport]:
    """Query Prometheus once per group and compute every service's budgets at instant ``at``, then those
    of ``composites`` (one query each; nthlayer.ops.composites)."""
    ratios: dict[tuple[str, str, str], Decimal | None] = {}
    for group in plan_queries(services):
        for sample in client.query(group.promql, at=at):
            if group.recorded:
                pair = (sample.labels.get("service", ""), sample.labels.get("slo", ""))
                if pair in group.recorded:
                    ratios[(*pair, sample.labels.get(RANGE_LABEL, ""))] = _finite(sample.value)
                continue
            name = group.services.get(sample.labels.get(group.key_label, "") if group.key_label else "")
            if name is None:
                continue
            ratios[(name, group.slo, sample.labels.get(RANGE_LABEL, ""))] = _finite(sample.value)
    reports: list[BudgetReport] = []
    for service in sorted(services, key=lambda s: s.name):
        for slo in service.slos:
            reports.append(report_of(service.name, service.tier.number, slo.name, slo.objective, slo.window_days,
                                     at, ratios.get((service.name, slo.name, "window")),
                                     ratios.get((service.name, slo.name, BURN_RANGE))))
    if composites:
        from nthlayer.ops.composites import evaluate_composites

        reports += evaluate_composites(client, composites, at)
    return reports


def report_of(service: str, tier: int, slo: str, objective: Decimal, window_days: int, at: datetime,
              ratio: Decimal | None, burn_ratio: Decimal | None, composite: bool = False) -> BudgetReport:
    """The budget figures of one SLO from its error ratios over its window and over the burn range."""
    budget = ((Decimal(1) - objective) * window_days * 1440).quantize(MINUTES)
    consumed = remaining = percent = None
    if ratio is not None:
        budget, consumed, remaining, percent = budget_figures(objective, window_days, ratio)
    burn = None
    if burn_ratio is not None and objective < 1:
        burn = (burn_ratio / (Decimal(1) - objective)).quantize(RATE)
    return BudgetReport(service, tier, slo, objective, window_days, at, budget, ratio, consumed, remaining, percent,
                        burn, status_of(percent), composite)


_RECORD_CHUNK = 200  # rows per INSERT: one statement per row costs DuckDB about 1 ms each


def record_budgets(con: duckdb.DuckDBPyConnection, reports: list[BudgetReport]) -> None:
    """Append one error_budgets row per report and keep the slos table current."""
    for start in range(0, len(reports), _RECORD_CHUNK):
        chunk = reports[start:start + _RECORD_CHUNK]
        slos = list({(r.service, r.slo): r for r in chunk}.values())  # one upsert per key and statement
        con.execute(
            "INSERT INTO slos VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * len(slos))
            + " ON CONFLICT (service, slo) DO UPDATE SET "
            "objective = excluded.objective, window_days = excluded.window_days, tier = excluded.tier",
            [value for r in slos for value in (r.service, r.slo, r.objective, r.window_days, r.tier)])
        con.execute(
            "INSERT INTO error_budgets (service, slo, evaluated_at, objective, window_days, budget_minutes, "
            "consumed_minutes, remaining_minutes, remaining_percent, burn_rate_1h, status) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
            [value for r in chunk for value in (
                r.service, r.slo, to_db(r.evaluated_at), r.objective, r.window_days, r.budget_minutes,
                r.consumed_minutes, r.remaining_minutes, r.remaining_percent,
                None if r.burn_rate_1h is None else float(r.burn_rate_1h), r.status)])


def percent_text(objective: Decimal) -> str:
    text = format((objective * 100).normalize(), "f")
    return f"{text}%"


def _num(value: Decimal | None, places: str = "0.01") -> str:
    return "-" if value is None else format(value.quantize(Decimal(places)), "f")


def table(reports: list[BudgetReport]) -> str:
    """An aligned, plain-text table of reports."""
    header = ("SERVICE", "SLO", "TARGET", "WINDOW", "BUDGET(min)", "CONSUMED", "REMAINING", "LEFT%", "BURN(1h)",
              "STATUS")
    rows = [header] + [
        (r.service, f"{r.slo} (composite)" if r.composite else r.slo, percent_text(r.objective), f"{r.window_days}d", _num(r.budget_minutes),
         _num(r.consumed_minutes), _num(r.remaining_minutes), _num(r.remaining_percent), _num(r.burn_rate_1h),
         r.status)
        for r in reports]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = {4, 5, 6, 7, 8}
    lines = []
    for row in rows:
        cells = [cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
