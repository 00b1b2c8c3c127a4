"""Grafana dashboards: goldens, what each panel draws against what the alerts fire at, every expression's
series, stable uids and bytes, the datasource variable, and the SDK's own schema types.

Goldens: whole files, reviewed as diffs (NTHLAYER_UPDATE_GOLDEN=1). The example services' goldens hold
their SLO rows (built without their technology rows, which come from the real catalog and would churn
with it, as the technology alerts' goldens avoid); the technology rows have a golden of their own on
the fixture catalog (tests/fixtures/catalog, the technology alerts' golden spec), and the examples'
real-catalog rows are judged structurally below, against the alert rule files built beside them.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from generators import grafana
from generators.catalog import load_technologies
from generators.grafana_check import expressions, series_problems
from generators.grafana_overview import budget_query, overview_files, status_mappings
from generators.grafana_signals import Signal, rule_signals
from generators.model import Service
from generators.promql_scope import matchers_of, metric_name, parse, selectors
from generators.render import write_all
from generators.slo_maths import burn_factor, error_budget
from generators.slo_rules import enabled_burn_windows, slo_rule_files
from generators.spec import load_spec
from generators.tech_alerts import service_alert_files
from tests.conftest import ROOT, UPDATE_GOLDEN

GOLDEN = ROOT / "tests" / "golden" / "grafana"
FIXTURE_CATALOG = str(ROOT / "tests" / "fixtures" / "catalog")
FIXTURE_SPEC = ROOT / "tests" / "golden" / "tech-alerts" / "services" / "payment-api.yaml"
EXAMPLES = sorted((ROOT / "services").glob("*.yaml"))


def _service(path: Path) -> Service:
    return load_spec(os.path.relpath(path, ROOT)).service if path.is_relative_to(ROOT) else load_spec(str(path)).service


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Service]]:
    """The example services built as the build writes them: rule files, alerts, dashboards, overview."""
    out = tmp_path_factory.mktemp("grafana") / "out"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        services = [load_spec(f"services/{path.name}").service for path in EXAMPLES]
        files: dict[str, bytes] = {}
        for service in services:
            catalog = load_technologies("rules_catalog", service.technology_types)
            base = f"{out}/{service.name}"
            files.update(slo_rule_files(service, f"{base}/prometheus"))
            files.update(service_alert_files(service, catalog, f"{base}/prometheus"))
            files.update(grafana.dashboard_files(service, catalog, f"{base}/grafana"))
        files.update(overview_files([s.name for s in services], str(out), "services/*.yaml"))
        write_all(files)
    finally:
        os.chdir(cwd)
    return out, services


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_bytes())


def _golden(rel: str, data: bytes) -> None:
    path = GOLDEN / rel
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert data.decode() == path.read_text(encoding="utf-8"), rel


@pytest.mark.parametrize("spec", [p.name for p in EXAMPLES])
def test_example_slo_rows_match_golden(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    service = dataclasses.replace(load_spec(f"services/{spec}").service, technologies=())
    files = grafana.dashboard_files(service, {}, "out")
    _golden(f"examples/{service.name}/dashboard.json", files["out/dashboard.json"])


def test_technology_rows_match_golden_on_the_fixture_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    service = load_spec("tests/golden/tech-alerts/services/payment-api.yaml").service
    catalog = load_technologies(FIXTURE_CATALOG, service.technology_types)
    files = grafana.dashboard_files(service, catalog, "out")
    _golden("fixture/payment-api/dashboard.json", files["out/dashboard.json"])


def test_overview_and_provisioning_match_golden(examples: tuple[Path, list[Service]]) -> None:
    out, _ = examples
    _golden("examples/overview.json", (out / "grafana" / "overview.json").read_bytes())
    _golden("examples/dashboards.yaml", (out / "grafana" / "provisioning" / "dashboards.yaml").read_bytes())


def _rows(document: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(row, its panels): a collapsed row holds its panels, an open one is followed by them."""
    rows: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for panel in document["panels"]:
        if panel["type"] == "row":
            rows.append((panel, list(panel["panels"])))
        else:
            rows[-1][1].append(panel)
    return rows


