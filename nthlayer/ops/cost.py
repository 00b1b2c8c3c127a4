"""``nthlayer cost``: what reliability cost each service and team over a period (docs/cost.md).

Per service, from the state database: the incidents open during the period and their minutes inside it,
the pages among them (incidents of a paging severity), and the error-budget minutes spent (from the budget
history that ``track-budget`` records). An optional money figure prices incident minutes by tier, from the
``[cost]`` table of nthlayer.toml. And, measured from Prometheus (nthlayer.ops.cost_series), the
observability cost NthLayer itself adds: the series its recording rules create.

Budget minutes spent over a range = the range's error ratio × the range's minutes (the unit of the error
budget, as track-budget's "consumed"): the history keeps each SLO's remaining share over 1d/7d/28d/30d and
its own window, which gives the error ratio back: ``(1 − remaining/100) × (1 − objective)``. A period is
cut into such ranges, newest first, ending at the SLO's newest history point at or before the period's end.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable

from generators.errors import UserError
from generators.model import Service
from generators.tiers import TIERS
from nthlayer.config import ProjectConfig
from nthlayer.state.cost import IncidentSpan, history_at, incidents_between, latest_history_instants
from nthlayer.state.db import format_time

# Incident severities that page someone (PagerDuty's high urgency, P1/P2: nthlayer.ops.events maps them to
# these two); the others are tickets.
PAGING_SEVERITIES = ("critical", "high")
# The history's ranges in days (nthlayer.state.history.HISTORY_RANGES), the SLO's own window added per SLO.
HISTORY_DAYS = {"30d": 30, "28d": 28, "7d": 7, "1d": 1}
CENTS = Decimal("0.01")
_SINCE = re.compile(r"^([1-9][0-9]*)([dw])$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class CostSettings:
    """The ``[cost]`` table: what one incident minute costs for a service of each tier (tier name →
    amount), in ``currency``."""
    currency: str
    incident_minute: dict[str, Decimal]


def cost_settings(config: ProjectConfig) -> CostSettings | None:
    """The project's ``[cost]`` table, checked (None when the file has none)."""
    table = config.section("cost")
    if not table:
        return None
    unknown = sorted(set(table) - {"currency", "incident_minute"})
    if unknown:
        raise config.error(f"/cost/{unknown[0]}", f"unknown key {unknown[0]!r} (known: currency, incident_minute)")
    currency = table.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise config.error("/cost/currency", "currency must be a three-letter ISO 4217 code such as \"EUR\""
                           if currency is not None else "missing: name the currency, e.g. currency = \"EUR\"")
    prices = table.get("incident_minute")
    names = [tier.name for tier in TIERS.values()]
    if not isinstance(prices, dict):
        raise config.error("/cost/incident_minute", "must be a table of the cost of one incident minute per tier, "
                           f"e.g. [cost.incident_minute] with {', '.join(f'{n} = …' for n in names)}")
    result: dict[str, Decimal] = {}
    for key, value in prices.items():
        if key not in names:
            raise config.error(f"/cost/incident_minute/{key}", f"unknown tier {key!r} (tiers: {', '.join(names)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise config.error(f"/cost/incident_minute/{key}", f"{value!r} is not an amount (a number ≥ 0)")
        result[key] = Decimal(str(value))
    missing = [name for name in names if name not in result]
    if missing:
        raise config.error("/cost/incident_minute", f"no price for tier {missing[0]!r}: every tier needs one "
                           f"({', '.join(names)})")
    return CostSettings(currency, result)


def period_days(since: str) -> int:
    """``--since`` in whole days (``30d``, ``4w``): budget history is kept per day, so the period is too."""
    match = _SINCE.fullmatch(since)
    if not match:
        raise UserError(f"--since {since!r} is not a number of days or weeks such as 30d or 4w")
    return int(match[1]) * (7 if match[2] == "w" else 1)


def budget_pieces(days: int, window_days: int) -> list[tuple[int, str]]:
    """The period cut into ranges the history records, newest first: (days before the end of the range,
    range name); greedy, largest range first (30 days: one piece; 10 days: 7d then three 1d)."""
    ranges = sorted({**HISTORY_DAYS, "window": window_days}.items(), key=lambda item: (-item[1], item[0]))
    pieces: list[tuple[int, str]] = []
    offset = 0
    while offset < days:
        name, length = next((n, d) for n, d in ranges if d <= days - offset)
        pieces.append((offset, name))
        offset += length
    return pieces


def _range_days(name: str, window_days: int) -> int:
    return window_days if name == "window" else HISTORY_DAYS[name]


@dataclass
class Figures:
    """The summed figures of a service or a team (money None: no ``[cost]`` table)."""
    incidents: int = 0
    pages: int = 0
    incident_minutes: Decimal = Decimal(0)
    budget_minutes: Decimal = Decimal(0)
    budget_spent_minutes: Decimal | None = Decimal(0)  # None: some SLO's history does not cover the period
    money: Decimal | None = None
    series: int | None = None  # None: not measured

    def add(self, other: Figures) -> None:
        self.incidents += other.incidents
        self.pages += other.pages
        self.incident_minutes += other.incident_minutes
        self.budget_minutes += other.budget_minutes
        self.budget_spent_minutes = (None if self.budget_spent_minutes is None or other.budget_spent_minutes is None
                                     else self.budget_spent_minutes + other.budget_spent_minutes)
        if other.money is not None:
            self.money = (self.money or Decimal(0)) + other.money
        if other.series is not None:
            self.series = (self.series or 0) + other.series

    def as_dict(self) -> dict[str, Any]:
        return {"incidents": self.incidents, "incident_minutes": _minutes(self.incident_minutes),
                "pages": self.pages, "budget_minutes": _minutes(self.budget_minutes),
                "budget_spent_minutes": None if self.budget_spent_minutes is None
                else _minutes(self.budget_spent_minutes),
                "money": None if self.money is None else self.money.quantize(CENTS), "series": self.series}


@dataclass
class ServiceCost:
    service: str
    team: str
    tier: int
    figures: Figures
    series_by_metric: dict[str, int] = field(default_factory=dict)


def _minutes(value: Decimal) -> Decimal:
    return value.quantize(CENTS)


def incident_figures(spans: Iterable[IncidentSpan], start: datetime, end: datetime) -> tuple[int, int, Decimal]:
    """(incidents, pages, minutes inside [start, end)) of one service's incidents; an open incident lasts
    until ``end``; a page is an incident of a paging severity that started inside the period."""
    count = pages = 0
    seconds = 0.0
    for span in spans:
        count += 1
        pages += span.severity in PAGING_SEVERITIES and span.started_at >= start
        stop = min(span.resolved_at or end, end)
        seconds += max(0.0, (stop - max(span.started_at, start)).total_seconds())
    return count, pages, Decimal(str(seconds)) / 60


def _spent(service: Service, days: int, latest: dict[tuple[str, str], datetime],
           points: dict[tuple[str, str, datetime, str], Decimal | None]) -> Decimal | None:
    """Budget minutes spent over ``days`` by the service's SLOs (None: a piece of some SLO's history is
    missing)."""
    total = Decimal(0)
    for slo in service.slos:
        at = latest.get((service.name, slo.name))
        if at is None:
            return None
        for offset, name in budget_pieces(days, slo.window_days):
            key = (service.name, slo.name, at - timedelta(days=offset), name)
            if key not in points:
                return None
            remaining = points[key]
            if remaining is None:  # no traffic in that range: nothing went wrong, nothing spent
                continue
            ratio = (1 - remaining / 100) * (1 - slo.objective)
            total += ratio * _range_days(name, slo.window_days) * 1440
    return total


def service_costs(con: Any, services: list[Service], end: datetime, days: int,
                  settings: CostSettings | None) -> list[ServiceCost]:
    """Each service's figures over the ``days`` before ``end`` (``con``: the state database, None when
    there is none yet), sorted by service."""
    start = end - timedelta(days=days)
    names = [s.name for s in services]
    spans: dict[str, list[IncidentSpan]] = {}
    latest: dict[tuple[str, str], datetime] = {}
    points: dict[tuple[str, str, datetime, str], Decimal | None] = {}
    if con is not None:
        for span in incidents_between(con, names, start, end):
            spans.setdefault(span.service, []).append(span)
        latest = latest_history_instants(con, names, end)
        wanted = [(s.name, slo.name, latest[(s.name, slo.name)] - timedelta(days=offset), name)
                  for s in services for slo in s.slos if (s.name, slo.name) in latest
                  for offset, name in budget_pieces(days, slo.window_days)]
        points = history_at(con, wanted)
    result = []
    for service in sorted(services, key=lambda s: s.name):
        count, pages, minutes = incident_figures(spans.get(service.name, []), start, end)
        budget = sum((Decimal(1) - slo.objective) * days * 1440 for slo in service.slos) if service.slos \
            else Decimal(0)
        spent = _spent(service, days, latest, points) if service.slos else Decimal(0)
        money = None if settings is None else minutes * settings.incident_minute[service.tier.name]
        result.append(ServiceCost(service.name, service.team, service.tier.number,
                                  Figures(count, pages, minutes, Decimal(budget), spent, money)))
    return result


def team_costs(costs: list[ServiceCost]) -> dict[str, tuple[int, Figures]]:
    """Per team (sorted): how many services, and their figures summed."""
    teams: dict[str, tuple[int, Figures]] = {}
    for cost in costs:
        number, figures = teams.get(cost.team, (0, Figures()))
        figures.add(cost.figures)
        teams[cost.team] = (number + 1, figures)
    return dict(sorted(teams.items()))


@dataclass(frozen=True)
class SeriesMeasurement:
    """What Prometheus held of NthLayer's recorded series at ``at``: (service, metric) → series."""
    at: datetime
    prometheus: str
    counts: dict[tuple[str, str], int]


def apply_series(costs: list[ServiceCost], measurement: SeriesMeasurement | None) -> None:
    """Put each service's measured series (total and per metric) into its figures."""
    if measurement is None:
        return
    for cost in costs:
        by_metric = {metric: n for (service, metric), n in sorted(measurement.counts.items())
                     if service == cost.service}
        cost.series_by_metric = by_metric
        cost.figures.series = sum(by_metric.values())


def cost_document(costs: list[ServiceCost], end: datetime, days: int, settings: CostSettings | None,
                  measurement: SeriesMeasurement | None) -> dict[str, Any]:
    """The ``--json`` document: one ``cost`` object, keys in a stable order, for dashboards."""
    teams = team_costs(costs)
    return {"cost": {
        "period": {"from": format_time(end - timedelta(days=days)), "to": format_time(end), "days": days},
        "currency": None if settings is None else settings.currency,
        "incident_minute": None if settings is None else {
            tier.name: settings.incident_minute[tier.name] for tier in TIERS.values()},
        "series_measured_at": None if measurement is None else format_time(measurement.at),
        "prometheus": None if measurement is None else measurement.prometheus,
        "services": [{"service": c.service, "team": c.team, "tier": c.tier, **c.figures.as_dict(),
                      "series_by_metric": None if measurement is None else c.series_by_metric} for c in costs],
        "teams": [{"team": team, "services": number, **figures.as_dict()} for team, (number, figures) in teams.items()],
    }}


def _cell(value: Decimal | int | None, unknown: str = "-") -> str:
    if value is None:
        return unknown
    return str(value.quantize(CENTS) if isinstance(value, Decimal) else value)


def _aligned(rows: list[tuple[str, ...]], left: int) -> list[str]:
    """Rows as aligned columns: the first ``left`` left-aligned, the numbers right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) if i < left else cell.rjust(widths[i])
                      for i, cell in enumerate(row)).rstrip() for row in rows]


def _figure_cells(figures: Figures, settings: CostSettings | None) -> tuple[str, ...]:
    money = "-" if figures.money is None or settings is None else f"{figures.money.quantize(CENTS)} {settings.currency}"
    return (str(figures.incidents), _cell(figures.incident_minutes), str(figures.pages),
            _cell(figures.budget_spent_minutes, "no history"), _cell(figures.budget_minutes), money,
            _cell(figures.series))


FIGURE_HEADERS = ("INCIDENTS", "INCIDENT(min)", "PAGES", "BUDGET SPENT(min)", "BUDGET(min)", "COST", "SERIES")


def cost_text(costs: list[ServiceCost], end: datetime, days: int, settings: CostSettings | None,
              measurement: SeriesMeasurement | None, config_path: str) -> str:
    """The human output: a line saying the period, a table per service, a table per team, and notes."""
    lines = [f"cost from {format_time(end - timedelta(days=days))} to {format_time(end)} ({days} days)", ""]
    lines += _aligned([("SERVICE", "TEAM", "TIER") + FIGURE_HEADERS] + [
        (c.service, c.team, str(c.tier)) + _figure_cells(c.figures, settings) for c in costs], 3)
    lines.append("")
    lines += _aligned([("TEAM", "SERVICES") + FIGURE_HEADERS] + [
        (team, str(number)) + _figure_cells(figures, settings)
        for team, (number, figures) in team_costs(costs).items()], 1)
    lines.append("")
    if settings is None:
        lines.append(f"no money figure: {config_path} has no [cost] table (docs/cost.md)")
    else:
        prices = ", ".join(f"{name} {amount}" for name, amount in settings.incident_minute.items())
        lines.append(f"cost: incident minutes × the tier's price per minute ({prices} {settings.currency})")
    if measurement is None:
        lines.append("series: not measured (pass --prometheus URL to count the series NthLayer's recording "
                     "rules create)")
    else:
        total = sum(measurement.counts.values())
        lines.append(f"series: {total} series recorded by NthLayer's rules in {measurement.prometheus} "
                     f"at {format_time(measurement.at)}")
    return "\n".join(lines)


def measure_costs(services: list[Service], state: str, end: datetime, days: int, settings: CostSettings | None,
                  client: Any | None) -> tuple[list[ServiceCost], SeriesMeasurement | None]:
    """The operation: each service's figures from the state database at ``state`` (a missing file is an
    empty history and is not created), and with a Prometheus ``client`` its series counted at ``end`` and
    recorded in state, for the report."""
    from nthlayer.state.cost import record_series_counts
    from nthlayer.state.db import connect

    measurement = None
    if client is not None:
        from nthlayer.ops.cost_series import measure_series

        measurement = measure_series(client, services, end)
    if measurement is None and not os.path.exists(state):
        costs = service_costs(None, services, end, days, settings)
    else:
        with connect(state) as con:
            if measurement is not None:
                record_series_counts(con, measurement.at, measurement.counts)
            costs = service_costs(con, services, end, days, settings)
    apply_series(costs, measurement)
    return costs, measurement
