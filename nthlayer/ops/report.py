"""The reliability report (``nthlayer report`` and the build's ``report`` task): the state database's budget
history, deploys, incidents and correlations, and each spec's tier and paging, rendered by
:mod:`generators.report_html` into ``<out>/reports/index.html`` and ``<out>/reports/services/*.html``.

The gate's verdict on each page is the deploy gate's own (:func:`nthlayer.ops.gate.decide`), judged at the
data's latest timestamp on each SLO's newest recorded figure, with the open incidents a recent deploy
is suspected of: nothing here re-implements it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable

from generators.model import Service
from generators.paging import escalation_source, uses_pagerduty
from generators.report_cost import REPORT_COST_DAYS, CostFigures
from generators.report_html import (Deploy, Gate, Incident, ReportData, ServiceReport, SLOHistory, report_files,
                                    report_pages)
from nthlayer.buildsys.report import REPORT_DIR
from nthlayer.ops.budget import BudgetReport, budget_figures, status_of
from nthlayer.state.history import RANGE_NAMES



def _paging_problem(service: Service) -> str | None:
    """Why a service's pages reach nobody (the spec checks' words), or None."""
    if not uses_pagerduty(service):
        return "no pagerduty settings: its pages end at Alertmanager's nthlayer-unrouted receiver"
    if escalation_source(service) == "missing":
        return "no escalation policy: setup-pagerduty cannot create its PagerDuty service"
    return None


def _epoch(value: Any) -> int:
    return int(value.replace(tzinfo=timezone.utc).timestamp())


def _history(con: Any, names: list[str]) -> tuple[dict[tuple[str, str], SLOHistory], int | None]:
    """Each (service, SLO)'s history, and the newest instant of all."""
    # One row per SLO with its points as lists: DuckDB builds the lists, far faster than a row per point.
    columns = ", ".join(f"list(remaining_{r}::DOUBLE ORDER BY evaluated_at)" for r in RANGE_NAMES)
    series = {(row[0], row[1]): row[2:] for row in con.execute(
        f"SELECT service, slo, list(epoch(evaluated_at)::BIGINT ORDER BY evaluated_at), {columns} "
        "FROM budget_history WHERE service IN (SELECT unnest(?)) GROUP BY service, slo", [names]).fetchall()}
    latest_rows = con.execute(
        f"SELECT service, slo, objective, window_days, {', '.join(f'remaining_{r}' for r in RANGE_NAMES)} "
        "FROM budget_history WHERE service IN (SELECT unnest(?)) "
        "QUALIFY row_number() OVER (PARTITION BY service, slo ORDER BY evaluated_at DESC) = 1", [names]).fetchall()
    result = {}
    for row in latest_rows:
        latest = {name: (None if row[4 + i] is None else Decimal(row[4 + i])) for i, name in enumerate(RANGE_NAMES)}
        times, *values = series[(row[0], row[1])]
        result[(row[0], row[1])] = SLOHistory(row[1], Decimal(row[2]), int(row[3]), times,
                                              dict(zip(RANGE_NAMES, values)), latest, status_of(latest["window"]))
    newest = max((h.times[-1] for h in result.values()), default=None)
    return result, newest


def _events(con: Any, names: list[str]) -> tuple[dict[str, list[Deploy]], dict[str, list[Incident]], int | None]:
    deploys: dict[str, list[Deploy]] = {}
    for service, at, version, commit in con.execute(
            "SELECT service, deployed_at, version, commit_sha FROM deploys WHERE service IN (SELECT unnest(?)) "
            "ORDER BY service, deployed_at, version", [names]).fetchall():
        deploys.setdefault(service, []).append(Deploy(_epoch(at), version, commit))
    incidents: dict[str, list[Incident]] = {}
    for service, key, title, severity, started, resolved in con.execute(
            "SELECT service, incident_key, title, severity, started_at, resolved_at FROM incidents "
            "WHERE service IN (SELECT unnest(?)) ORDER BY service, started_at, incident_key", [names]).fetchall():
        incidents.setdefault(service, []).append(
            Incident(key, title, severity, _epoch(started), None if resolved is None else _epoch(resolved)))
    times = [d.at for ds in deploys.values() for d in ds] + [
        t for inc in incidents.values() for i in inc for t in (i.started, i.resolved) if t is not None]
    return deploys, incidents, max(times, default=None)


def _budget(service: Service, slo_name: str, history: SLOHistory | None, objective: Decimal, days: int,
            at: datetime) -> BudgetReport:
    """The gate's input for one SLO: its newest recorded figure (None: never recorded)."""
    percent = history.latest.get("window") if history else None
    budget = budget_figures(objective, days, Decimal(0))[0]
    remaining = None if percent is None else (budget * percent / 100).quantize(Decimal("0.0001"))
    consumed = None if remaining is None else budget - remaining
    return BudgetReport(service.name, service.tier.number, slo_name, objective, days, at, budget,
                        None, consumed, remaining, percent, None, status_of(percent))


