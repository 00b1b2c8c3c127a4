"""The deploy gate against the real Prometheus fixture: approve, warn, block, cannot decide, audit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from prom_fixture import (PrometheusServer, fixture_specs, private_prometheus, prometheus,  # noqa: F401
                          prometheus_blocks, requires_prometheus)
from nthlayer.state.db import connect

AT = "2024-05-01T12:00:00Z"
pytestmark = requires_prometheus


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTHLAYER_PROMETHEUS_BACKOFF", "0.01")
    for name in ("PROMETHEUS_TOKEN", "PROMETHEUS_TOKEN_FILE", "PROMETHEUS_USERNAME", "PROMETHEUS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def gate(run_cli, url: str, specs: Path, db: Path, *args: str) -> tuple[int, str, str]:
    return run_cli("check-deploy", *args, "--services", str(specs), "--prometheus", url, "--at", AT,
                   "--state", str(db))


def test_approve_on_healthy_budget(run_cli, prometheus: PrometheusServer, fixture_specs: Path,  # noqa: F811
                                   tmp_path: Path) -> None:
    code, out, _ = gate(run_cli, prometheus.url, fixture_specs, tmp_path / "s.duckdb", "--service", "alpha")
    assert (code, out) == (0, "APPROVE: deploy of alpha (tier 1)\n"
                              "  - availability SLO (99.9% over 30d) has 50.00% of its error budget left "
                              "(worst of 2 SLOs)\n")


def test_worst_slo_decides_and_blocks(run_cli, prometheus: PrometheusServer, fixture_specs: Path,  # noqa: F811
                                      tmp_path: Path) -> None:
    # delta: availability −100 %, latency 100 %: an average (0 %) would hide nothing here, the worst decides.
    code, out, _ = gate(run_cli, prometheus.url, fixture_specs, tmp_path / "s.duckdb",
                        str(fixture_specs / "delta.yaml"), "--version", "v9")
    assert code == 2
    assert out == ("BLOCK: deploy of delta (tier 1)\n"
                   "  - availability SLO (99.9% over 30d) has -100.00% of its error budget left; "
                   "tier 1 (critical) blocks below 10%\n")


def test_warning_band_approves_with_a_warning(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                              fixture_specs: Path, tmp_path: Path) -> None:  # noqa: F811
    code, out, _ = gate(run_cli, prometheus.url, fixture_specs, tmp_path / "s.duckdb", "--service", "epsilon",
                        "--json")
    document = json.loads(out)
    assert (code, document["decision"], document["worst_slo"], document["warnings"]) == (
        0, "approve", "availability", ["below tier 2's warning level of 25%: deploy with care"])


def test_no_data_cannot_decide_unless_told(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                           fixture_specs: Path, tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "s.duckdb"
    code, out, _ = gate(run_cli, prometheus.url, fixture_specs, db, "--service", "silent")
    assert code == 3
    assert out.splitlines()[0] == "CANNOT DECIDE: deploy of silent (tier 1)"
    assert out.splitlines()[-1] == ("  warning: tier 1 (critical) default for an undecided gate is 'block'; "
                                    "pass --on-unknown tier to apply it")
    code, out, _ = gate(run_cli, prometheus.url, fixture_specs, db, "--service", "silent", "--on-unknown", "tier")
    assert code == 2 and "  undecided; applied tier 1 (critical) default: block" in out.splitlines()
    code, _, _ = gate(run_cli, prometheus.url, fixture_specs, db, "--service", "silent", "--on-unknown", "approve")
    assert code == 0
    with connect(str(db)) as con:
        audit = con.execute("SELECT action, service, result, json_extract_string(details, '$.on_unknown') "
                            "FROM audit ORDER BY id").fetchall()
    assert audit == [("check-deploy", "silent", "unknown", None),
                     ("check-deploy", "silent", "block", "tier 1 (critical) default: block"),
                     ("check-deploy", "silent", "approve", "--on-unknown approve")]


def test_prometheus_killed_mid_run_gives_exit_3(run_cli, private_prometheus: PrometheusServer,  # noqa: F811
                                                fixture_specs: Path, tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "s.duckdb"
    assert gate(run_cli, private_prometheus.url, fixture_specs, db, "--service", "alpha")[0] == 0
    private_prometheus.stop()
    code, out, _ = gate(run_cli, private_prometheus.url, fixture_specs, db, "--service", "alpha",
                        "--prometheus-retries", "1")
    assert code == 3
    assert out.splitlines()[1] == (f"  - cannot read error budgets: Prometheus at {private_prometheus.url} is "
                                   "unavailable: connection failed (2 attempts)")
    # Tier 2's default on unknown is approve.
    assert gate(run_cli, private_prometheus.url, fixture_specs, db, "--service", "beta",
                "--prometheus-retries", "0", "--on-unknown", "tier")[0] == 0


def test_open_incident_correlated_with_a_recent_deploy_blocks(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                              fixture_specs: Path, tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "s.duckdb"
    state = ("--state", str(db))
    # An earlier deploy followed by an incident gives the history factor; then the suspect deploy.
    assert run_cli("record-deploy", "--service", "alpha", "--version", "v1", "--at", "2024-04-20T10:00:00Z", *state)[0] == 0
    assert run_cli("record-incident", "--service", "alpha", "--started-at", "2024-04-20T10:30:00Z",
                   "--resolved-at", "2024-04-20T11:00:00Z", "--severity", "high", *state)[0] == 0
    assert run_cli("record-deploy", "--service", "alpha", "--version", "v2", "--at", "2024-05-01T11:00:00Z",
                   "--commit", "abc", *state)[0] == 0
    assert run_cli("record-incident", "--service", "alpha", "--started-at", "2024-05-01T11:30:00Z",
                   "--severity", "critical", "--id", "INC-7", *state)[0] == 0
    code, out, _ = gate(run_cli, prometheus.url, fixture_specs, db, "--service", "alpha")
    assert code == 2
    assert out == ("BLOCK: deploy of alpha (tier 1)\n"
                   "  - deploy v2 of alpha (2024-05-01T11:00:00Z) is correlated 95% with open incident INC-7 "
                   "on alpha\n")
    # Once the incident is resolved the budget decides again.
    assert run_cli("record-incident", "--service", "alpha", "--started-at", "2024-05-01T11:30:00Z",
                   "--resolved-at", "2024-05-01T11:50:00Z", "--severity", "critical", "--id", "INC-7", *state)[0] == 0
    assert gate(run_cli, prometheus.url, fixture_specs, db, "--service", "alpha")[0] == 0
    with connect(str(db)) as con:
        actions = con.execute("SELECT action, result FROM audit ORDER BY id").fetchall()
    assert actions == [("record-deploy", "recorded"), ("record-incident", "recorded"), ("record-deploy", "recorded"),
                       ("record-incident", "recorded"), ("check-deploy", "block"), ("record-incident", "updated"),
                       ("check-deploy", "approve")]
