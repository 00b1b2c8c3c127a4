"""The correlation reports' content (out/reports/correlations.json and .md): the top suspect deploys per
service and the recent incidents no deploy explains, from the scores in the state database."""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from nthlayer.state.correlation import (BLOCK_ABOVE, DEFAULT_WINDOW_SECONDS, INVESTIGATE_FROM, Correlation,
                                        all_correlations, dependency_edges, score)
from nthlayer.state.db import format_time, from_db

if TYPE_CHECKING:
    from typing import Iterable

    import duckdb

TOP_PER_SERVICE = 5
RECENT_DAYS = 30


def _summary(c: Correlation) -> dict[str, Any]:
    return {
        "deploy": {"service": c.service, "version": c.version, "deployed_at": format_time(c.deployed_at)},
        "incident": {"id": c.incident_key, "service": c.incident_service, "title": c.title,
                     "severity": c.severity, "started_at": format_time(c.started_at),
                     "resolved_at": format_time(c.resolved_at) if c.resolved_at else None},
        "confidence": float(c.confidence), "factors": c.factors, "action": c.action,
    }


def empty_report(window_seconds: int = DEFAULT_WINDOW_SECONDS) -> dict[str, Any]:
    return {"window_hours": window_seconds / 3600, "block_above": float(BLOCK_ABOVE),
            "top_correlated_deploys": {}, "incidents_without_suspect": []}


def correlation_report(con: duckdb.DuckDBPyConnection, edges: Iterable[tuple[str, str]],
                       window_seconds: int = DEFAULT_WINDOW_SECONDS) -> dict[str, Any]:
    """Score everything, then: the top suspects per deployed service, and recent incidents nobody explains."""
    score(con, edges, window_seconds)
    ranked = all_correlations(con)
    by_service: dict[str, list[dict[str, Any]]] = {}
    for c in ranked:
        if c.confidence > 0:
            entries = by_service.setdefault(c.service, [])
            if len(entries) < TOP_PER_SERVICE:
                entries.append(_summary(c))
    suspected = {c.incident_id for c in ranked if c.confidence >= INVESTIGATE_FROM}
    # "Recent" is measured from the newest incident, not the clock, so the report depends on data only.
    unexplained = con.execute(
        "SELECT id, incident_key, service, title, severity, started_at, resolved_at FROM incidents "
        "WHERE started_at >= (SELECT max(started_at) FROM incidents) - to_seconds(?) "
        "ORDER BY started_at DESC, incident_key", [float(RECENT_DAYS * 86400)]).fetchall()
    return {
        **empty_report(window_seconds),
        "top_correlated_deploys": {name: by_service[name] for name in sorted(by_service)},
        "incidents_without_suspect": [
            {"id": row[1], "service": row[2], "title": row[3], "severity": row[4],
             "started_at": format_time(from_db(row[5])),  # type: ignore[arg-type]
             "resolved_at": format_time(from_db(row[6])) if row[6] else None}  # type: ignore[arg-type]
            for row in unexplained if int(row[0]) not in suspected],
    }


def report_markdown(report: dict[str, Any]) -> str:
    lines = ["# Deploy ↔ incident correlations", "",
             f"Window: {report['window_hours']:g} h after each deploy. A confidence above "
             f"{report['block_above']:.0%} blocks further deploys while the incident is open.", ""]
    lines += ["## Top correlated deploys per service", ""]
    if not report["top_correlated_deploys"]:
        lines += ["No deploy is followed by an incident.", ""]
    for service, entries in report["top_correlated_deploys"].items():
        lines += [f"### {service}", "", "| deploy | deployed at | incident | on | confidence | action |",
                  "|---|---|---|---|---|---|"]
        for e in entries:
            d, i = e["deploy"], e["incident"]
            lines.append(f"| {d['version']} | {d['deployed_at']} | {i['id']} {i['title'] or ''} | {i['service']} "
                         f"| {e['confidence']:.0%} | {e['action']} |")
        lines.append("")
    lines += [f"## Incidents of the last {RECENT_DAYS} days without a suspect deploy", ""]
    if not report["incidents_without_suspect"]:
        lines += ["None.", ""]
    for i in report["incidents_without_suspect"]:
        lines.append(f"- {i['started_at']} {i['service']} ({i['severity']}): {i['id']} {i['title'] or ''}".rstrip())
    return "\n".join(lines).rstrip() + "\n"


def write_correlation_reports(state_path: str, services_dir: str, out_dir: str,
                              edges: list[tuple[str, str]] | None = None) -> list[str]:
    """Write <out_dir>/reports/correlations.json and .md (deterministic bytes); return the paths changed.

    ``edges`` (who calls whom) defaults to the graph read from ``services_dir``; the build passes
    the graph of the specs that validated, so one broken spec does not stop the report.
    """
    from generators.render import write_all

    if edges is None:
        from nthlayer.buildsys.project import load_services  # validates every spec: not for the build's task

        edges = dependency_edges(load_services(services_dir)) if os.path.isdir(services_dir) else []
    return write_all(correlation_report_files(state_path, out_dir, edges))


def correlation_report_files(state_path: str, out_dir: str, edges: list[tuple[str, str]]) -> dict[str, bytes]:
    """The two report files and their bytes (``nthlayer build --check`` compares out/ with them)."""
    from generators.render import json_default
    from nthlayer.state.db import connect

    if os.path.exists(state_path):
        with connect(state_path) as con:
            report = correlation_report(con, edges)
    else:  # nothing recorded yet: the empty report, without creating (or even importing) a database
        report = empty_report()
    folder = os.path.join(out_dir, "reports")
    body = json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False, default=json_default) + "\n"
    return {os.path.join(folder, "correlations.json"): body.encode("utf-8"),
            os.path.join(folder, "correlations.md"): report_markdown(report).encode("utf-8")}
