"""The reliability report as HTML: ``index.html`` and ``services/<service>.html``, from report data.

Pure: data in, bytes out (no clock, no I/O but reading this package's assets). Each page is self-contained
and works offline: the charting library (uPlot, vendored in ``report_assets/``, see its LICENSE and
VERSION notes there), the stylesheet, the drawing script and the data are inlined. Every string that comes
from a user (service names, versions, commits, incident titles and keys, gate reasons) is HTML-escaped in
markup, and the chart data is JSON with ``<``, ``>`` and ``&`` escaped, so no value can close the script
element that holds it. Same data → same bytes: the only time shown is the data's latest timestamp.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Any, Iterable, Iterator

from generators.report_cost import CostFigures, service_cost_section, team_cost_section

ASSETS = Path(__file__).resolve().parent / "report_assets"
UPLOT_VERSION = "1.6.32"
# Okabe & Ito's colour-blind-safe palette; lines also differ by width and dash.
PALETTE = {"window": "#0072B2", "7d": "#E69F00", "1d": "#009E73", "incident": "#D55E00", "deploy": "#CC79A7",
           "gate": "#555555", "text": "#1b1b1b", "grid": "#e6e6e6"}
LINES = (("window", "SLO window", 2.5, None), ("7d", "7 days", 1.5, [8, 4]), ("1d", "1 day", 1.5, [2, 3]))
INDEX_POINTS = 180  # an index chart: the SLO window's line, at most this many points (a service page: all)
TABLE_ROWS = 50  # deploys and incidents listed on a service page (the newest)


@dataclass(frozen=True)
class SLOHistory:
    name: str
    objective: Decimal
    window_days: int
    times: list[int]  # unix seconds, ascending
    remaining: dict[str, list[float | None]]  # range name ("window", "1d", "7d", "28d", "30d") → percent
    latest: dict[str, Decimal | None]  # the newest point's figures
    status: str


@dataclass(frozen=True)
class Deploy:
    at: int
    version: str
    commit: str | None


@dataclass(frozen=True)
class Incident:
    key: str
    title: str | None
    severity: str
    started: int
    resolved: int | None


@dataclass(frozen=True)
class Gate:
    result: str  # approve | block | unknown
    reasons: list[str]
    warnings: list[str]


@dataclass(frozen=True)
class ServiceReport:
    name: str
    tier: int
    tier_name: str
    team: str
    block_below: Decimal | None  # the gate blocks below this much budget left (percent)
    slos: list[SLOHistory]
    gate: Gate
    deploys: list[Deploy] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    correlated: list[dict[str, Any]] = field(default_factory=list)  # the correlation report's summaries
    paging_problem: str | None = None  # why its pages reach nobody; None: routed to PagerDuty
    cost: CostFigures | None = None  # the last 30 days' incidents, pages, budget spent, series (report_cost)


@dataclass(frozen=True)
class ReportData:
    services: list[ServiceReport]
    latest: int | None  # the newest timestamp of the data (history, deploys, incidents)


@lru_cache(maxsize=None)
def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def _time(ts: int | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{value:.2f} %"


def _objective(value: Decimal) -> str:
    return f"{format((value * 100).normalize(), 'f')} %"


def _json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_VERDICT = {"approve": "APPROVE", "block": "BLOCK", "unknown": "CANNOT DECIDE"}


def _tag(css: str, text: str) -> str:
    return f'<span class="tag {escape(css)}">{escape(text)}</span>'


def _worst(service: ServiceReport) -> SLOHistory | None:
    known = [s for s in service.slos if s.latest.get("window") is not None]
    return min(known, key=lambda s: (s.latest["window"], s.name)) if known else None


def _chart(slo: SLOHistory, service: ServiceReport, height: int, every: int, legend: bool,
           lines_shown: tuple[tuple[str, str, float, list[int] | None], ...] = LINES) -> dict[str, Any]:
    """One chart's data: every ``every``-th point (and always the newest), the service's deploys and
    incidents, the gate's level."""
    idx = list(range(0, len(slo.times), every))
    if idx and idx[-1] != len(slo.times) - 1:
        idx.append(len(slo.times) - 1)
    times = slo.times if every == 1 else [slo.times[i] for i in idx]
    lines = []
    for key, label, width, dash in lines_shown:
        values = slo.remaining.get(key) or [None] * len(slo.times)
        lines.append({"label": label, "color": PALETTE[key], "width": width, "dash": dash,
                      "values": values if every == 1 else [values[i] for i in idx]})
    newest = slo.times[-1]  # an open incident's band runs to the end of the chart
    return {"x": times, "x_min": slo.times[0], "x_max": newest, "lines": lines, "height": height, "legend": legend,
            "block_below": None if service.block_below is None else float(service.block_below),
            "deploys": [{"at": d.at, "version": d.version} for d in service.deploys],
            "incidents": [{"from": i.started, "to": newest if i.resolved is None else i.resolved, "key": i.key}
                          for i in service.incidents]}


