"""All services on one Grafana page, and the provisioning file that loads every NthLayer dashboard.

``out/grafana/overview.json``: one sortable table row per SLO of every service of the build — service,
SLO, team, tier, the error budget left over its window and its status (HEALTHY, WARNING, CRITICAL,
EXHAUSTED by the same thresholds as ``track-budget``) — worst budget first; each service links to its
own dashboard. Team and tier come from the labels of the recorded series, so the overview's bytes
depend only on which services the build has: editing a spec rewrites its dashboard, not this file.

``out/grafana/provisioning/dashboards.yaml``: a Grafana file provider per folder of dashboards
(docs/dashboards.md: where Grafana must find out/, through ``$NTHLAYER_OUT``).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable

from generators.promql import quote
from generators.slo_maths import STATUS_CRITICAL_BELOW_PERCENT, STATUS_WARNING_BELOW_PERCENT

# The SDK (and generators.grafana, which imports it) is imported by the functions that build: the build
# definition reads the file names below without paying for it.
OVERVIEW_FILE = "grafana/overview.json"
PROVISIONING_FILE = "grafana/provisioning/dashboards.yaml"
OVERVIEW_FILES = (OVERVIEW_FILE, PROVISIONING_FILE)
OUT_VARIABLE = "NTHLAYER_OUT"  # where Grafana finds out/ (Grafana expands $VARS in provisioning files)
FOLDER = "NthLayer"
REMAINING = "Budget remaining"
STATUS = "Status"


def budget_query(names: Iterable[str]) -> str:
    """Every SLO's remaining budget for the build's services, with a ``dashboard`` label holding the uid of
    the service's dashboard (its name, or the hashed uid of a name longer than Grafana allows)."""
    from generators.grafana import dashboard_uid

    names = sorted(names)
    matcher = "|".join(names) if names else "^$"
    expr = (f'label_replace(slo:error_budget_remaining:ratio{{service=~{quote(matcher)}}}, '
            f'"dashboard", "$1", "service", "(.*)")')
    for name in names:
        uid = dashboard_uid(name)
        if uid != name:
            expr = f'label_replace({expr}, "dashboard", {quote(uid)}, "service", {quote(name)})'
    return expr


def status_mappings() -> list[Any]:
    """Range mappings from the budget left to track-budget's status words. Grafana's range mappings
    include both ends and the first match wins, so the bands are listed with each boundary caught by the
    band it belongs to first: EXHAUSTED (at or below 0), HEALTHY (from 25 %), WARNING (from 10 %), CRITICAL."""
    from grafana_foundation_sdk.models import dashboard as model

    critical = float(STATUS_CRITICAL_BELOW_PERCENT / 100)
    warning = float(STATUS_WARNING_BELOW_PERCENT / 100)

    def band(low: float | None, high: float | None, text: str, colour: str, index: int) -> Any:
        return model.RangeMap(model.DashboardRangeMapOptions(
            from_val=low, to=high, result=model.ValueMappingResult(text=text, color=colour, index=index)))

    return [band(None, 0.0, "EXHAUSTED", "dark-red", 0),
            band(warning, None, "HEALTHY", "green", 1),
            band(critical, warning, "WARNING", "orange", 2),
            band(0.0, critical, "CRITICAL", "red", 3)]


