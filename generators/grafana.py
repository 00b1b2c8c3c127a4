"""A Grafana dashboard per service, built with grafana-foundation-sdk (Grafana's own schemas, as Python).

``out/<service>/grafana/dashboard.json`` holds:

- a row per SLO: its objective, the budget left over the SLO window, burn rates over the alerting
  windows with each burn alert's factor drawn as a threshold line (generators.slo_maths, the numbers the
  alerts fire at), the SLI over time against its objective, and the error-budget burn-down over the
  whole window with the budget alerts' and the deploy gate's lines;
- a row per technology dependency: the signals its catalog alerts watch (generators.grafana_signals),
  scoped to the instance with the alerts' own scoping, each alert's threshold drawn, its runbook linked;
- annotations: process restarts of the service's scrape job (rollouts; docs/dashboards.md says why this
  series) and the service's firing alerts;
- a ``datasource`` variable (type prometheus) that every query uses, so the file fits any Grafana.

The SDK is imported here only, and this module only by the dashboard kind: ``nthlayer --help`` and a
no-op build never load it. Every expression is parsed and its series checked before the file is
written (generators.grafana_check).
"""
from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any, Mapping

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode

from generators.catalog import Technology as CatalogTechnology
from generators.grafana_signals import rule_signals
from generators.model import SLO, Service
from generators.model import Technology as Dependency
from generators.promql import selector
from generators.promql_scope import scope
from generators.slo_maths import burn_factor, error_budget
from generators.slo_rules import enabled_budget_alerts, enabled_burn_windows, num, recorded
from generators.tech_alerts import dependency_rules, runbook_base

DASHBOARD_FILE = "grafana/dashboard.json"
UID_MAX = 40  # Grafana refuses longer dashboard uids
OVERVIEW_UID = "nthlayer_overview"  # '_' never occurs in a service name (a DNS label): no clash
TAG = "nthlayer"
DATASOURCE_VAR = "datasource"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${" + DATASOURCE_VAR + "}")
SEVERITY_COLOURS = {"page": "red", "critical": "red", "ticket": "orange", "warning": "orange", "info": "blue"}
# Restarts of the service's processes, from the client libraries' standard process metric.
RESTART_METRIC = "process_start_time_seconds"
RESTART_WINDOW = "2m"


def dashboard_uid(service_name: str) -> str:
    """The service's dashboard uid: its name when that fits Grafana's 40 characters, else a prefix of it
    and a hash of the whole (service names are DNS labels of up to 63 characters)."""
    if len(service_name) <= UID_MAX:
        return service_name
    digest = hashlib.sha256(service_name.encode()).hexdigest()[:10]
    return f"{service_name[:UID_MAX - 11]}-{digest}"


class PrometheusAnnotation(model.AnnotationQuery):
    """The SDK's annotation query plus the Prometheus datasource's own fields (its schema lists only
    ``expr``): the step, and how the annotation's title and tags are read from the series' labels."""

    def __init__(self, name: str, expr: str, colour: str, title: str, tags: list[str], step: str = "60s") -> None:
        super().__init__(name=name, datasource=DATASOURCE, enable=True, hide=False, icon_color=colour,
                         expr=expr, built_in=0)
        self.title_format, self.tag_keys, self.step = title, tags, step

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        payload.update({"step": self.step, "titleFormat": self.title_format, "tagKeys": ",".join(self.tag_keys),
                        "useValueForTime": False})
        return payload


class _Annotation(dash.AnnotationQuery):
    def __init__(self, built: model.AnnotationQuery) -> None:
        super().__init__()
        self._internal = built


def _query(expr: str, legend: str, ref: str, instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    return query.instant() if instant else query.range()


def _steps(base: str, lines: list[tuple[Decimal, str]]) -> dash.ThresholdsConfig:
    steps = [model.Threshold(value=None, color=base)]
    for value, colour in sorted(lines, key=lambda line: line[0]):
        if any(step.value == float(value) for step in steps):
            continue  # one line per value (a warning and a critical at one threshold: the first kept)
        steps.append(model.Threshold(value=float(value), color=colour))
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)


def _lines() -> GraphThresholdsStyleConfig:
    return GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED)


def _link(title: str, url: str) -> dash.DashboardLink:
    return dash.DashboardLink(title).type(model.DashboardLinkType.LINK).url(url).target_blank(True)