def _page(title: str, body: str, charts: dict[str, Any]) -> bytes:
    """A whole page; the charting library, the drawing script and the data only where there is a chart
    (a thousand services without history yet: a thousand small pages, not 60 MB of copies of uPlot)."""
    scripts = ""
    if charts:
        data = {"charts": charts, "palette": PALETTE}
        scripts = (f"<script type=\"application/json\" id=\"nthlayer-data\">{_json(data)}</script>\n"
                   f"<script>/* uPlot {UPLOT_VERSION}, MIT licence (report_assets/uPlot.LICENSE) */\n"
                   f"{_asset('uPlot.iife.min.js')}</script>\n<script>\n{_asset('report.js')}</script>\n")
    html = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"generator\" content=\"nthlayer report\">\n"
        f"<title>{escape(title)}</title>\n"
        f"<style>\n{_asset('uPlot.min.css') if charts else ''}\n{_asset('report.css')}</style>\n</head>\n"
        f"<body>\n{body}\n{scripts}</body>\n</html>\n")
    return html.encode("utf-8")


def _legend() -> str:
    items = "".join(f'<span class="swatch" style="background:{PALETTE[key]}"></span>{escape(label)}'
                    for key, label, _, _ in LINES)
    return (f'<p class="legend-note">Budget left over:{items}'
            f'<span class="swatch" style="background:{PALETTE["incident"]};opacity:.4"></span>incident'
            f'<span class="swatch" style="background:{PALETTE["deploy"]}"></span>deploy'
            f'<span class="swatch" style="border-top:2px dashed {PALETTE["gate"]};height:0"></span>'
            "gate blocks below</p>")


def _gate_cell(gate: Gate) -> str:
    first = f"<br><small>{escape(gate.reasons[0])}</small>" if gate.reasons else ""
    return _tag(gate.result, _VERDICT[gate.result]) + first