def _alerts(out: Path, service: str) -> list[dict[str, Any]]:
    groups = []
    for name in ("slo.rules.yaml", "alerts.rules.yaml"):
        path = out / service / "prometheus" / name
        if path.exists():
            groups += yaml.safe_load(path.read_text())["groups"] or []
    return groups


def _number_after(expr: str, op: str) -> Decimal:
    return Decimal(expr.split(f" {op} ", 1)[1].split()[0].rstrip(")"))


def _check_slo_rows(service: Service, document: dict[str, Any], groups: dict[str, dict[str, Any]]) -> int:
    """Burn-rate lines: each burn alert's threshold in the rule file, over the error budget, is a line of the
    SLO's burn panel, coloured by its severity; the SLI panel's line is the objective. Returns the SLOs checked."""
    rows = _rows(document)
    assert [row["title"].split(":")[0] for row, _ in rows[:len(service.slos)]] == [
        f"SLO {slo.name}" for slo in service.slos]
    assert len(rows) == len(service.slos) + len(service.technologies)
    for slo, (_row, panels) in zip(service.slos, rows):
        titles = [panel["title"] for panel in panels]
        assert titles == ["Objective", f"Error budget remaining ({slo.window})", "SLI (good share)",
                          "Burn rate on the alert windows", f"Error budget burn-down ({slo.window})"]
        burn = panels[3]
        lines = {(Decimal(repr(step["value"])).normalize(), step["color"])
                 for step in burn["fieldConfig"]["defaults"]["thresholds"]["steps"] if step["value"] is not None}
        fired = set()
        for rule in groups[f"slo:{service.name}:{slo.name}"]["rules"]:
            if rule.get("alert", "").startswith("SLOBurnRate"):
                factor = _number_after(rule["expr"], ">") / error_budget(slo.objective)
                colour = "red" if rule["labels"]["severity"] == "page" else "orange"
                fired.add((factor.normalize(), colour))
        assert lines == fired, (service.name, slo.name)
        assert len(fired) == len(enabled_burn_windows(service, slo))
        windows = {target["legendFormat"] for target in burn["targets"]}
        assert windows == {w for window, _ in enabled_burn_windows(service, slo) for w in (window.long, window.short)}
        objective = panels[2]["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"]
        assert Decimal(repr(objective)) == slo.objective
        assert panels[4]["timeFrom"] == slo.window
    return len(service.slos)


def test_slo_rows_draw_the_thresholds_the_alerts_fire_at(examples: tuple[Path, list[Service]]) -> None:
    out, services = examples
    checked = 0
    for service in services:
        document = _load(out / service.name / "grafana" / "dashboard.json")
        checked += _check_slo_rows(service, document, {group["name"]: group for group in _alerts(out, service.name)})
    assert checked >= 20


SLO_KINDS = sorted(p.name for p in (ROOT / "tests" / "golden" / "slo-kinds").iterdir()
                   if (p / "prometheus" / "slo.rules.yaml").exists())


