"""Error budgets against a real Prometheus over backfilled data whose figures are known exactly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import ROOT
from prom_fixture import (END, PrometheusServer, fixture_specs, prometheus, prometheus_blocks,  # noqa: F401
                          requires_prometheus)
from nthlayer.buildsys.project import load_services
from nthlayer.ops.budget import budget_figures, evaluate, plan_queries, status_of, table
from nthlayer.integrations.prometheus import PrometheusClient
from nthlayer.state.db import connect

AT = datetime.fromtimestamp(END, timezone.utc)


def test_seed_example_figures() -> None:
    assert budget_figures(Decimal("0.999"), 30, Decimal("0.0005")) == (
        Decimal("43.2000"), Decimal("21.6000"), Decimal("21.6000"), Decimal("50.00"))


@pytest.mark.parametrize("percent, status", [
    (Decimal("25"), "HEALTHY"), (Decimal("24.99"), "WARNING"), (Decimal("10"), "WARNING"),
    (Decimal("9.99"), "CRITICAL"), (Decimal("0.01"), "CRITICAL"), (Decimal("0"), "EXHAUSTED"),
    (Decimal("-5"), "EXHAUSTED"), (None, "UNKNOWN")])
def test_status_thresholds(percent: Decimal | None, status: str) -> None:
    assert status_of(percent) == status


def test_one_query_per_slo_kind_and_metric_set_not_per_service(fixture_specs: Path) -> None:  # noqa: F811
    services = load_services(str(fixture_specs))
    groups = plan_queries(services)
    # availability: one query for all six; latency: one per threshold (0.5 s, 1 s, 2.5 s).
    assert sorted((g.slo, sorted(g.services.values())) for g in groups) == [
        ("availability", ["alpha", "beta", "delta", "epsilon", "gamma", "silent"]),
        ("latency", ["alpha", "delta", "silent"]),
        ("latency", ["beta", "epsilon"]),
        ("latency", ["gamma"]),
    ]
    assert groups[0].promql.startswith(
        'label_replace((sum by (job) (increase(http_requests_total{job=~"alpha|beta|delta|epsilon|gamma|silent",'
        'code=~"5.."}[30d])) or 0 * sum by (job) (increase(http_requests_total{job=~"alpha|beta|delta|epsilon|'
        'gamma|silent"}[30d]))) / sum by (job) (increase(http_requests_total{job=~"alpha|beta|delta|epsilon|'
        'gamma|silent"}[30d])), "nthlayer_range", "window", "job", ".*") or label_replace(')


@requires_prometheus
def test_budgets_match_the_data(prometheus: PrometheusServer, fixture_specs: Path) -> None:  # noqa: F811
    client = PrometheusClient(prometheus.url, environ={})
    reports = evaluate(client, load_services(str(fixture_specs)), AT)
    assert client.requests_sent == 4
    figures = {(r.service, r.slo): (r.budget_minutes, r.consumed_minutes, r.remaining_minutes,
                                    r.remaining_percent, r.burn_rate_1h, r.status) for r in reports}
    d = Decimal
    assert figures == {
        ("alpha", "availability"): (d("43.2000"), d("21.6000"), d("21.6000"), d("50.00"), d("0.50"), "HEALTHY"),
        ("alpha", "latency"): (d("2160.0000"), d("216.0000"), d("1944.0000"), d("90.00"), d("0.10"), "HEALTHY"),
        # 1200 errors in 8.64 M requests, all in the last hour: 10 % errors / 0.5 % budget = 20×.
        ("beta", "availability"): (d("216.0000"), d("6.0000"), d("210.0000"), d("97.22"), d("20.00"), "HEALTHY"),
        ("beta", "latency"): (d("2160.0000"), d("0.0000"), d("2160.0000"), d("100.00"), d("0.00"), "HEALTHY"),
        ("delta", "availability"): (d("43.2000"), d("86.4000"), d("-43.2000"), d("-100.00"), d("2.00"),
                                    "EXHAUSTED"),
        ("delta", "latency"): (d("2160.0000"), d("0.0000"), d("2160.0000"), d("100.00"), d("0.00"), "HEALTHY"),
        ("epsilon", "availability"): (d("216.0000"), d("172.8000"), d("43.2000"), d("20.00"), d("0.80"), "WARNING"),
        ("epsilon", "latency"): (d("2160.0000"), d("0.0000"), d("2160.0000"), d("100.00"), d("0.00"), "HEALTHY"),
        # No 5xx series at all: the `or 0 * total` term still reports the service.
        ("gamma", "availability"): (d("432.0000"), d("0.0000"), d("432.0000"), d("100.00"), d("0.00"), "HEALTHY"),
        ("gamma", "latency"): (d("2160.0000"), d("0.0000"), d("2160.0000"), d("100.00"), d("0.00"), "HEALTHY"),
        ("silent", "availability"): (d("43.2000"), None, None, None, None, "UNKNOWN"),
        ("silent", "latency"): (d("2160.0000"), None, None, None, None, "UNKNOWN"),
    }
    assert table([r for r in reports if r.service in ("alpha", "silent")]) == "\n".join([
        "SERVICE  SLO           TARGET  WINDOW  BUDGET(min)  CONSUMED  REMAINING  LEFT%  BURN(1h)  STATUS",
        "alpha    availability  99.9%   30d           43.20     21.60      21.60  50.00      0.50  HEALTHY",
        "alpha    latency       95%     30d         2160.00    216.00    1944.00  90.00      0.10  HEALTHY",
        "silent   availability  99.9%   30d           43.20         -          -      -         -  UNKNOWN",
        "silent   latency       95%     30d         2160.00         -          -      -         -  UNKNOWN",
    ])


@requires_prometheus
def test_track_budget_json_and_recording(run_cli, prometheus: PrometheusServer, fixture_specs: Path,  # noqa: F811
                                         tmp_path: Path) -> None:
    db = str(tmp_path / "s.duckdb")
    code, out, err = run_cli("track-budget", "--service", "alpha", "--services", str(fixture_specs),
                             "--prometheus", prometheus.url, "--at", "2024-05-01T12:00:00Z", "--json",
                             "--state", db)
    assert (code, err) == (0, "")
    alpha = json.loads(out)["budgets"][0]
    assert {k: alpha[k] for k in ("budget_minutes", "consumed_minutes", "remaining_minutes",
                                  "remaining_percent", "status", "evaluated_at")} == {
        "budget_minutes": 43.2, "consumed_minutes": 21.6, "remaining_minutes": 21.6, "remaining_percent": 50,
        "status": "HEALTHY", "evaluated_at": "2024-05-01T12:00:00Z"}
    with connect(db) as con:
        rows = con.execute("SELECT service, slo, evaluated_at, CAST(remaining_minutes AS VARCHAR), status "
                           "FROM error_budgets ORDER BY slo").fetchall()
        slos = con.execute("SELECT service, slo, CAST(objective AS VARCHAR), tier FROM slos ORDER BY slo").fetchall()
    assert rows == [("alpha", "availability", datetime(2024, 5, 1, 12), "21.600000", "HEALTHY"),
                    ("alpha", "latency", datetime(2024, 5, 1, 12), "1944.000000", "HEALTHY")]
    assert slos == [("alpha", "availability", "0.999000000", 1), ("alpha", "latency", "0.950000000", 1)]


def test_track_budget_needs_a_url_and_a_known_service(run_cli, fixture_specs: Path,  # noqa: F811
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    assert run_cli("track-budget", "--all", "--services", str(fixture_specs))[2] == (
        "nthlayer track-budget: error: no Prometheus URL: pass --prometheus URL or set PROMETHEUS_URL\n")
    assert run_cli("track-budget", "--service", "nope", "--services", str(fixture_specs),
                   "--prometheus", "http://127.0.0.1:9")[2] == (
        f"nthlayer track-budget: error: no spec for service 'nope' in {fixture_specs}\n")


@requires_prometheus
def test_interval_samples_until_interrupted(prometheus: PrometheusServer, fixture_specs: Path,  # noqa: F811
                                            tmp_path: Path) -> None:
    # "Now" lies past the backfilled data, so samples are UNKNOWN; what matters is the loop and the exit.
    db = str(tmp_path / "s.duckdb")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "nthlayer", "track-budget", "--service", "alpha",
                             "--services", str(fixture_specs), "--prometheus", prometheus.url, "--interval", "1s",
                             "--json", "--state", db], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=str(tmp_path),
                            # A suite started in the background by a shell without job control runs with
                            # SIGINT ignored, which the child would inherit: give it the default, as a terminal would.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    time.sleep(0.2)  # let the second sample's write finish before interrupting
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [len(json.loads(line)["budgets"]) for line in lines] == [2, 2]
    with connect(db) as con:
        samples = con.execute("SELECT count(DISTINCT evaluated_at) FROM error_budgets").fetchall()[0][0]
    assert samples >= 2