def slo_row(service: Service, slo: SLO) -> tuple[dash.Row, list[Any]]:
    """The row of one SLO and its panels."""
    budget = num(error_budget(slo.objective))
    links = [_link(f"{service.name} runbook", service.runbook_url)] if service.runbook_url else []
    objective = (stat.Panel().title("Objective").description(slo.description or f"{slo.kind} SLO over {slo.window}")
                 .datasource(DATASOURCE)
                 .with_target(_query(recorded("slo:objective:ratio", service, slo), slo.name, "A", instant=True))
                 .unit("percentunit").decimals(3).span(4).height(8).links(links))
    budget_lines = [(Decimal(percent) / 100, SEVERITY_COLOURS[severity])
                    for percent, severity in enabled_budget_alerts(service, slo)]
    ordered = sorted(budget_lines)
    # Below the lowest alert line the stat takes that alert's colour; above the highest, green.
    shifted = [(value, ordered[i + 1][1] if i + 1 < len(ordered) else "green") for i, (value, _) in enumerate(ordered)]
    remaining = (stat.Panel().title(f"Error budget remaining ({slo.window})")
                 .description(f"Share of the {slo.window} error budget not yet spent (1 - objective = {budget}).")
                 .datasource(DATASOURCE)
                 .with_target(_query(recorded("slo:error_budget_remaining:ratio", service, slo), slo.name, "A",
                                     instant=True))
                 .unit("percentunit").decimals(1).span(4).height(8)
                 .thresholds(_steps(ordered[0][1] if ordered else "green", shifted)))
    sli = (timeseries.Panel().title("SLI (good share)").datasource(DATASOURCE)
           .description(f"Share of good {_unit(slo)} over 5m and 1h, against the objective {num(slo.objective)}.")
           .with_target(_query(f"1 - {recorded('slo:sli_error:ratio_rate5m', service, slo)}", "5m", "A"))
           .with_target(_query(f"1 - {recorded('slo:sli_error:ratio_rate1h', service, slo)}", "1h", "B"))
           .unit("percentunit").span(16).height(8).max(1)
           .thresholds(_steps("transparent", [(slo.objective, "red")])).thresholds_style(_lines()))
    burn = timeseries.Panel().title("Burn rate on the alert windows").datasource(DATASOURCE)
    burn_lines: list[tuple[Decimal, str]] = []
    windows: list[str] = []
    for window, severity in enabled_burn_windows(service, slo):
        burn_lines.append((burn_factor(window, slo.window_days), SEVERITY_COLOURS[severity]))
        windows += [w for w in (window.long, window.short) if w not in windows]
    for index, window in enumerate(windows):
        burn = burn.with_target(_query(f"{recorded(f'slo:sli_error:ratio_rate{window}', service, slo)} / {budget}",
                                       window, chr(ord("A") + index)))
    burn = (burn.description("Error ratio over each alert window divided by the error budget; dashed lines: the "
                             "burn-rate factors at which the page (red) and ticket (orange) alerts fire, when both "
                             "windows of a pair are above.")
            .unit("x").span(12).height(8).min(0)
            .thresholds(_steps("transparent", burn_lines)).thresholds_style(_lines()))
    gate = service.tier.gate_block_below_percent
    down_lines = budget_lines + ([(gate / 100, "purple")] if gate > 0 else [])
    burndown = (timeseries.Panel().title(f"Error budget burn-down ({slo.window})").datasource(DATASOURCE)
                .description(f"Budget left over the {slo.window} window; dashed lines: the budget alerts, and "
                             f"(purple) where the deploy gate blocks tier {service.tier.number} deploys.")
                .with_target(_query(recorded("slo:error_budget_remaining:ratio", service, slo), "remaining", "A"))
                .time_from(slo.window).unit("percentunit").span(12).height(8).max(1)
                .thresholds(_steps("transparent", down_lines)).thresholds_style(_lines()))
    title = f"SLO {slo.name}: {num(slo.objective * 100)}% over {slo.window}"
    return dash.Row(title), [objective, remaining, sli, burn, burndown]


def _unit(slo: SLO) -> str:
    return {"threshold": "time slices", "events": "events", "ratio_query": "events"}.get(slo.kind, "requests")


