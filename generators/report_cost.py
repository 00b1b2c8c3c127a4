"""The reliability report's cost sections (docs/cost.md): per service on its page, per team on the index.

Pure, like generators.report_html: figures in, HTML out. The figures come from the state database only
(nthlayer.ops.report): incidents, pages and budget minutes over the last :data:`REPORT_COST_DAYS` days up to
the report's data time, and the series counts ``nthlayer cost --prometheus`` last recorded. No money figure:
its prices live in nthlayer.toml, which the report task does not read (``nthlayer cost`` shows it).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from html import escape
from typing import Iterable

REPORT_COST_DAYS = 30


@dataclass(frozen=True)
class CostFigures:
    """One service's (or team's) cost over the report's period."""
    incidents: int
    incident_minutes: Decimal
    pages: int
    budget_minutes: Decimal
    budget_spent_minutes: Decimal | None  # None: the budget history does not cover the period
    series: int | None  # None: never measured
    series_at: int | None  # unix seconds of the newest measurement


def _minutes(value: Decimal | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _when(ts: int | None) -> str:
    return "—" if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def team_figures(services: Iterable[tuple[str, CostFigures]]) -> dict[str, tuple[int, CostFigures]]:
    """Per team (sorted): how many services, and their figures summed (budget spent unknown when one of
    its services' is; series summed over the services measured, their newest measurement's time)."""
    teams: dict[str, list[CostFigures]] = {}
    for team, figures in services:
        teams.setdefault(team, []).append(figures)
    result = {}
    for team, members in sorted(teams.items()):
        spent = [m.budget_spent_minutes for m in members]
        series = [m.series for m in members if m.series is not None]
        times = [m.series_at for m in members if m.series_at is not None]
        result[team] = (len(members), CostFigures(
            sum(m.incidents for m in members), sum((m.incident_minutes for m in members), Decimal(0)),
            sum(m.pages for m in members), sum((m.budget_minutes for m in members), Decimal(0)),
            None if any(s is None for s in spent) else sum(spent, Decimal(0)),  # type: ignore[arg-type]
            sum(series) if series else None, max(times) if times else None))
    return result


HEAD = ("<th>incidents</th><th>incident minutes</th><th>pages</th><th>budget minutes spent</th>"
        "<th>budget minutes</th><th>NthLayer series</th>")


def _cells(figures: CostFigures) -> str:
    return (f'<td class="num">{figures.incidents}</td><td class="num">{_minutes(figures.incident_minutes)}</td>'
            f'<td class="num">{figures.pages}</td><td class="num">{_minutes(figures.budget_spent_minutes)}</td>'
            f'<td class="num">{_minutes(figures.budget_minutes)}</td>'
            f'<td class="num">{"—" if figures.series is None else figures.series}</td>')


NOTE = (f'<p class="meta">The last {REPORT_COST_DAYS} days up to the data\'s time. Pages: incidents of '
        "severity critical or high. Series: the series NthLayer's recording rules create, as "
        "<code>nthlayer cost --prometheus</code> last counted them; money: <code>nthlayer cost</code> "
        "with a [cost] table (docs/cost.md).</p>")


def team_cost_section(services: Iterable[tuple[str, CostFigures]]) -> str:
    """The index's "Cost by team" section: one row a team."""
    rows = "".join(f'<tr><td>{escape(team)}</td><td class="num">{number}</td>{_cells(figures)}</tr>'
                   for team, (number, figures) in team_figures(services).items())
    if not rows:
        return '<h2 id="cost">Cost by team</h2>\n<p class="empty">No services.</p>'
    return (f'<h2 id="cost">Cost by team</h2>\n{NOTE}\n<table class="cost"><thead><tr><th>team</th>'
            f"<th>services</th>{HEAD}</tr></thead><tbody>{rows}</tbody></table>")


def service_cost_section(figures: CostFigures) -> str:
    """A service page's "Cost" section: its row, and when its series were last counted."""
    measured = ("Series never measured (run nthlayer cost --prometheus URL)." if figures.series_at is None
                else f"Series measured {_when(figures.series_at)}.")
    return (f'<h2 id="cost">Cost</h2>\n{NOTE}\n<table class="cost"><thead><tr>{HEAD}</tr></thead><tbody>'
            f"<tr>{_cells(figures)}</tr></tbody></table>\n<p class=\"meta\">{escape(measured)}</p>")
