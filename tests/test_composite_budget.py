"""Composite SLOs in track-budget and check-deploy, against the real Prometheus fixture (backfilled TSDB).

Per 5-minute step over 30 days (tests/prom_fixture.py): alpha serves 2000 requests with 1 error, gamma 500
with none, delta 1000 with 2. So, weighted events:

- journey = alpha availability ×2 + gamma availability: 2 bad of 4500 → 0.0444 % of a 0.1 % budget:
  19.2 of 43.2 minutes spent, 55.56 % left;
- jam = gamma availability + delta availability: 2 bad of 1500 → 57.6 minutes spent, −33.33 % left (an
  average of the two ratios, (0 + 0.2 %) / 2, would read exactly 0 %).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from prom_fixture import (PrometheusServer, fixture_specs, prometheus, prometheus_blocks,  # noqa: F401
                          requires_prometheus)

AT = "2024-05-01T12:00:00Z"
pytestmark = requires_prometheus

JOURNEY = """\
name: journey
team: t-alpha
objective: 0.999
components:
  - {service: alpha, slo: availability, weight: 2}
  - {service: gamma, slo: availability}
alerting: {route_via: alpha}
"""
JAM = """\
name: jam
team: t-gamma
objective: 0.999
components:
  - {service: gamma, slo: availability}
  - {service: delta, slo: availability}
alerting: {route_via: gamma}
"""


@pytest.fixture
def specs(fixture_specs: Path, tmp_path: Path) -> Path:  # noqa: F811
    folder = tmp_path / "services"
    shutil.copytree(fixture_specs, folder)
    (folder / "composites").mkdir()
    (folder / "composites" / "journey.yaml").write_text(JOURNEY)
    (folder / "composites" / "jam.yaml").write_text(JAM)
    return folder


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTHLAYER_PROMETHEUS_BACKOFF", "0.01")


def _budgets(run_cli, url: str, specs: Path, db: Path, *which: str) -> list[dict]:
    code, out, err = run_cli("track-budget", *which, "--services", str(specs), "--prometheus", url, "--at", AT,
                             "--state", str(db), "--json")
    assert code == 0, err
    return json.loads(out)["budgets"]


def test_track_budget_reports_composites_by_weighted_events(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                             specs: Path, tmp_path: Path) -> None:
    budgets = _budgets(run_cli, prometheus.url, specs, tmp_path / "s.duckdb", "--all")
    composites = {b["service"]: b for b in budgets if b["composite"]}
    assert sorted(composites) == ["jam", "journey"]
    journey, jam = composites["journey"], composites["jam"]
    assert (journey["slo"], journey["tier"], journey["budget_minutes"], journey["consumed_minutes"],
            journey["remaining_minutes"], journey["remaining_percent"], journey["status"]) == (
        "journey", 1, 43.2, 19.2, 24, 55.56, "HEALTHY")
    assert (jam["tier"], jam["consumed_minutes"], jam["remaining_minutes"], jam["remaining_percent"],
            jam["status"]) == (1, 57.6, -14.4, -33.33, "EXHAUSTED")
    # The services' own SLOs are there as before, and not marked composite.
    assert {(b["service"], b["slo"]) for b in budgets if not b["composite"]} >= {("alpha", "availability")}
    # --service names the composites the service belongs to; the table marks them.
    only = _budgets(run_cli, prometheus.url, specs, tmp_path / "s.duckdb", "--service", "delta")
    assert [(b["service"], b["composite"]) for b in only] == [
        ("delta", False), ("delta", False), ("jam", True)]
    code, out, _ = run_cli("track-budget", "--service", "delta", "--services", str(specs), "--prometheus",
                           prometheus.url, "--at", AT, "--state", str(tmp_path / "s.duckdb"))
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()[2:]] == [
        ["delta", "availability"], ["delta", "latency"], ["jam", "jam"]]
    assert "jam (composite)" in out


def test_a_composite_blocks_the_deploy_of_a_healthy_component(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                               specs: Path, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    code, out, _ = run_cli("check-deploy", "--service", "gamma", "--services", str(specs), "--prometheus",
                           prometheus.url, "--at", AT, "--state", str(db))
    assert (code, out) == (2, "BLOCK: deploy of gamma (tier 3)\n"
                              "  - composite SLO jam (99.9% over 30d) has -33.33% of its error budget left; "
                              "tier 3 (low) blocks below 0%\n")
    # Without the composite, gamma's own SLOs approve.
    (specs / "composites" / "jam.yaml").unlink()
    code, out, _ = run_cli("check-deploy", "--service", "gamma", "--services", str(specs), "--prometheus",
                           prometheus.url, "--at", AT, "--state", str(db), "--json")
    document = json.loads(out)
    assert (code, document["decision"]) == (0, "approve")
    assert [(b["slo"], b["composite"], b["remaining_percent"]) for b in document["budgets"]] == [
        ("availability", False, 100), ("latency", False, 100), ("journey", True, 55.56)]


def test_the_worst_of_own_slos_and_composites_decides(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                      specs: Path, tmp_path: Path) -> None:
    code, out, _ = run_cli("check-deploy", "--service", "alpha", "--services", str(specs), "--prometheus",
                           prometheus.url, "--at", AT, "--state", str(tmp_path / "s.duckdb"))
    assert (code, out) == (0, "APPROVE: deploy of alpha (tier 1)\n"
                              "  - availability SLO (99.9% over 30d) has 50.00% of its error budget left "
                              "(worst of 3 SLOs)\n")


def test_a_broken_composite_is_reported_at_its_line(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                    specs: Path, tmp_path: Path) -> None:
    path = specs / "composites" / "jam.yaml"
    path.write_text(JAM.replace("service: delta", "service: deltaa"))
    code, out, err = run_cli("check-deploy", "--service", "gamma", "--services", str(specs), "--prometheus",
                             prometheus.url, "--at", AT, "--state", str(tmp_path / "s.duckdb"))
    assert (code, out) == (1, "")
    assert err == f"{path}:6:15: /components/1/service: no spec defines service 'deltaa'; did you mean 'delta'?\n"


def test_the_api_answers_what_the_commands_answer(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                  specs: Path, tmp_path: Path) -> None:
    from api_fixture import start_api

    local = _budgets(run_cli, prometheus.url, specs, tmp_path / "local.duckdb", "--service", "gamma")
    api = start_api(tmp_path / "api", specs, "--prometheus", prometheus.url)
    try:
        answer = api.get(f"/api/v1/error-budgets?service=gamma&at={AT}", key="ci")
        assert answer.status_code == 200
        assert answer.json()["budgets"] == local
        assert [b["service"] for b in local if b["composite"]] == ["jam", "journey"]
        # One SLO by name is the service's own, never a composite's.
        one = api.get(f"/api/v1/error-budgets/gamma-availability?at={AT}", key="ci").json()["budgets"]
        assert [(b["service"], b["slo"], b["composite"]) for b in one] == [("gamma", "availability", False)]
        gate = api.send("POST", "/api/v1/deploys/check", key="ci",
                        json={"service": "gamma", "version": "v2", "at": AT})
        assert gate.status_code == 200
        assert (gate.json()["decision"], gate.json()["worst_slo"]) == ("block", "jam")
    finally:
        api.stop()
