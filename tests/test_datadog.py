"""Datadog: desired state (golden, build kind), and setup-datadog against a stateful TLS fake of its API."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, UPDATE_GOLDEN
from datadog_fake import RATE_LIMIT_HEADERS, ApiError, Fault, FakeDatadog, check_body
from generators.datadog import datadog_files, dd_window, desired_state
from generators.slo_maths import burn_factor
from generators.slo_rules import enabled_burn_windows
from generators.spec import validate_specs

GOLDEN = ROOT / "tests" / "golden" / "datadog"


@pytest.mark.parametrize("case", sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()))
def test_golden_desired_state(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN / case)
    result = validate_specs(["services"], None)
    assert result.errors == []
    written = set()
    for spec in result.specs:
        for path, data in datadog_files(spec.service, os.path.join("out", spec.service.name)).items():
            expected = GOLDEN / case / "expected" / os.path.relpath(path, "out")
            written.add(os.path.relpath(path, "out"))
            if UPDATE_GOLDEN:
                expected.parent.mkdir(parents=True, exist_ok=True)
                expected.write_bytes(data)
            assert data.decode() == expected.read_text(encoding="utf-8"), path
    on_disk = {str(p.relative_to(GOLDEN / case / "expected")) for p in (GOLDEN / case / "expected").rglob("*.json")}
    assert written == on_disk  # a service without a datadog: block has no datadog.json


def test_monitors_use_the_prometheus_alert_windows_and_factors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN / "basic")
    service = next(s.service for s in validate_specs(["services"], None).specs if s.service.name == "checkout")
    slo = service.slo("availability")
    queries = [m["body"]["query"] for m in desired_state(service)["monitors"]]
    wanted = [f'burn_rate("{{slo_id}}").over("30d").long_window("{dd_window(w.long)}").short_window("{dd_window(w.short)}") > '
              f'{burn_factor(w, 30)}' for w, _ in enabled_burn_windows(service, slo) if w.long != "3d"]
    assert queries == wanted and len(wanted) == 3
    assert [m["body"]["options"]["thresholds"]["critical"] for m in desired_state(service)["monitors"]] == [
        burn_factor(w, 30) for w, _ in enabled_burn_windows(service, slo) if w.long != "3d"]


def test_the_build_writes_datadog_json_only_with_a_datadog_block_and_removes_it_with_the_block(
        tmp_path: Path) -> None:
    from test_doit_build import _doit, _ran

    shutil.copytree(GOLDEN / "basic" / "services", tmp_path / "services")
    first = _doit(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    out = tmp_path / "out"
    assert sorted(p.parent.name for p in out.glob("*/datadog.json")) == ["checkout", "ledger"]
    assert (out / "checkout" / "datadog.json").read_bytes() == (
        GOLDEN / "basic" / "expected" / "checkout" / "datadog.json").read_bytes()
    assert _ran(_doit(tmp_path)) == []  # the optional kind keeps the no-op build a no-op
    spec = tmp_path / "services" / "ledger.yaml"
    spec.write_text(spec.read_text().split("datadog:")[0])
    third = _doit(tmp_path)
    assert third.returncode == 0, third.stdout + third.stderr
    assert [task for task in _ran(third) if task.startswith("service:")] == ["service:ledger"]
    assert not (out / "ledger" / "datadog.json").exists() and (out / "ledger" / "pagerduty.json").exists()


# ---------------------------------------------------------------- setup-datadog against the fake

API_KEY = "ddapi-TESTKEY-do-not-print-4fQ2"
APP_KEY = "ddapp-TESTKEY-do-not-print-9zW7"


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with FakeDatadog(API_KEY, APP_KEY, str(tmp_path / "certs")) as server:
        for name in ("DD_API_KEY_FILE", "DD_APP_KEY_FILE", "DD_SITE", "SSL_CERT_DIR"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("DD_API_KEY", API_KEY)
        monkeypatch.setenv("DD_APP_KEY", APP_KEY)
        monkeypatch.setenv("DD_SITE", "datadoghq.eu")
        monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("NTHLAYER_STATE", str(tmp_path / "state" / "nthlayer.duckdb"))
        monkeypatch.setenv("NTHLAYER_DD_BACKOFF", "0.001")
        shutil.copytree(GOLDEN / "basic" / "services", tmp_path / "services")
        monkeypatch.chdir(tmp_path)
        yield server


def _setup(run_cli, fake: FakeDatadog, *extra: str) -> tuple[int, str, str]:
    return run_cli("setup-datadog", "services/checkout.yaml", "--api-url", fake.url, *extra)


FIRST_PLAN = """\
checkout (services/checkout.yaml):
  + service definition "checkout"
  + SLO "checkout availability"
  + SLO "checkout latency"
  + monitor "checkout availability SLOBurnRateFast"
  + monitor "checkout availability SLOBurnRateMedium"
  + monitor "checkout availability SLOBurnRateSlow"
