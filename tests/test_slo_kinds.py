"""Every SLI kind and every per-SLO alerting switch: golden files, promtool verdicts on the generated
rules and tests, and OpenSLO documents that validate."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from generators.openslo import openslo_files
from generators.openslo_validate import validate_openslo_dir
from generators.slo_rules import slo_rule_files
from generators.spec import load_spec
from nthlayer.integrations import promtool
from tests.conftest import ROOT, UPDATE_GOLDEN, requires_promtool

GOLDEN = ROOT / "tests" / "golden" / "slo-kinds"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "spec.yaml").is_file())
KIND_CASES = [case for case in CASES if case.startswith("kind-")]
WITH_SLOS = [case for case in CASES if case != "slos-empty"]


def _service(case: str):
    spec = GOLDEN / case / "spec.yaml"
    return load_spec(os.path.relpath(spec, ROOT), raw=spec.read_bytes()).service


def _files(case: str) -> dict[str, bytes]:
    service = _service(case)
    base = os.path.relpath(GOLDEN / case, ROOT)
    return {**slo_rule_files(service, f"{base}/prometheus"), **openslo_files(service, base)}


def _yaml(case: str, name: str):
    return yaml.safe_load((GOLDEN / case / "prometheus" / name).read_text())


def _groups(case: str) -> dict[str, list[dict]]:
    return {group["name"].rsplit(":", 1)[1]: group["rules"] for group in _yaml(case, "slo.rules.yaml")["groups"]}


def test_cases_cover_every_kind() -> None:
    kinds = {slo.kind for case in CASES for slo in _service(case).slos}
    assert kinds == {"availability", "latency", "events", "ratio_query", "threshold"}


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    files = _files(case)
    on_disk = {os.path.relpath(p, ROOT) for p in (GOLDEN / case).rglob("*") if p.is_file() and p.name != "spec.yaml"}
    if UPDATE_GOLDEN:
        for path in on_disk - set(files):
            os.remove(ROOT / path)
        for path, data in files.items():
            (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
            (ROOT / path).write_bytes(data)
        on_disk = set(files)
    assert on_disk == set(files)
    for path, data in files.items():
        assert (ROOT / path).read_bytes() == data, f"{path} differs; rerun with NTHLAYER_UPDATE_GOLDEN=1 and review"


def test_no_slos_means_no_slo_artifacts() -> None:
    names = sorted(os.path.relpath(p, GOLDEN / "slos-empty") for p in _files("slos-empty"))
    assert [os.path.basename(n) for n in names] == ["openslo.yaml", "scrape.yaml"]


@requires_promtool
@pytest.mark.parametrize("case", WITH_SLOS)
def test_promtool_checks_and_runs_the_generated_tests(case: str) -> None:
    folder = GOLDEN / case / "prometheus"
    checked = promtool.check_rules(["slo.rules.yaml"], cwd=str(folder))
    assert checked.ok, checked.output
    tested = promtool.test_rules(["slo-rules.test.yaml", "slo-burst.test.yaml"], cwd=str(folder))
    assert tested.ok, tested.output


@pytest.mark.parametrize("case", WITH_SLOS)
def test_openslo_documents_validate(case: str) -> None:
    assert validate_openslo_dir(str(GOLDEN / case)) == []


def _burst_pages(case: str) -> set[str]:
    """The SLOs whose fast page the burst test expects."""
    return {alert["exp_labels"]["slo"] for test in _yaml(case, "slo-burst.test.yaml")["tests"]
            for check in test["alert_rule_test"] for alert in check["exp_alerts"]}


@pytest.mark.parametrize("case", [c for c in KIND_CASES if c != "kind-events-undriven"])
def test_a_burst_pages_and_steady_traffic_is_silent_for_every_kind(case: str) -> None:
    slo = _service(case).slos[0]
    assert _burst_pages(case) == {slo.name}
    steady = _yaml(case, "slo-rules.test.yaml")["tests"][0]
    assert steady["name"].startswith("steady:") and steady["input_series"]
    assert all(check["exp_alerts"] == [] for check in steady["alert_rule_test"])


def test_an_events_expression_without_a_predictable_shape_is_not_driven() -> None:
    tests = _yaml("kind-events-undriven", "slo-rules.test.yaml")["tests"]
    steady = tests[0]
    assert steady["input_series"] == []
    firing = {check["alertname"]: check["exp_alerts"] for check in steady["alert_rule_test"] if check["exp_alerts"]}
    assert list(firing) == ["SLOMetricsAbsent"]
    assert _yaml("kind-events-undriven", "slo-burst.test.yaml")["tests"] == []


def test_events_rate_each_selector_and_threshold_records_slices_once() -> None:
    events = {rule.get("record"): rule["expr"] for rule in _groups("kind-events-undriven")["invoices"]}
    assert events["slo:sli_errors:rate5m"] == (
        '(sum(rate(invoice_failed_total{job="billing"}[5m]) + rate(invoice_rejected_total{job="billing"}[5m]))'
        " or vector(0))")
    lag = {rule.get("record"): rule["expr"] for rule in _groups("kind-threshold")["consumer-lag"]}
    assert lag["slo:sli_bad_slice:bool"] == (
        'max(\n1 - (\nmax(kafka_consumergroup_lag{group="orders"})\n< bool 1000\n)\n)')
    assert lag["slo:sli_error:ratio_rate30d"] == (
        'sum by (service, slo) (sum_over_time(slo:sli_bad_slice:bool{service="order-consumer",slo="consumer-lag"}[30d]))'
        '\n/\nsum by (service, slo) (count_over_time(slo:sli_bad_slice:bool{service="order-consumer",slo="consumer-lag"}'
        "[30d]))")
    ratio = {rule.get("record"): rule["expr"] for rule in _groups("kind-ratio-query")["ingest-errors"]}
    assert "[1h]" in ratio["slo:sli_error:ratio_rate1h"] and "$window" not in ratio["slo:sli_error:ratio_rate1h"]


def test_page_off_drops_the_slos_pages_only() -> None:
    groups = _groups("alerting-page-off")
    severities = {name: {r["labels"]["severity"] for r in rules if "alert" in r} for name, rules in groups.items()}
    assert "page" not in severities["availability"] and "critical" not in severities["availability"]
    assert "page" in severities["latency"]
    assert _burst_pages("alerting-page-off") == {"latency"}


def test_ticket_and_budget_off() -> None:
    rules = _groups("alerting-ticket-budget-off")["availability"]
    alerts = {(r["alert"], r["labels"]["severity"]) for r in rules if "alert" in r}
    assert alerts == {("SLOBurnRateFast", "page"), ("SLOBurnRateMedium", "page"), ("SLOMetricsAbsent", "page")}


def test_labels_annotations_and_no_guard() -> None:
    for rule in _groups("alerting-labels-no-guard")["writes"]:
        assert rule["labels"]["env"] == "prod" and rule["labels"]["domain"] == "money"
        if "alert" in rule:
            assert rule["labels"]["route"] == "payments-oncall"
            assert rule["annotations"]["dashboard"] == "https://grafana.example.com/d/ledger"
            assert "avg_over_time" not in rule["expr"]  # min_request_rate: null: no low-traffic guard
        else:
            assert "route" not in rule["labels"]
    names = [t["name"] for t in _yaml("alerting-labels-no-guard", "slo-rules.test.yaml")["tests"]]
    assert not any(name.startswith("low traffic") for name in names)


@requires_promtool
@pytest.mark.parametrize("case, wrong", [
    ("kind-threshold", ("< bool 1000", "> bool 1000")),  # the condition inverted
    ("kind-events-good", ('outcome="delivered"', 'outcome="sent"')),  # good events read from the wrong series
    ("kind-ratio-query", ("[5m]", "[5m] offset 1h")),  # the 5m ratio an hour late
])
def test_generated_tests_catch_a_wrong_rule(tmp_path: Path, case: str, wrong: tuple[str, str]) -> None:
    folder = GOLDEN / case / "prometheus"
    rules = (folder / "slo.rules.yaml").read_text()
    assert wrong[0] in rules
    (tmp_path / "slo.rules.yaml").write_text(rules.replace(*wrong))
    for name in ("slo-rules.test.yaml", "slo-burst.test.yaml"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    result = subprocess.run(["promtool", "test", "rules", "slo-rules.test.yaml", "slo-burst.test.yaml"],
                            cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 1, result.stdout
    assert "FAILED" in result.stdout + result.stderr


@pytest.mark.parametrize("doc, heading", [("README.md", "**Your own SLOs.**"),
                                          ("docs/slo-alerts.md", "## Your own SLOs")])
def test_documented_slos_examples_validate(doc: str, heading: str) -> None:
    text = (ROOT / doc).read_text()
    start = text.index("```yaml", text.index(heading)) + len("```yaml\n")
    block = text[start:text.index("```", start)]
    service = load_spec("example.yaml", raw=f"service: example\ntier: 1\nteam: t\n{block}".encode()).service
    assert {slo.kind for slo in service.slos} == {"availability", "latency", "events", "ratio_query", "threshold"}
