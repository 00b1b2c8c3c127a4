"""The CLI as a client (--api) and the budget endpoints, against a real server over the Prometheus fixture:
the same output and exit codes as the local commands; the key is never printed."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from api_fixture import ApiServer, start_api
from prom_fixture import (PrometheusServer, fixture_specs, prometheus, prometheus_blocks,  # noqa: F401
                          requires_prometheus)

AT = "2024-05-01T12:00:00Z"
pytestmark = requires_prometheus


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, prometheus: PrometheusServer,  # noqa: F811
        fixture_specs: Path) -> Iterator[ApiServer]:  # noqa: F811
    server = start_api(tmp_path_factory.mktemp("api"), fixture_specs, "--prometheus", prometheus.url)
    yield server
    server.stop()


@pytest.fixture
def with_key(api: ApiServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NTHLAYER_API_KEY", api.keys["ci"])
    monkeypatch.setenv("NTHLAYER_PROMETHEUS_BACKOFF", "0.01")
    return api.keys["ci"]


def test_error_budgets_match_track_budget(run_cli, api: ApiServer, prometheus: PrometheusServer,  # noqa: F811
                                          fixture_specs: Path, tmp_path: Path) -> None:  # noqa: F811
    code, out, _ = run_cli("track-budget", "--service", "alpha", "--services", str(fixture_specs), "--prometheus",
                           prometheus.url, "--at", AT, "--json", "--state", str(tmp_path / "local.duckdb"))
    assert code == 0
    local = json.loads(out)["budgets"]
    answer = api.get(f"/api/v1/error-budgets?service=alpha&at={AT}", key="ci")
    assert answer.status_code == 200
    assert answer.json()["budgets"] == local
    one = api.get(f"/api/v1/error-budgets/alpha-availability?at={AT}", key="ci").json()["budgets"]
    assert one == [b for b in local if b["slo"] == "availability"]
    assert one[0]["remaining_minutes"] == 21.6
    every = api.get(f"/api/v1/error-budgets?at={AT}", key="ci").json()["budgets"]
    assert {b["service"] for b in every} == {"alpha", "beta", "gamma", "delta", "epsilon", "silent"}
    assert api.get("/api/v1/error-budgets/alpha-throughput", key="ci").status_code == 404
    assert api.get(f"/api/v1/error-budgets?service=ghost&at={AT}", key="ci").status_code == 422
    ready = api.get("/readyz", key=None).json()
    assert ready["checks"] == {"state": "ok", "prometheus": "ok"}


@pytest.mark.parametrize("service, exit_code", [("alpha", 0), ("delta", 2), ("silent", 3)])
def test_check_deploy_over_the_api_prints_what_the_local_gate_prints(
        run_cli, api: ApiServer, with_key: str, prometheus: PrometheusServer,  # noqa: F811
        fixture_specs: Path, tmp_path: Path, service: str, exit_code: int) -> None:  # noqa: F811
    common = ("check-deploy", "--service", service, "--at", AT, "--version", "v1")
    for json_flag in ((), ("--json",)):
        local = run_cli(*common, *json_flag, "--services", str(fixture_specs), "--prometheus", prometheus.url,
                        "--state", str(tmp_path / "local.duckdb"))
        remote = run_cli(*common, *json_flag, "--api", api.url)
        assert remote == local
        assert remote[0] == exit_code
        assert with_key not in remote[1] + remote[2]


def test_record_and_correlate_over_the_api(run_cli, api: ApiServer, with_key: str, fixture_specs: Path,  # noqa: F811
                                           prometheus: PrometheusServer, tmp_path: Path) -> None:  # noqa: F811
    local_state = str(tmp_path / "local.duckdb")
    for args in (("record-deploy", "--service", "beta", "--version", "r1", "--commit", "c0ffee", "--at", AT),
                 ("record-deploy", "--service", "beta", "--version", "r1", "--at", AT),
                 ("correlate-deploy", "--service", "beta", "--deploy", "r1", "--services", str(fixture_specs)),
                 ("correlate-deploy", "--service", "beta", "--deploy", "r1", "--json"),
                 ("correlate-deploy", "--service", "beta", "--deploy", "r9")):
        # The server reads the same Prometheus for the metrics factor as the local command is given.
        metrics = ("--prometheus", prometheus.url) if args[0] == "correlate-deploy" else ()
        local = run_cli(*args, *metrics, "--state", local_state)
        remote = run_cli(*[a for a in args if a not in ("--services", str(fixture_specs))], "--api", api.url)
        assert remote[0] == local[0], args
        assert remote[1] == local[1], args
        assert with_key not in remote[1] + remote[2]
    assert run_cli("record-deploy", "--service", "beta", "--version", "r2", "--api", api.url)[1].startswith(
        "recorded: beta r2 at ")


def test_client_errors(run_cli, api: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NTHLAYER_API_KEY", raising=False)
    code, _, err = run_cli("record-deploy", "--service", "beta", "--version", "1", "--api", api.url)
    assert (code, err) == (1, "nthlayer record-deploy: error: --api needs an API key in $NTHLAYER_API_KEY "
                              "(see 'nthlayer api-key create')\n")
    monkeypatch.setenv("NTHLAYER_API_KEY", api.keys["revoked"])
    code, out, err = run_cli("record-deploy", "--service", "beta", "--version", "1", "--api", api.url)
    assert (code, out) == (1, "")
    assert err == ("nthlayer record-deploy: error: the NthLayer API answered 401: the API key or token is not "
                   "valid (unknown, revoked or expired)\n")
    assert api.keys["revoked"] not in err
    monkeypatch.setenv("NTHLAYER_API_KEY", api.keys["ci"])
    code, _, err = run_cli("check-deploy", "--service", "alpha", "--api", "http://127.0.0.1:9")
    assert code == 3
    assert err == ("nthlayer check-deploy: cannot reach the NthLayer API at http://127.0.0.1:9: ConnectionError; "
                   "cannot decide\n")
    code, _, err = run_cli("check-deploy", "--service", "nope", "--api", api.url)
    assert (code, err) == (1, "nthlayer check-deploy: error: the NthLayer API answered 422: no spec for service "
                              f"'nope' in {api.services}\n")