def _correlated_rows(entries: Iterable[dict[str, Any]]) -> str:
    rows = []
    for e in entries:
        d, i = e["deploy"], e["incident"]
        title = f" {i['title']}" if i.get("title") else ""
        rows.append(f"<tr><td>{escape(d['service'])}</td><td>{escape(d['version'])}</td>"
                    f"<td>{escape(d['deployed_at'])}</td><td>{escape(i['id'] + title)}</td>"
                    f"<td>{escape(i['service'])}</td><td class=\"num\">{e['confidence']:.0%}</td>"
                    f"<td>{escape(e['action'])}</td></tr>")
    if not rows:
        return '<p class="empty">No deploy is followed by an incident.</p>'
    return ("<table><thead><tr><th>service</th><th>deploy</th><th>deployed at</th><th>incident</th><th>on</th>"
            "<th>confidence</th><th>action</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def render_index(data: ReportData) -> bytes:
    """The overview: every service's status, gate verdict and budget history; correlated deploys;
    services whose pages reach nobody."""
    rows, sections, charts = [], [], {}
    for service in data.services:
        worst = _worst(service)
        link = f'<a href="services/{escape(service.name)}.html">{escape(service.name)}</a>'
        rows.append(
            f"<tr><td>{link}</td><td>{service.tier} ({escape(service.tier_name)})</td><td>{escape(service.team)}</td>"
            f"<td>{escape(worst.name) if worst else '—'}</td>"
            f"<td class=\"num\">{_pct(worst.latest['window'] if worst else None)}</td>"
            f"<td>{_tag((worst.status if worst else 'unknown').lower(), worst.status if worst else 'NO DATA')}</td>"
            f"<td class=\"gate\">{_gate_cell(service.gate)}</td>"
            f"<td>{'PagerDuty' if service.paging_problem is None else 'none'}</td></tr>")
        parts = [f'<h3 id="svc-{escape(service.name)}">{link}</h3>']
        for slo in service.slos:
            if not slo.times:
                parts.append(f'<p class="empty">{escape(slo.name)}: no budget history recorded.</p>')
                continue
            chart_id = f"{service.name}/{slo.name}"
            charts[chart_id] = _chart(slo, service, 150, max(1, -(-len(slo.times) // INDEX_POINTS)), False,
                                      LINES[:1])
            parts.append(f"<div>{escape(slo.name)} ({_objective(slo.objective)} over {slo.window_days}d)</div>"
                         f'<div class="chart" data-chart="{escape(chart_id)}"></div>')
        sections.append("\n".join(parts))
    unrouted = [s for s in data.services if s.paging_problem is not None]
    unrouted_html = ("<ul>" + "".join(f"<li><a href=\"services/{escape(s.name)}.html\">{escape(s.name)}</a>: "
                                      f"{escape(s.paging_problem or '')}</li>" for s in unrouted) + "</ul>"
                     if unrouted else '<p class="empty">Every service pages someone on PagerDuty.</p>')
    correlated = sorted((e for s in data.services for e in s.correlated),
                        key=lambda e: (-e["confidence"], e["deploy"]["deployed_at"], e["deploy"]["service"]))
    body = (
        "<h1>Reliability report</h1>\n"
        f'<p class="meta">{len(data.services)} service{"s" if len(data.services) != 1 else ""}; '
        f"data up to {_time(data.latest)}.</p>\n"
        "<h2>Status and deploy gate</h2>\n<table><thead><tr><th>service</th><th>tier</th><th>team</th>"
        "<th>worst SLO</th><th>budget left</th><th>status</th><th>gate</th><th>paging</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>\n"
        + team_cost_section((s.team, s.cost) for s in data.services if s.cost is not None) + "\n"
        "<h2>Top correlated deploys</h2>\n" + _correlated_rows(correlated[:20]) + "\n"
        "<h2>Services without PagerDuty routing</h2>\n" + unrouted_html + "\n"
        "<h2>Budget history</h2>\n" + _legend() + "\n" + "\n".join(sections))
    return _page("Reliability report", body, charts)


def render_service(service: ServiceReport, latest: int | None) -> bytes:
    """One service's page: gate verdict and reasons, per-SLO figures and burn-down charts with its
    deploys and incidents, its correlated deploys."""
    gate = service.gate
    reasons = "".join(f"<li>{escape(r)}</li>" for r in gate.reasons)
    warnings = "".join(f"<li>warning: {escape(w)}</li>" for w in gate.warnings)
    status_rows, charts, chart_html = [], {}, []
    for slo in service.slos:
        cells = "".join(f'<td class="num">{_pct(slo.latest.get(k))}</td>' for k in ("window", "1d", "7d", "28d", "30d"))
        status_rows.append(f"<tr><td>{escape(slo.name)}</td><td>{_objective(slo.objective)}</td>"
                           f"<td>{slo.window_days}d</td>{cells}<td>{_tag(slo.status.lower(), slo.status)}</td></tr>")
        chart_html.append(f"<h3>{escape(slo.name)}: {_objective(slo.objective)} over {slo.window_days} days</h3>")
        if slo.times:
            charts[slo.name] = _chart(slo, service, 260, 1, True)
            chart_html.append(f'<div class="chart" data-chart="{escape(slo.name)}"></div>')
        else:
            chart_html.append('<p class="empty">No budget history recorded (run nthlayer track-budget).</p>')
    deploys = "".join(f"<tr><td>{_time(d.at)}</td><td>{escape(d.version)}</td><td>{escape(d.commit or '')}</td></tr>"
                      for d in sorted(service.deploys, key=lambda d: (-d.at, d.version))[:TABLE_ROWS])
    incidents = "".join(
        f"<tr><td>{_time(i.started)}</td><td>{_time(i.resolved) if i.resolved is not None else 'open'}</td>"
        f"<td>{escape(i.key)}</td><td>{escape(i.severity)}</td><td>{escape(i.title or '')}</td></tr>"
        for i in sorted(service.incidents, key=lambda i: (-i.started, i.key))[:TABLE_ROWS])
    paging = ("PagerDuty" if service.paging_problem is None
              else f"none: {escape(service.paging_problem)}")
    body = (
        f'<p><a href="../index.html">← all services</a></p>\n<h1>{escape(service.name)}</h1>\n'
        f'<p class="meta">tier {service.tier} ({escape(service.tier_name)}), team {escape(service.team)}; '
        f"pages: {paging}; data up to {_time(latest)}.</p>\n"
        f"<h2>Deploy gate: {_tag(gate.result, _VERDICT[gate.result])}</h2>\n<ul class=\"reasons\">{reasons}{warnings}</ul>\n"
        "<h2>Error budgets</h2>\n<table><thead><tr><th>SLO</th><th>objective</th><th>window</th>"
        "<th>left (window)</th><th>1d</th><th>7d</th><th>28d</th><th>30d</th><th>status</th></tr></thead><tbody>"
        + "".join(status_rows) + "</tbody></table>\n" + _legend() + "\n" + "\n".join(chart_html) + "\n"
        + (service_cost_section(service.cost) + "\n" if service.cost is not None else "")
        + "<h2>Top correlated deploys</h2>\n" + _correlated_rows(service.correlated) + "\n"
        "<h2>Deploys</h2>\n" + ("<table><thead><tr><th>deployed at</th><th>version</th><th>commit</th></tr></thead>"
                                f"<tbody>{deploys}</tbody></table>" if deploys else '<p class="empty">None recorded.</p>')
        + "\n<h2>Incidents</h2>\n" + (
            "<table><thead><tr><th>started</th><th>resolved</th><th>incident</th><th>severity</th><th>title</th></tr>"
            f"</thead><tbody>{incidents}</tbody></table>" if incidents else '<p class="empty">None recorded.</p>'))
    return _page(f"{service.name} — reliability report", body, charts)


def report_pages(data: ReportData, directory: str) -> Iterator[tuple[str, bytes]]:
    """Every page of the report under ``directory``, one (path, bytes) at a time."""
    yield f"{directory}/index.html", render_index(data)
    for service in data.services:
        yield f"{directory}/services/{service.name}.html", render_service(service, data.latest)


def report_files(data: ReportData, directory: str) -> dict[str, bytes]:
    """Every page of the report under ``directory`` (path → bytes)."""
    return dict(report_pages(data, directory))