def overview_dashboard(names: Iterable[str]) -> dict[str, Any]:
    """The overview of the services ``names``, as the JSON document Grafana loads."""
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import prometheus, table
    from grafana_foundation_sdk.builders.common import TableSortByFieldState
    from grafana_foundation_sdk.models import dashboard as model
    from grafana_foundation_sdk.models.common import TableCellDisplayMode
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

    from generators.grafana import DATASOURCE, DATASOURCE_VAR, OVERVIEW_UID, TAG, plain

    expr = budget_query(names)
    colour = dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps([
        model.Threshold(value=None, color="dark-red"),
        model.Threshold(value=1e-12, color="red"),  # EXHAUSTED is "at or below 0"
        model.Threshold(value=float(STATUS_CRITICAL_BELOW_PERCENT / 100), color="orange"),
        model.Threshold(value=float(STATUS_WARNING_BELOW_PERCENT / 100), color="green")])
    link = [dash.DashboardLink("${__data.fields.service} dashboard").type(model.DashboardLinkType.LINK)
            .url("/d/${__data.fields.dashboard}")]
    hide = ["Time", "__name__", "dashboard", "sloth_id", "sloth_service", "sloth_slo"]
    budgets = (table.Panel().title("Error budgets, worst first").datasource(DATASOURCE)
               .description("Every SLO of every service: the share of its error budget left over its window. "
                            "Status: EXHAUSTED at or below 0, CRITICAL below "
                            f"{STATUS_CRITICAL_BELOW_PERCENT}%, WARNING below {STATUS_WARNING_BELOW_PERCENT}%. "
                            "Click a column to sort; click a service to open its dashboard.")
               .with_target(prometheus.Dataquery().expr(expr).instant().format(PromQueryFormat.TABLE)
                            .ref_id("A").datasource(DATASOURCE))
               .with_target(prometheus.Dataquery().expr(expr).instant().format(PromQueryFormat.TABLE)
                            .ref_id("B").datasource(DATASOURCE))
               .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
               .with_transformation(model.DataTransformerConfig(id_val="organize", options={
                   "excludeByName": dict.fromkeys(hide, True),
                   "indexByName": {"service": 0, "slo": 1, "team": 2, "tier": 3, "Value #A": 4, "Value #B": 5},
                   "renameByName": {"Value #A": REMAINING, "Value #B": STATUS, "slo": "SLO", "service": "Service",
                                    "team": "Team", "tier": "Tier"}}))
               .sort_by([TableSortByFieldState().display_name(REMAINING).desc(False)])
               .filterable(True)
               .override_by_name(REMAINING, [
                   model.DynamicConfigValue(id_val="unit", value="percentunit"),
                   model.DynamicConfigValue(id_val="decimals", value=2),
                   model.DynamicConfigValue(id_val="thresholds", value=colour.build()),
                   model.DynamicConfigValue(id_val="custom.cellOptions",
                                            value={"type": TableCellDisplayMode.COLOR_BACKGROUND})])
               .override_by_name(STATUS, [
                   model.DynamicConfigValue(id_val="mappings", value=status_mappings()),
                   model.DynamicConfigValue(id_val="custom.cellOptions",
                                            value={"type": TableCellDisplayMode.COLOR_TEXT})])
               .override_by_name("Service", [
                   model.DynamicConfigValue(id_val="links", value=[item.build() for item in link])])
               .span(24).height(20))
    board = (dash.Dashboard("NthLayer: all services").uid(OVERVIEW_UID)
             .description("Error budgets of every service NthLayer builds, generated by nthlayer")
             .tags([TAG]).time("now-1h", "now").refresh("1m").timezone("browser").readonly()
             .with_variable(dash.DatasourceVariable(DATASOURCE_VAR).label("Prometheus").type("prometheus"))
             .link(dash.DashboardLink("Services").type(model.DashboardLinkType.DASHBOARDS).tags([TAG])
                   .as_dropdown(True))
             .with_panel(budgets))
    built = board.build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return plain(built)


def provisioning_document(names: Iterable[str]) -> dict[str, Any]:
    """Grafana's dashboard provisioning: one file provider for the overview's folder and one per service's
    ``grafana/`` folder (out/ holds other JSON files, which Grafana would try to load as dashboards)."""
    folders = [("nthlayer", "grafana")] + [(f"nthlayer-{name}", f"{name}/grafana") for name in sorted(names)]
    return {"apiVersion": 1, "providers": [
        {"name": provider, "orgId": 1, "folder": FOLDER, "type": "file", "disableDeletion": False,
         "allowUiUpdates": False, "updateIntervalSeconds": 30,
         "options": {"path": f"${OUT_VARIABLE}/{folder}", "foldersFromFilesStructure": False}}
        for provider, folder in folders]}


def overview_files(names: Iterable[str], out_dir: str, sources: str) -> dict[str, bytes]:
    """``{out/grafana/overview.json, out/grafana/provisioning/dashboards.yaml: bytes}`` for the services
    ``names``; ``sources`` names the specs in the files' do-not-edit header (``services/*.yaml``)."""
    from generators.grafana import dashboard_bytes
    from generators.render import yaml_bytes

    names = sorted(names)
    return {f"{out_dir}/{OVERVIEW_FILE}": dashboard_bytes(overview_dashboard(names), sources),
            f"{out_dir}/{PROVISIONING_FILE}": yaml_bytes(provisioning_document(names), sources)}


__all__ = ["overview_dashboard", "overview_files", "provisioning_document", "budget_query", "status_mappings",
           "OVERVIEW_FILE", "PROVISIONING_FILE", "OVERVIEW_FILES", "OUT_VARIABLE"]
