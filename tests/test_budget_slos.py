"""track-budget and check-deploy for a service's named SLOs: the kinds whose queries are the spec's own
(events, ratio_query, threshold) are read from the ratios their recording rules keep, the worst SLO
decides the gate, and a service with `slos: []` is judged by nothing but open incidents.

The recorded ratios are written as data here (their rules are proven by promtool in test_slo_kinds.py):
a real Prometheus serves them, so the queries and their label handling are the real ones.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pytest

from prom_fixture import PrometheusServer, build_tsdb, requires_prometheus, start_prometheus
from nthlayer.buildsys.project import load_services
from nthlayer.ops.budget import evaluate, plan_queries
from nthlayer.integrations.prometheus import PrometheusClient
from nthlayer.state.db import connect

END = 1714564800  # 2024-05-01T12:00:00Z
AT_TEXT = "2024-05-01T12:00:00Z"
AT = datetime.fromtimestamp(END, tz=timezone.utc)
# (SLO, window, ratio): kappa's three SLOs, tier 1.
RATIOS = [
    ("checkout-success", "30d", "0.0005"), ("checkout-success", "1h", "0.002"),  # 50 % left, burning 2x
    ("consumer-lag", "30d", "0.0095"), ("consumer-lag", "1h", "0"),  # 5 % of a 1 % budget left
    ("ingest", "30d", "0.001"), ("ingest", "1h", "0.001"),  # 80 % of a 0.5 % budget left
]
KAPPA = """service: kappa
tier: 1
team: t-kappa
slos:
  - name: checkout-success
    events:
      bad: 'checkout_failed_total{job="kappa"}'
      total: 'checkout_attempts_total{job="kappa"}'
  - name: consumer-lag
    objective: 0.99
    threshold: {query: 'max(kafka_consumergroup_lag{group="kappa"})', op: '<', value: 1000}
  - name: ingest
    objective: 0.995
    ratio_query: 'sum(rate(ingest_errors_total[$window])) / sum(rate(ingest_total[$window]))'
"""
NOSLOS = "service: lambda\ntier: 1\nteam: t-lambda\nslos: []\n"


def _openmetrics() -> str:
    lines = []
    for window in ("30d", "1h"):
        lines.append(f"# TYPE slo:sli_error:ratio_rate{window} gauge")
        for slo, at, value in RATIOS:
            if at == window:
                for t in range(END - 600, END + 1, 60):
                    lines.append(f'slo:sli_error:ratio_rate{window}{{service="kappa",slo="{slo}",team="t-kappa",'
                                 f'tier="1"}} {value} {t}')
    return "\n".join(lines + ["# EOF"]) + "\n"


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("slos") / "services"
    folder.mkdir()
    (folder / "kappa.yaml").write_text(KAPPA)
    (folder / "lambda.yaml").write_text(NOSLOS)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    root = tmp_path_factory.mktemp("prom-slos")
    running = start_prometheus(build_tsdb(root, _openmetrics()))
    yield running
    running.stop()


def test_recorded_slos_share_one_query(specs: Path) -> None:
    groups = plan_queries(load_services(str(specs)))
    assert len(groups) == 1 and groups[0].recorded == {
        ("kappa", "checkout-success"), ("kappa", "consumer-lag"), ("kappa", "ingest")}
    assert groups[0].promql == (
        'label_replace(max by (service, slo) (slo:sli_error:ratio_rate30d{service=~"kappa",'
        'slo=~"checkout-success|consumer-lag|ingest"}), "nthlayer_range", "window", "", "") or '
        'label_replace(max by (service, slo) (slo:sli_error:ratio_rate1h{service=~"kappa",'
        'slo=~"checkout-success|consumer-lag|ingest"}), "nthlayer_range", "1h", "", "")')


@requires_prometheus
def test_budgets_of_named_slos(server: PrometheusServer, specs: Path) -> None:
    client = PrometheusClient(server.url, environ={})
    reports = evaluate(client, load_services(str(specs)), AT)
    assert client.requests_sent == 1
    d = Decimal
    assert {(r.service, r.slo): (r.budget_minutes, r.remaining_percent, r.burn_rate_1h, r.status) for r in reports} == {
        ("kappa", "checkout-success"): (d("43.2000"), d("50.00"), d("2.00"), "HEALTHY"),
        ("kappa", "consumer-lag"): (d("432.0000"), d("5.00"), d("0.00"), "CRITICAL"),
        ("kappa", "ingest"): (d("216.0000"), d("80.00"), d("0.20"), "HEALTHY"),
    }


@requires_prometheus
def test_track_budget_records_every_named_slo(run_cli, server: PrometheusServer, specs: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "s.duckdb")
    code, out, err = run_cli("track-budget", "--all", "--services", str(specs), "--prometheus", server.url,
                             "--at", AT_TEXT, "--json", "--state", db)
    assert (code, err) == (0, "")
    assert [(b["service"], b["slo"]) for b in json.loads(out)["budgets"]] == [
        ("kappa", "checkout-success"), ("kappa", "consumer-lag"), ("kappa", "ingest")]
    with connect(db) as con:
        rows = con.execute("SELECT slo, status FROM error_budgets ORDER BY slo").fetchall()
    assert rows == [("checkout-success", "HEALTHY"), ("consumer-lag", "CRITICAL"), ("ingest", "HEALTHY")]


@requires_prometheus
def test_the_worst_named_slo_blocks_the_deploy(run_cli, server: PrometheusServer, specs: Path, tmp_path: Path) -> None:
    code, out, _ = run_cli("check-deploy", "--service", "kappa", "--services", str(specs), "--prometheus",
                           server.url, "--at", AT_TEXT, "--state", str(tmp_path / "s.duckdb"))
    assert (code, out) == (2, "BLOCK: deploy of kappa (tier 1)\n"
                              "  - consumer-lag SLO (99% over 30d) has 5.00% of its error budget left; "
                              "tier 1 (critical) blocks below 10%\n")


@requires_prometheus
def test_a_service_without_slos_is_judged_by_nothing_but_incidents(run_cli, server: PrometheusServer, specs: Path,
                                                                   tmp_path: Path) -> None:
    code, out, _ = run_cli("check-deploy", "--service", "lambda", "--services", str(specs), "--prometheus",
                           server.url, "--at", AT_TEXT, "--state", str(tmp_path / "s.duckdb"))
    assert (code, out) == (0, "APPROVE: deploy of lambda (tier 1)\n"
                              "  - lambda has no SLOs (slos: []): no error budget judges its deploys\n")
