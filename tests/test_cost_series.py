"""The series NthLayer's recording rules create, counted by ``nthlayer cost --prometheus`` (docs/cost.md),
against a real Prometheus that evaluates the generated rule files over backfilled raw series."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml

from prom_fixture import PrometheusServer, build_tsdb, requires_prometheus, start_prometheus
from generators.slo_rules import RULES_FILE, slo_rule_files
from nthlayer.buildsys.project import load_services
from nthlayer.ops.cost_series import recorded_names
from nthlayer.state.cost import latest_series_counts
from nthlayer.state.db import connect

STEP = 15
SPECS = {
    # Two SLOs (availability, latency), both counting requests.
    "web": "service: web\ntier: 1\nteam: shop\ntype: api\n",
    # Its spec's own labels ride on every recorded series.
    "checkout": "service: checkout\ntier: 2\nteam: shop\ntype: api\nlabels:\n  cost_centre: cc-7\n",
    # No metrics at all: its constant rules (objective, budget, window, info) still make series.
    "quiet": "service: quiet\ntier: 3\nteam: ops\ntype: api\n",
}


def _openmetrics(now: int) -> str:
    """Requests and latency of web and checkout, every 15 s in the 30 minutes before ``now``: the rules'
    5-minute rates see samples for a few minutes. No sample at or after ``now``: Prometheus refuses to write
    rule results older than its newest block's end ("out of bounds")."""
    times = range(now - 1800, now, STEP)
    lines = ["# TYPE http_requests counter"]
    for job in ("web", "checkout"):
        for code, per_step in (("200", 99), ("500", 1)):
            lines += [f'http_requests_total{{job="{job}",code="{code}"}} {n * per_step} {t}'
                      for n, t in enumerate(times)]
    lines.append("# TYPE http_request_duration_seconds histogram")
    for job, le in (("web", "0.5"), ("checkout", "1")):
        for n, t in enumerate(times):
            lines.append(f'http_request_duration_seconds_bucket{{job="{job}",le="{le}"}} {n * 95} {t}')
            lines.append(f'http_request_duration_seconds_bucket{{job="{job}",le="+Inf"}} {n * 100} {t}')
            lines.append(f'http_request_duration_seconds_count{{job="{job}"}} {n * 100} {t}')
    return "\n".join(lines + ["# EOF"]) + "\n"


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cost") / "services"
    folder.mkdir()
    for name, text in SPECS.items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def evaluating(specs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Prometheus with every service's generated slo.rules.yaml, evaluated each second until each group
    has run at least once."""
    root = tmp_path_factory.mktemp("prom-cost")
    rule_files = []
    services = load_services(str(specs))
    for service in services:
        for path, data in slo_rule_files(service, str(root / "out" / service.name / "prometheus")).items():
            if path.endswith(RULES_FILE):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_bytes(data)
                rule_files.append(Path(path))
    server = start_prometheus(build_tsdb(root, _openmetrics(int(time.time()))), rule_files=rule_files,
                              evaluation_interval="1s")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            groups = requests.get(f"{server.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
            if len(groups) == sum(len(s.slos) for s in services) and all(not g["lastEvaluation"].startswith("0001") for g in groups):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("Prometheus did not evaluate the generated rules within 60 s")
        time.sleep(1.1)  # `nthlayer cost` asks at a whole second: one that follows the first evaluation
        yield server
    finally:
        server.stop()


def _rule_file_records(path: Path) -> set[str]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {rule["record"] for group in document["groups"] for rule in group["rules"] if "record" in rule}


def test_names_are_the_generated_rule_files_own(specs: Path, tmp_path: Path) -> None:
    for service in load_services(str(specs)):
        files = slo_rule_files(service, str(tmp_path / service.name))
        path = tmp_path / service.name / RULES_FILE
        path.parent.mkdir(parents=True)
        path.write_bytes(files[str(path)])
        assert recorded_names(service) == sorted(_rule_file_records(path)), service.name


@requires_prometheus
def test_series_counted_per_service_and_recorded(run_cli, evaluating: PrometheusServer, specs: Path,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    state = str(tmp_path / "state.duckdb")
    code, out, err = run_cli("cost", "--services", str(specs), "--prometheus", evaluating.url, "--json",
                             "--state", state)
    assert (code, err) == (0, "")
    cost = json.loads(out)["cost"]
    assert cost["prometheus"] == evaluating.url
    names = recorded_names(load_services(str(specs), ["web"])[0])
    assert len(names) == 19
    by_service = {s["service"]: s for s in cost["services"]}
    # web and checkout: every recorded name, once per SLO (availability, latency). The spec's own labels
    # (checkout's cost_centre) add labels, not series.
    for name in ("web", "checkout"):
        assert by_service[name]["series_by_metric"] == {n: 2 for n in names}
        assert by_service[name]["series"] == 38
    # quiet has no raw series: only its constant rules (objective, budget, window, info) record, once per
    # SLO, and its availability SLO's error rate, which falls back to 0 (`or vector(0)`) without 5xx series.
    constants = {"slo:objective:ratio", "slo:error_budget:ratio", "slo:time_period:days", "sloth_slo_info"}
    assert by_service["quiet"]["series_by_metric"] == {
        n: 2 if n in constants else 1 if n == "slo:sli_errors:rate5m" else 0 for n in names}
    assert by_service["quiet"]["series"] == 9
    assert [(t["team"], t["series"]) for t in cost["teams"]] == [("ops", 9), ("shop", 76)]
    # Recorded in state for the report: the same counts at the instant the JSON names.
    with connect(state) as con:
        recorded = latest_series_counts(con, ["web", "quiet", "checkout"])
    assert {s: sum(c.values()) for s, (_, c) in recorded.items()} == {"checkout": 38, "quiet": 9, "web": 38}
    assert {at.strftime("%Y-%m-%dT%H:%M:%SZ") for at, _ in recorded.values()} == {cost["series_measured_at"]}


@requires_prometheus
def test_series_in_the_table(run_cli, evaluating: PrometheusServer, specs: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("cost", "--team", "shop", "--services", str(specs), "--prometheus", evaluating.url,
                             "--state", str(tmp_path / "state.duckdb"))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[3].endswith("  38") and lines[3].startswith("checkout")
    assert lines[4].endswith("  38") and lines[4].startswith("web")
    assert lines[7] == ("shop         2          0           0.00      0         no history      4579.20     -      76")
    assert re.fullmatch(rf"series: 76 series recorded by NthLayer's rules in {re.escape(evaluating.url)} at "
                        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines[-1])


def test_unreachable_prometheus_is_one_line(run_cli, specs: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from prom_fixture import free_port

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NTHLAYER_PROMETHEUS_BACKOFF", "0")
    url = f"http://127.0.0.1:{free_port()}"
    state = tmp_path / "state.duckdb"
    code, out, err = run_cli("cost", "--services", str(specs), "--prometheus", url, "--prometheus-retries", "0",
                             "--state", str(state))
    assert (code, out) == (1, "")
    assert err == f"nthlayer cost: error: Prometheus at {url} is unavailable: connection failed (1 attempt)\n"
    assert not state.exists()