Plan: 6 to create, 0 to update, 0 unchanged.
"""


def _no_secret_anywhere(*texts: str, root: Path) -> None:
    for text in texts:
        assert API_KEY not in text and APP_KEY not in text
    for path in root.rglob("*"):
        if path.is_file() and "certs" not in path.parts:
            data = path.read_bytes()
            assert API_KEY.encode() not in data and APP_KEY.encode() not in data, path


def test_apply_creates_everything_then_a_second_run_writes_nothing(fake: FakeDatadog, run_cli,
                                                                    tmp_path: Path) -> None:
    code, out, err = _setup(run_cli, fake)
    assert (code, err) == (0, "")
    assert out.split("\n", 1)[1].startswith(FIRST_PLAN)
    assert out.endswith("Apply complete: 6 created, 0 updated, 6 write requests.\n")
    assert fake.definitions["checkout"]["schema-version"] == "v2.2"
    [slo_id] = [i for i, s in fake.slos.items() if s["type"] == "metric"]
    assert sorted(m["query"] for m in fake.monitors.values())[0].startswith(f'burn_rate("{slo_id}").over("30d")')
    assert {m["message"].rsplit(" ", 1)[1] for m in fake.monitors.values()} == {"@pagerduty-checkout"}
    writes = fake.writes

    code, out2, err = _setup(run_cli, fake)
    assert (code, err) == (0, "")
    assert "Plan: 0 to create, 0 to update, 6 unchanged.\n" in out2
    assert out2.endswith("Apply complete: 0 created, 0 updated, 0 write requests.\n")
    assert fake.writes == writes
    from nthlayer.state.db import connect

    with connect(str(tmp_path / "state" / "nthlayer.duckdb")) as con:
        rows = con.execute("SELECT action, service, result FROM audit ORDER BY recorded_at").fetchall()
    assert rows == [("setup-datadog", "checkout", "applied")] * 2
    _no_secret_anywhere(out, out2, root=tmp_path)


def test_drift_is_shown_and_put_back(fake: FakeDatadog, run_cli) -> None:
    assert _setup(run_cli, fake)[0] == 0
    [monitor] = [m for m in fake.monitors.values() if m["name"].endswith("Fast")]
    monitor["options"] = {"thresholds": {"critical": 20}}
    code, out, _ = _setup(run_cli, fake)
    assert code == 0
    assert (f'  ~ monitor "checkout availability SLOBurnRateFast" {monitor["id"]} (1 field differs)\n'
            '      options: {"thresholds": {"critical": 20}} -> {"thresholds": {"critical": 14.4}}\n') in out
    assert out.endswith("Apply complete: 0 created, 1 updated, 1 write requests.\n")
    assert fake.monitors[monitor["id"]]["options"]["thresholds"]["critical"] == 14.4


def test_monitors_of_an_slo_deleted_in_datadog_follow_its_recreation(fake: FakeDatadog, run_cli) -> None:
    assert _setup(run_cli, fake)[0] == 0
    [old_id] = [i for i, s in fake.slos.items() if s["type"] == "metric"]
    del fake.slos[old_id]
    code, out, err = _setup(run_cli, fake)
    assert (code, err) == (0, "")
    assert "  + SLO \"checkout availability\"\n" in out
    assert (f'burn_rate(\\"{old_id}\\").over(\\"30d\\").long_window(\\"1h\\").short_window(\\"5m\\") > 14.4" -> '
            '"burn_rate(\\"(known after apply)\\")') in out
    assert "Plan: 1 to create, 3 to update, 2 unchanged." in out
    [new_id] = [i for i, s in fake.slos.items() if s["type"] == "metric"]
    assert all(m["query"].startswith(f'burn_rate("{new_id}")') for m in fake.monitors.values())
    assert len(fake.monitors) == 3


def test_dry_run_without_keys_contacts_nobody(fake: FakeDatadog, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DD_API_KEY")
    monkeypatch.delenv("DD_APP_KEY")
    code, out, err = _setup(run_cli, fake, "--dry-run")
    assert (code, err) == (0, "")
    assert out.startswith(f"Datadog plan (no keys: nothing read) — {fake.url}\n")
    assert "Plan: 6 to create, 0 to update, 0 unchanged.\nDry run: nothing was changed.\n" in out
    assert fake.requests == []
    code, out, err = _setup(run_cli, fake)
    assert code == 1 and err == (
        "nthlayer setup-datadog: error: no Datadog API key and application key: set DD_API_KEY and DD_APP_KEY (or "
        "DD_API_KEY_FILE and DD_APP_KEY_FILE), or store references with 'nthlayer config set datadog.api_key "
        "--from-vault vault://PATH#field' (and datadog.app_key) (or use --dry-run to plan without them)\n")


def test_a_dry_run_with_keys_reads_only(fake: FakeDatadog, run_cli) -> None:
    assert _setup(run_cli, fake, "--dry-run")[0] == 0
    assert fake.requests and fake.writes == 0


def test_bad_keys_are_a_clear_error_without_traceback(fake: FakeDatadog, run_cli,
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DD_APP_KEY", "wrong-app-key-SECRET-77")
    code, out, err = _setup(run_cli, fake)
    assert code == 1 and "Traceback" not in err
    assert err == (
        "nthlayer setup-datadog: error: Datadog rejected the API or application key (HTTP 403) for reading the "
        "service definition of checkout: check DD_API_KEY and DD_APP_KEY (or DD_API_KEY_FILE / DD_APP_KEY_FILE, "
        "or 'nthlayer config get datadog.api_key'), and DD_SITE or --api-url for the account's site\n")
    assert "wrong-app-key-SECRET-77" not in out + err and fake.writes == 0


def test_a_missing_permission_names_the_write(fake: FakeDatadog, run_cli) -> None:
    fake.faults.append(Fault("POST", "/api/v1/slo", 403, times=None))
    code, out, err = _setup(run_cli, fake)
    assert code == 1
    assert err.startswith('nthlayer setup-datadog: error: Datadog refused creating SLO "checkout availability" '
                          "(HTTP 403): the application key lacks a permission it needs (injected 403)")


def test_rate_limits_wait_for_the_reset_and_5xx_on_reads_are_retried(fake: FakeDatadog, run_cli,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib3.util.retry

    slept: list[float] = []  # what the retries waited, instead of waiting it
    monkeypatch.setattr(urllib3.util.retry.time, "sleep", slept.append)
    fake.faults += [Fault("POST", "/api/v1/slo", 429, times=2, headers={**RATE_LIMIT_HEADERS, "X-RateLimit-Reset": "7"}),
                    Fault("GET", "/api/v1/monitor", 503, times=1)]
    code, out, err = _setup(run_cli, fake)
    assert code == 0, err
    assert slept == [7, 7]  # the reset Datadog named, twice (urllib3 retries a first 503 at once, unslept)
    assert err.count("HTTP 429, retrying") == 2 and err.count("HTTP 503, retrying") == 1
    assert len(fake.slos) == 2 and len(fake.monitors) == 3
    assert [r[2] for r in fake.requests if r[:2] == ("POST", "/api/v1/slo")] == [429, 429, 200, 200]


def test_a_post_that_failed_after_creating_is_not_resent_and_the_rerun_resumes(fake: FakeDatadog, run_cli) -> None:
    fake.faults.append(Fault("POST", "/api/v1/monitor", 500, times=1, after_commit=True))
    code, out, err = _setup(run_cli, fake)
    assert code == 1 and "Traceback" not in err
    assert err.startswith('nthlayer setup-datadog: error: Datadog answered creating monitor "checkout availability '
                          'SLOBurnRateFast" with HTTP 500: injected 500 after commit; a rerun resumes')
    assert [r[2] for r in fake.requests if r[:2] == ("POST", "/api/v1/monitor")] == [500]  # not re-sent
    code, out, err = _setup(run_cli, fake)
    assert (code, err) == (0, "")
    assert "Plan: 2 to create, 0 to update, 4 unchanged." in out
    assert len(fake.monitors) == 3 and len(fake.slos) == 2  # no duplicates


def test_the_fake_rejects_what_datadogs_definitions_reject() -> None:
    check_body("POST /api/v1/slo", {"type": "metric", "name": "x", "thresholds": [{"timeframe": "30d",
                                                                                     "target": 99.9}]})
    with pytest.raises(ApiError) as bad:
        check_body("POST /api/v1/slo", {"type": "metric", "name": "x", "thresholds": [{"timeframe": "2d",
                                                                                         "target": 99.9}]})
    assert bad.value.status == 400 and "thresholds/0/timeframe: '2d' is not one of" in bad.value.errors[0]
    with pytest.raises(ApiError) as bad:
        check_body("POST /api/v2/services/definitions", {"schema-version": "v2.2", "dd-service": "a", "tier": 1})
    assert bad.value.status == 400
    with pytest.raises(ApiError) as bad:
        check_body("POST /api/v1/monitor", {"type": "slo alert", "query": "q", "nmae": "typo"})
    assert "/nmae: unknown field" in bad.value.errors


def test_http_api_url_is_refused(fake: FakeDatadog, run_cli) -> None:
    code, out, err = run_cli("setup-datadog", "services/checkout.yaml", "--api-url", "http://127.0.0.1:1")
    assert code == 1 and err == ("nthlayer setup-datadog: error: --api-url must be an https:// URL "
                                 "(got http://127.0.0.1:1)\n")
    assert fake.requests == []


def test_a_service_for_another_site_is_skipped(fake: FakeDatadog, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DD_SITE", "datadoghq.com")
    code, out, err = _setup(run_cli, fake)
    assert (code, err) == (0, "")
    assert out == ("Skipped services/checkout.yaml: its datadog.site is datadoghq.eu, this run targets "
                   "datadoghq.com (DD_SITE)\n")