def dependency_row(service: Service, dependency: Dependency, tech: CatalogTechnology) -> dash.Row:
    """A collapsed row for one technology dependency: a panel per signal its catalog alerts watch."""
    base = runbook_base(service, dependency, None)
    panels: dict[str, dict[str, Any]] = {}
    for rule in dependency_rules(tech, service.tier, dependency):
        for signal in rule_signals(rule["expr"]):
            panel = panels.setdefault(signal.expr, {"rules": [], "lines": [], "series": []})
            panel["rules"].append(rule)
            if signal.value is not None:
                panel["lines"].append((signal.value, SEVERITY_COLOURS[rule["severity"]]))
            if signal.series is not None and signal.series not in panel["series"]:
                panel["series"].append(signal.series)
    row = dash.Row(f"{tech.data['display_name']} {dependency.name} ({dependency.type})").collapsed(True)
    for expr, panel in panels.items():
        rules = panel["rules"]
        names = [rule["name"] for rule in rules]
        built = (timeseries.Panel().title(" / ".join(names)).datasource(DATASOURCE)
                 .description(_panel_text(rules))
                 .with_target(_query(scope(expr, dependency.selector), "{{instance}}", "A"))
                 .span(8).height(7))
        for index, series in enumerate(panel["series"]):
            built = built.with_target(_query(scope(series, dependency.selector), "threshold {{instance}}",
                                             chr(ord("B") + index)))
        if panel["lines"]:
            built = built.thresholds(_steps("transparent", panel["lines"])).thresholds_style(_lines())
        if base:
            built = built.links([_link(f"Runbook: {name}", f"{base}/{name}") for name in names])
        row = row.with_panel(built)
    return row


def _panel_text(rules: list[Mapping[str, Any]]) -> str:
    conditions = "; ".join(f"{rule['name']} ({rule['severity']}): `{' '.join(rule['expr'].split())}`" for rule in rules)
    return f"What the alerts watch. {conditions}"


def _annotations(service: Service) -> list[dash.AnnotationQuery]:
    restarts = (f"sum by (job) (changes({selector(RESTART_METRIC, (('job', '=', service.name),))}"
                f"[{RESTART_WINDOW}])) > 0")
    alerts = selector("ALERTS", (("alertstate", "=", "firing"), ("service", "=", service.name)))
    return [
        _Annotation(PrometheusAnnotation("Rollouts (process restarts)", restarts, "blue",
                                         "restart of {{job}}", ["job"])),
        _Annotation(PrometheusAnnotation("Firing alerts", alerts, "red", "{{alertname}} ({{severity}})",
                                         ["alertname", "severity", "slo"])),
    ]


def service_dashboard(service: Service, catalog: Mapping[str, CatalogTechnology]) -> dict[str, Any]:
    """The dashboard of one service, as the JSON document Grafana loads."""
    board = (dash.Dashboard(f"{service.name} (tier {service.tier.number} {service.tier.name}, team {service.team})")
             .uid(dashboard_uid(service.name))
             .description(service.description or f"Reliability of {service.name}, generated by nthlayer")
             .tags([TAG, f"team:{service.team}", f"tier:{service.tier.number}"])
             .time("now-6h", "now").refresh("1m").timezone("browser").readonly()
             .tooltip(model.DashboardCursorSync.CROSSHAIR)
             .with_variable(dash.DatasourceVariable(DATASOURCE_VAR).label("Prometheus").type("prometheus"))
             .annotations(_annotations(service))
             .link(dash.DashboardLink("All services").type(model.DashboardLinkType.LINK).url(f"/d/{OVERVIEW_UID}")))
    if service.runbook_url:
        board = board.link(_link("Runbook", service.runbook_url))
    for slo in service.slos:
        row, panels = slo_row(service, slo)
        board = board.with_row(row)
        for panel in panels:
            board = board.with_panel(panel)
    for dependency in service.technologies:
        board = board.with_row(dependency_row(service, dependency, catalog[dependency.type]))
    built = board.build()
    _number_panels(built)
    return plain(built)