def _costs(con: Any | None, services: list[Service], at: datetime) -> dict[str, CostFigures]:
    """Each service's cost over the REPORT_COST_DAYS days up to ``at``, from state alone (nthlayer.ops.cost;
    no money: the report does not read nthlayer.toml), with its last recorded series count."""
    from nthlayer.ops.cost import service_costs
    from nthlayer.state.cost import latest_series_counts

    def cents(value: Decimal | None) -> Decimal | None:
        return None if value is None else value.quantize(Decimal("0.01"))

    measured = latest_series_counts(con, [s.name for s in services]) if con is not None else {}
    result = {}
    for cost in service_costs(con, services, at, REPORT_COST_DAYS, None):
        f = cost.figures
        when, counts = measured.get(cost.service, (None, {}))
        result[cost.service] = CostFigures(
            f.incidents, cents(f.incident_minutes), f.pages, cents(f.budget_minutes),  # type: ignore[arg-type]
            cents(f.budget_spent_minutes), sum(counts.values()) if when is not None else None,
            None if when is None else _epoch(when))
    return result


def report_data(con: Any | None, services: Iterable[Service], edges: list[tuple[str, str]]) -> ReportData:
    """Everything the pages show, from the state database (``con`` None: nothing recorded yet)."""
    from nthlayer.buildsys.reports import correlation_report
    from nthlayer.ops.gate import RECENT_DEPLOY_SECONDS, decide
    from nthlayer.state.correlation import open_incident_suspects

    ordered = sorted(services, key=lambda s: s.name)
    names = [s.name for s in ordered]
    history: dict[tuple[str, str], SLOHistory] = {}
    deploys: dict[str, list[Deploy]] = {}
    incidents: dict[str, list[Incident]] = {}
    correlated: dict[str, list[dict[str, Any]]] = {}
    newest_history = newest_event = None
    if con is not None:
        history, newest_history = _history(con, names)
        deploys, incidents, newest_event = _events(con, names)
        correlated = correlation_report(con, edges)["top_correlated_deploys"]
    latest = max((t for t in (newest_history, newest_event) if t is not None), default=None)
    at = datetime.fromtimestamp(latest if latest is not None else 0, timezone.utc)
    costs = _costs(con, ordered, at)
    reports = []
    for service in ordered:
        slos, budgets = [], []
        for slo in service.slos:
            found = history.get((service.name, slo.name))
            slos.append(found or SLOHistory(slo.name, slo.objective, slo.window_days, [], {}, {}, "UNKNOWN"))
            budgets.append(_budget(service, slo.name, found, slo.objective, slo.window_days, at))
        suspects = (open_incident_suspects(con, service.name, edges, at, RECENT_DEPLOY_SECONDS)
                    if con is not None and deploys.get(service.name) else [])
        decision = decide(service, budgets, None, suspects, None)
        reports.append(ServiceReport(
            service.name, service.tier.number, service.tier.name, service.team,
            service.tier.gate_block_below_percent, slos, Gate(decision.result, decision.reasons, decision.warnings),
            deploys.get(service.name, []), incidents.get(service.name, []), correlated.get(service.name, []),
            _paging_problem(service), costs[service.name]))
    return ReportData(reports, latest)


def _data(state_path: str, services: list[Service], edges: list[tuple[str, str]]) -> ReportData:
    """The report's data; a missing database is an empty history (and is not created)."""
    from nthlayer.state.db import connect

    if os.path.exists(state_path):
        with connect(state_path) as con:
            return report_data(con, services, edges)
    return report_data(None, services, edges)


def expected_report(state_path: str, services: list[Service], edges: list[tuple[str, str]], out_dir: str
                    ) -> dict[str, bytes]:
    """The report's files and bytes (``nthlayer build --check`` compares out/ with them)."""
    return report_files(_data(state_path, services, edges), os.path.join(out_dir, REPORT_DIR))


def write_report(state_path: str, services: list[Service], edges: list[tuple[str, str]], out_dir: str,
                 keep: Iterable[str] = ()) -> list[str]:
    """Write the report under ``<out_dir>/reports`` (only files whose bytes changed, atomically, a page at a
    time) and remove the pages of services no longer specified, but those named in ``keep`` (the build's
    broken specs); returns the paths written."""
    from generators.render import write_if_changed

    written = []
    paths = {os.path.normpath(os.path.join(out_dir, REPORT_DIR, "services", f"{name}.html")) for name in keep}
    for path, data in report_pages(_data(state_path, services, edges), os.path.join(out_dir, REPORT_DIR)):
        paths.add(os.path.normpath(path))
        if write_if_changed(path, data):
            written.append(path)
    pages = os.path.join(out_dir, REPORT_DIR, "services")
    for name in sorted(os.listdir(pages)) if os.path.isdir(pages) else []:
        path = os.path.join(pages, name)
        if name.endswith(".html") and os.path.normpath(path) not in paths:
            os.remove(path)
    return sorted(written)



@dataclass(frozen=True)
class ReportWritten:
    """What `nthlayer report` did: the index page, how many services it shows, the files written."""
    index: str
    services: int
    written: list[str]

    def text(self) -> str:
        return (f"{self.index}: {self.services} service{'s' if self.services != 1 else ''}, "
                f"{len(self.written)} file{'s' if len(self.written) != 1 else ''} written")


def report_project(services_dir: str, state: str | None, out_dir: str) -> ReportWritten:
    """The reliability report of every service of ``services_dir`` from the state database ``state``
    (None: the default), written under ``<out_dir>/reports``."""
    from nthlayer.buildsys.project import load_services
    from nthlayer.state.correlation import dependency_edges
    from nthlayer.state.db import state_path

    services = load_services(services_dir)
    written = write_report(state_path(state), services, dependency_edges(services), out_dir)
    return ReportWritten(os.path.join(out_dir, REPORT_DIR, "index.html"), len(services), written)