@pytest.mark.parametrize("case", SLO_KINDS)
def test_every_slo_kind_and_alerting_switch_is_drawn_as_its_rules_alert(case: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SLI kind (events, ratio_query, threshold, 28-day windows) and alerting switch (pages off: no red
    line; budget alerts off), against the rule files of the SLO kinds' goldens."""
    folder = ROOT / "tests" / "golden" / "slo-kinds" / case
    monkeypatch.chdir(folder)
    service = load_spec("spec.yaml").service
    document = grafana.service_dashboard(service, {})
    groups = yaml.safe_load((folder / "prometheus" / "slo.rules.yaml").read_text())["groups"]
    assert _check_slo_rows(service, document, {group["name"]: group for group in groups}) == len(service.slos)
    assert series_problems(document, service, {}) == []
    recorded = {rule.get("record", "ALERTS") for group in groups for rule in group["rules"]}
    for _where, expr in expressions(document):
        assert {metric_name(node) for node in selectors(parse(expr))} <= recorded | {grafana.RESTART_METRIC}


def test_dependency_rows_draw_what_each_scoped_alert_compares(examples: tuple[Path, list[Service]]) -> None:
    """Every catalog alert of a dependency, as written to alerts.rules.yaml (scoped): each signal of its
    condition is a panel query of the dependency's row, with the alert's threshold as a line and its
    runbook linked. Taking signals of the scoped alert equals scoping the catalog's signals."""
    out, services = examples
    checked = 0
    for service in services:
        document = _load(out / service.name / "grafana" / "dashboard.json")
        rows = _rows(document)[len(service.slos):]
        groups = {group["name"]: group for group in _alerts(out, service.name)}
        for dependency, (row, panels) in zip(service.technologies, rows):
            assert row["collapsed"] is True and dependency.name in row["title"]
            queries: dict[str, list[dict[str, Any]]] = {}
            for panel in panels:
                for target in panel["targets"]:
                    queries.setdefault(target["expr"], []).append(panel)
            for alert in groups[f"{service.name}/{dependency.type}/{dependency.name}"]["rules"]:
                for signal in rule_signals(alert["expr"]):
                    assert signal.expr in queries, (service.name, alert["alert"], signal.expr)
                    panel = queries[signal.expr][0]
                    assert alert["alert"] in panel["title"]
                    if signal.value is not None:
                        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                        assert float(signal.value) in [step["value"] for step in steps]
                    if signal.series is not None:
                        assert signal.series in [t["expr"] for t in panel["targets"]]
                    if "runbook_url" in alert["annotations"]:
                        assert alert["annotations"]["runbook_url"] in [link["url"] for link in panel["links"]]
                    checked += 1
    assert checked > 100


def _recorded(out: Path, service: str) -> set[str]:
    names = set()
    for group in _alerts(out, service):
        for rule in group["rules"]:
            names.add(rule["record"] if "record" in rule else "ALERTS")  # Prometheus writes ALERTS for alert rules
    return names


def test_every_expression_reads_only_series_the_service_gets(examples: tuple[Path, list[Service]]) -> None:
    """Each expression of every example dashboard parses; each selector's metric is recorded by the
    service's rule files, collected by its scrape job (job = the scrape config's job_name), or is a
    catalog metric of a dependency whose selector the selector carries."""
    out, services = examples
    count = 0
    for service in services:
        recorded = _recorded(out, service.name)
        scrape = yaml.safe_load((out / service.name / "prometheus" / "scrape.yaml").read_text())
        job = scrape["scrape_configs"][0]["job_name"]
        catalog = load_technologies(str(ROOT / "rules_catalog"), service.technology_types)
        for name in ("dashboard.json",):
            document = _load(out / service.name / "grafana" / name)
            for where, expr in expressions(document):
                for node in selectors(parse(expr)):
                    metric = metric_name(node)
                    matchers = set(matchers_of(node))
                    count += 1
                    if metric in recorded:
                        assert ("service", "=", service.name) in matchers, (where, expr)
                        continue
                    if metric == grafana.RESTART_METRIC:
                        assert ("job", "=", job) in matchers
                        continue
                    owners = [dep for dep in service.technologies if set(dep.selector) <= matchers
                              and metric in {m for rule in catalog[dep.type].rules for m in rule["metrics"]}]
                    assert owners, f"{service.name}: {where}: {metric} is neither recorded nor scraped: {expr}"
        assert series_problems(_load(out / service.name / "grafana" / "dashboard.json"), service, catalog) == []
    assert count > 500
    overview = _load(out / "grafana" / "overview.json")
    every = set().union(*(_recorded(out, s.name) for s in services))
    for _where, expr in expressions(overview):
        assert {metric_name(node) for node in selectors(parse(expr))} <= every


def test_series_check_names_a_panel_that_reads_an_unknown_series(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    service = load_spec("services/payment-api.yaml").service
    document = grafana.service_dashboard(service, {})
    document["panels"][1]["targets"][0]["expr"] = 'slo:typo:ratio{service="payment-api"}'
    document["panels"][2]["targets"][0]["expr"] = "rate(x[5m]"
    problems = series_problems(document, service, {})
    assert problems[0] == ("panel 2 'Objective' (A): reads slo:typo:ratio, which no rule file of payment-api records, "
                           "its scrape job does not collect and no dependency's exporter (by its selector) exposes")
    assert problems[1].startswith("panel 3 'Error budget remaining (30d)' (A): not valid PromQL:")
    assert len(problems) == 2


def test_uids_are_short_stable_and_distinct() -> None:
    assert grafana.dashboard_uid("payment-api") == "payment-api"
    long = "a" * 30 + "-" + "b" * 32
    other = "a" * 30 + "-" + "b" * 31 + "c"
    assert len(grafana.dashboard_uid(long)) == 40 and grafana.dashboard_uid(long) == grafana.dashboard_uid(long)
    assert grafana.dashboard_uid(long) != grafana.dashboard_uid(other)
    assert grafana.dashboard_uid(long).startswith("a" * 29 + "-")
    assert "_" in grafana.OVERVIEW_UID  # never a service name (DNS label), so never a service's uid


def test_every_query_uses_the_datasource_variable(examples: tuple[Path, list[Service]]) -> None:
    out, services = examples
    for path in [out / s.name / "grafana" / "dashboard.json" for s in services] + [out / "grafana" / "overview.json"]:
        document = _load(path)
        variables = document["templating"]["list"]
        assert [(v["name"], v["type"], v["query"]) for v in variables] == [("datasource", "datasource", "prometheus")]
        refs: list[Any] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if "datasource" in node:
                    refs.append(node["datasource"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk({key: value for key, value in document.items() if key != "templating"})
        assert refs and all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs), path


_TWICE = """
import os, sys
os.chdir(sys.argv[1])
from generators import grafana
from generators.catalog import load_technologies
from generators.grafana_overview import overview_files
from generators.spec import load_spec
for name in sorted(n for n in os.listdir("services") if n.endswith(".yaml")):
    service = load_spec(f"services/{name}").service
    files = grafana.dashboard_files(service, load_technologies("rules_catalog", service.technology_types), "o")
    sys.stdout.buffer.write(files["o/dashboard.json"])
for data in overview_files(["b", "a"], "o", "services/*.yaml").values():
    sys.stdout.buffer.write(data)
"""


def test_two_runs_write_the_same_bytes() -> None:
    """Separate processes with different hash seeds: no set or dict order leaks into the files."""
    runs = [subprocess.run([sys.executable, "-c", _TWICE, str(ROOT)], capture_output=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    assert runs[0] == runs[1] and len(runs[0]) > 100_000


def test_templated_dashboards_equal_direct_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build generates one dashboard per shape and substitutes names (generators.shapes): the bytes equal
    a direct generation, for ordinary names, names YAML would quote, and a name too long to be a uid."""
    from generators.shapes import shaped_files

    monkeypatch.chdir(ROOT)
    base = load_spec("services/user-service.yaml").service
    catalog = load_technologies("rules_catalog", base.technology_types)
    context = (("grafana-test", id(catalog)),)
    names = ["user-service", "true", "123", "n" * 63, "user-service-2", "users"]
    for name in names * 2:
        service = dataclasses.replace(base, name=name, team=f"team-{name[:5]}", source=f"services/{name}.yaml")
        direct = grafana.dashboard_files(service, catalog, f"out/{name}/grafana")
        if len(name) > grafana.UID_MAX:
            continue  # the build generates these directly (the uid is a hash of the name)
        shaped = shaped_files("grafana", lambda s: grafana.dashboard_documents(s, catalog), grafana.READS, service,
                              f"out/{name}/grafana", context, lambda s: grafana.check_standin(s, catalog),
                              grafana.render_dashboards)
        assert shaped == direct, name


def test_dashboards_load_into_the_sdk_models(examples: tuple[Path, list[Service]]) -> None:
    """Grafana's own schema, as the SDK's generated types: every document decodes into its Dashboard model
    with the panels' and queries' plugin types, and encodes back to the same JSON (field names and value
    types the schema knows; our Prometheus annotation fields aside, which its schema does not list)."""
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    out, services = examples
    for path in [out / s.name / "grafana" / "dashboard.json" for s in services] + [out / "grafana" / "overview.json"]:
        document = _load(path)
        document.pop("$comment")
        decoded = grafana.plain(Dashboard.from_json(document))
        for annotation in document.get("annotations", {}).get("list", []):
            for key in ("step", "titleFormat", "tagKeys", "useValueForTime"):
                annotation.pop(key)
        assert decoded == document, path


def test_signals_of_alert_conditions() -> None:
    assert rule_signals("pg_up == 0") == (Signal("pg_up", "==", Decimal(0)),)
    assert rule_signals("30 < lag_seconds") == (Signal("lag_seconds", ">", Decimal(30)),)
    assert rule_signals("expiry - time() < 21 * 86400 and expiry - time() > 0") == (
        Signal("expiry - time()", "<", Decimal(1814400)),)
    assert rule_signals("a > 1 or b > 2") == (Signal("a", ">", Decimal(1)), Signal("b", ">", Decimal(2)))
    assert rule_signals("free < 2 * limit") == (Signal("free", "<", None, "2 * limit"),)
    assert rule_signals('absent(up{job="x"})') == (Signal('absent(up{job="x"})'),)
    assert rule_signals("rate(x_total[5m]) > bool 1") == (Signal("rate(x_total[5m]) > bool 1"),)


def test_overview_query_and_statuses() -> None:
    from nthlayer.ops.budget import status_of

    query = budget_query(["b", "a", "x" * 50])
    assert 'service=~"a|b|' in query and grafana.dashboard_uid("x" * 50) in query
    parse(query)
    mappings = status_mappings()

    def shown(value: float) -> str:
        for mapping in mappings:  # Grafana: the first range that holds the value (both ends included)
            low, high = mapping.options.from_val, mapping.options.to
            if (low is None or low <= value) and (high is None or value <= high):
                return mapping.options.result.text
        return "?"

    for value in (-0.5, 0, 1e-9, 0.05, 0.0999, 0.1, 0.1001, 0.2, 0.25, 0.2501, 0.9, 1):
        assert shown(value) == status_of(Decimal(repr(value)) * 100), value


def test_the_build_registry_names_the_files_the_generators_write() -> None:
    from generators.grafana_overview import OVERVIEW_FILES
    from nthlayer.buildsys.kinds import KINDS, SHARED, SHARED_DIRS

    overview = SHARED["grafana-overview"]
    assert tuple(f"{overview.folder}/{name}" for name in overview.files) == OVERVIEW_FILES
    from generators.spec import RESERVED_SERVICE_NAMES

    assert "grafana" in SHARED_DIRS and SHARED_DIRS <= RESERVED_SERVICE_NAMES  # no service writes into out/grafana
    assert KINDS["grafana"].files == ("grafana/dashboard.json",) and KINDS["grafana"].reads_catalog


def test_an_sdk_upgrade_changes_the_dashboards_code_stamp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK writes the files: another version of it regenerates every dashboard, as a code edit would."""
    import importlib.metadata

    from nthlayer.buildsys import kinds

    monkeypatch.setattr(kinds, "_CODE_HASH", {})
    stamps = lambda: tuple(kinds.code_fingerprint(kind) for kind in ("grafana", "grafana-overview", "openslo"))  # noqa: E731
    before = stamps()
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "0!12.0.0" if name == "grafana-foundation-sdk" else real(name))
    monkeypatch.setattr(kinds, "_CODE_HASH", {})
    after = stamps()
    assert after[0] != before[0] and after[1] != before[1] and after[2] == before[2]