def plain(value: Any) -> Any:
    """An SDK object tree as JSON data (what the SDK's JSONEncoder writes, without a text round trip)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:  # most leaves: no lookup
        return value
    to_json = getattr(value, "to_json", None)
    if to_json is not None:
        return plain(to_json())
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def _number_panels(built: model.Dashboard) -> None:
    """Panel ids in layout order (Grafana keys panel state, links and the panel editor on them)."""
    next_id = 1
    for panel in built.panels or []:
        panel.id_val = next_id
        next_id += 1
        for inner in getattr(panel, "panels", None) or []:
            inner.id_val = next_id
            next_id += 1


_COMPACT = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def dashboard_bytes(document: Mapping[str, Any], source: str | None) -> bytes:
    """Stable bytes: sorted keys (the ``$comment`` naming the spec sorts first), one top-level key per line
    and one panel per line (a row's panels each on their own line too), so a diff names the panels that
    changed. Each line is written by json's C encoder: an indented file goes through its Python encoder,
    five times slower on a dashboard of a hundred panels."""
    body = dict(document)
    if source is not None:
        body["$comment"] = f"Generated by nthlayer from {source} — do not edit."
    lines = ["{"]
    for index, key in enumerate(sorted(body)):
        comma = "," if index < len(body) - 1 else ""
        if key == "panels" and body[key]:
            lines.append('"panels":[')
            lines += _panel_lines(body[key])
            lines.append(f"]{comma}")
        else:
            lines.append(f"{_COMPACT.encode(key)}:{_COMPACT.encode(body[key])}{comma}")
    lines.append("}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _panel_lines(panels: list[Mapping[str, Any]]) -> list[str]:
    lines = []
    for index, panel in enumerate(panels):
        comma = "," if index < len(panels) - 1 else ""
        inner = panel.get("panels")
        if not inner:
            lines.append(_COMPACT.encode(panel) + comma)
            continue
        head = _COMPACT.encode({key: value for key, value in panel.items() if key != "panels"})
        # A row: its own keys (sorted) on one line, then "panels" last, one panel per line.
        lines.append(f'{head[:-1]}{"," if len(head) > 2 else ""}"panels":[')
        lines += _panel_lines(inner)
        lines.append(f"]}}{comma}")
    return lines


# The Service fields service_dashboard and its check read (generators.shapes templates on these alone).
READS = frozenset({"name", "source", "team", "tier", "description", "runbook_url", "slos", "technologies", "sli",
                   "labels"})


def dashboard_documents(service: Service, catalog: Mapping[str, CatalogTechnology]) -> dict[str, tuple[Any, bool]]:
    """``{"dashboard.json": (document, False)}``, its expressions checked (generators.grafana_check): a
    dashboard that would read a series nothing provides is a bug of this module, never written."""
    from generators.grafana_check import series_problems

    document = service_dashboard(service, catalog)
    problems = series_problems(document, service, catalog)
    if problems:
        raise RuntimeError(f"{service.source}: the generated dashboard is wrong:\n" + "\n".join(problems))
    return {"dashboard.json": (document, False)}


def render_dashboards(files: Mapping[str, tuple[Any, bool]], source: str, out_dir: str) -> dict[str, bytes]:
    """Dashboard documents as files under ``out_dir`` (generators.shapes' renderer for this kind)."""
    return {f"{out_dir}/{name}": dashboard_bytes(document, source) for name, (document, _multi) in files.items()}


def dashboard_files(service: Service, catalog: Mapping[str, CatalogTechnology], out_dir: str) -> dict[str, bytes]:
    """``{<out_dir>/dashboard.json: bytes}`` generated directly (the build templates by shape)."""
    return render_dashboards(dashboard_documents(service, catalog), service.source, out_dir)


def check_standin(service: Service, catalog: Mapping[str, CatalogTechnology]) -> None:
    """Raise unless each dependency's selector is added to its signals by placing values alone (as
    generators.tech_alerts.check_standin asks of the alerts), so a stand-in's panels equal the real ones."""
    from generators.promql_scope import scoped_by_position

    for dep in service.technologies:
        shape = tuple((label, op) for label, op, _value in dep.selector)
        for rule in dependency_rules(catalog[dep.type], service.tier, dep):
            for signal in rule_signals(rule["expr"]):
                for expr in (signal.expr, signal.series):
                    if expr is not None and not scoped_by_position(expr, shape):
                        raise ValueError(f"{rule['name']}: its own matchers meet the selector's labels")


__all__ = ["service_dashboard", "dashboard_documents", "render_dashboards", "dashboard_files", "check_standin",
           "READS", "dashboard_uid", "dashboard_bytes", "plain", "slo_row", "dependency_row", "DASHBOARD_FILE",
           "OVERVIEW_UID", "TAG", "DATASOURCE_VAR", "RESTART_METRIC", "UID_MAX"]
