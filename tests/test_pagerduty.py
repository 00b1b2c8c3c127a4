"""PagerDuty: desired state (golden), and setup-pagerduty against a stateful fake API over TLS."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from conftest import ROOT, UPDATE_GOLDEN
from generators.pagerduty import escalation_rules, pagerduty_files
from generators.spec import validate_specs
from pagerduty_fake import Fault, FakePagerDuty

GOLDEN = ROOT / "tests" / "golden" / "pagerduty"
API_KEY = "u+TESTKEY-do-not-print-7Qx9"


# ---------------------------------------------------------------- desired state

@pytest.mark.parametrize("case", sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()))
def test_golden_desired_state(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN / case)
    result = validate_specs(["services"], None)
    assert result.errors == []
    for spec in result.specs:
        for path, data in pagerduty_files(spec.service, os.path.join("out", spec.service.name)).items():
            expected = GOLDEN / case / "expected" / os.path.relpath(path, "out")
            if UPDATE_GOLDEN:
                expected.parent.mkdir(parents=True, exist_ok=True)
                expected.write_bytes(data)
            assert data.decode() == expected.read_text(encoding="utf-8"), path


def test_rules_follow_tier_delays_and_keep_every_target() -> None:
    targets = [{"type": "schedule_reference", "id": f"PS{i}"} for i in range(4)]
    assert escalation_rules((10, 15, 30), targets) == [
        {"escalation_delay_in_minutes": 10, "targets": [targets[0]]},
        {"escalation_delay_in_minutes": 15, "targets": [targets[1]]},
        {"escalation_delay_in_minutes": 30, "targets": [targets[2], targets[3]]},
    ]
    assert escalation_rules((10, 15, 30), targets[:1]) == [{"escalation_delay_in_minutes": 10, "targets": [targets[0]]}]
    assert escalation_rules((30,), []) == []


# ---------------------------------------------------------------- the fake and the CLI

@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with FakePagerDuty(API_KEY, str(tmp_path)) as server:
        server.add_schedule("Payments primary")  # PS00001
        server.add_user("Lead", "lead@example.com")  # PU00002
        server.add_user("Head", "head@example.com")  # PU00003
        for name in ("PAGERDUTY_API_KEY_FILE", "PAGERDUTY_API_URL", "SSL_CERT_DIR"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("PAGERDUTY_API_KEY", API_KEY)
        monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("NTHLAYER_STATE", str(tmp_path / "state" / "nthlayer.duckdb"))
        monkeypatch.setenv("NTHLAYER_PD_BACKOFF", "0.001")
        monkeypatch.chdir(tmp_path)
        yield server


def _spec(tmp_path: Path, name: str = "checkout", pagerduty: str = "") -> None:
    folder = tmp_path / "services"
    folder.mkdir(exist_ok=True)
    block = pagerduty or "  schedule_ids: [PS00001]\n  escalation_emails: [lead@example.com, head@example.com]\n"
    (folder / f"{name}.yaml").write_text(f"service: {name}\ntier: 1\nteam: payments\npagerduty:\n{block}",
                                         encoding="utf-8")


def _setup(run_cli, fake: FakePagerDuty, *extra: str) -> tuple[int, str, str]:
    return run_cli("setup-pagerduty", "services", "--api-url", fake.url, *extra)


FIRST_PLAN = """\
checkout (services/checkout.yaml):
  + team "payments"
      name: "payments"
  + escalation policy "checkout escalation"
      name: "checkout escalation"
      description: "Escalation for checkout (tier 1 critical). Managed by nthlayer."
      escalation_rules: [{"escalation_delay_in_minutes": 10, "targets": [{"id": "PS00001", "type": "schedule_reference"}]}, \
{"escalation_delay_in_minutes": 15, "targets": [{"id": "PU00002", "type": "user_reference"}]}, \
{"escalation_delay_in_minutes": 30, "targets": [{"id": "PU00003", "type": "user_reference"}]}]
      teams: [{"id": "(known after apply)", "type": "team_reference"}]
  + service "checkout"
      name: "checkout"
      description: "checkout: tier 1 (critical), team payments. Managed by nthlayer."
      auto_resolve_timeout: 14400
      acknowledgement_timeout: 1800
      incident_urgency_rule: {"type": "constant", "urgency": "severity_based"}
      escalation_policy: (known after apply)
  + integration "Alertmanager (nthlayer)"
      name: "Alertmanager (nthlayer)"
Plan: 4 to create, 0 to update, 0 unchanged.
"""


def test_apply_creates_everything_then_second_run_writes_nothing(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    _spec(tmp_path)
    code, out, err = _setup(run_cli, fake)
    assert (code, err) == (0, "")
    assert out.split("\n", 1)[1].startswith(FIRST_PLAN)
    assert out.endswith("Apply complete: 4 created, 0 updated, 4 write requests.\n")
    [team], [policy], [service] = fake.all("teams"), fake.all("escalation_policies"), fake.all("services")
    assert policy["teams"] == [{"id": team["id"], "type": "team_reference"}]
    assert [r["escalation_delay_in_minutes"] for r in policy["escalation_rules"]] == [10, 15, 30]
    assert service["escalation_policy"]["id"] == policy["id"]
    assert (service["acknowledgement_timeout"], service["incident_urgency_rule"]["urgency"]) == (1800, "severity_based")
    assert len(fake.all_integrations()) == 1
    writes = fake.writes

    code, out, err = _setup(run_cli, fake)
    assert (code, err) == (0, "")
    assert "Plan: 0 to create, 0 to update, 4 unchanged.\n" in out
    assert out.endswith("Apply complete: 0 created, 0 updated, 0 write requests.\n")
    assert fake.writes == writes


def test_drift_is_shown_field_by_field_and_put_back(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    _spec(tmp_path)
    assert _setup(run_cli, fake)[0] == 0
    [service] = fake.all("services")
    service["acknowledgement_timeout"] = 600
    service["incident_urgency_rule"] = {"type": "constant", "urgency": "low"}
    code, out, _ = _setup(run_cli, fake)
    assert code == 0
    assert (f'  ~ service "checkout" {service["id"]} (2 fields differ)\n'
            "      acknowledgement_timeout: 600 -> 1800\n"
            '      incident_urgency_rule: {"type": "constant", "urgency": "low"} -> '
            '{"type": "constant", "urgency": "severity_based"}\n') in out
    assert "Plan: 0 to create, 1 to update, 3 unchanged." in out
    assert [r for r in fake.requests if r[0] != "GET"][-1] == ("PUT", f"/services/{service['id']}", 200)
    assert fake.all("services")[0]["acknowledgement_timeout"] == 1800


def test_dry_run_without_key_contacts_nobody(fake: FakePagerDuty, run_cli, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAGERDUTY_API_KEY")
    _spec(tmp_path, pagerduty="  escalation_policy_id: PEXIST1\n")
    code, out, err = _setup(run_cli, fake, "--dry-run")
    assert (code, err) == (0, "")
    assert out.startswith("PagerDuty plan (no API key: nothing read, ids not checked) — not contacted\n")
    assert '  = escalation policy "checkout escalation" PEXIST1 (referenced by id, not checked)\n' in out
    assert "Plan: 3 to create, 0 to update, 1 unchanged.\nDry run: nothing was changed.\n" in out
    assert fake.requests == []


def test_dry_run_with_key_only_reads(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    _spec(tmp_path)
    code, out, _ = _setup(run_cli, fake, "--dry-run")
    assert code == 0 and "Plan: 4 to create" in out
    assert fake.requests and {method for method, _, _ in fake.requests} == {"GET"}


def test_apply_without_key_is_refused(fake: FakePagerDuty, run_cli, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAGERDUTY_API_KEY")
    _spec(tmp_path)
    code, out, err = _setup(run_cli, fake)
    assert (code, out) == (1, "")
    assert err.startswith("nthlayer setup-pagerduty: error: no PagerDuty API key: set PAGERDUTY_API_KEY")


def test_key_file_is_read(fake: FakePagerDuty, run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAGERDUTY_API_KEY")
    (tmp_path / "pd.key").write_text(API_KEY + "\n", encoding="utf-8")
    _spec(tmp_path)
    monkeypatch.setenv("PAGERDUTY_API_KEY_FILE", str(tmp_path / "pd.key"))
    assert _setup(run_cli, fake)[0] == 0
    assert len(fake.all("services")) == 1


def test_wrong_key_is_one_clear_line(fake: FakePagerDuty, run_cli, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGERDUTY_API_KEY", "not-the-key-1234")
    _spec(tmp_path)
    code, out, err = _setup(run_cli, fake)
    assert code == 1 and out == ""
    assert err == ("nthlayer setup-pagerduty: error: PagerDuty rejected the API key (HTTP 401): check "
                   "PAGERDUTY_API_KEY, --api-key-file or the pagerduty.api_key reference ('nthlayer config get "
                   "pagerduty.api_key'), and --api-url for the account's region\n")
    assert "1234" not in err


def test_read_only_key_fails_on_first_write(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    fake.forbid_writes = True
    _spec(tmp_path)
    code, _, err = _setup(run_cli, fake)
    assert code == 1
    assert err == ('nthlayer setup-pagerduty: error: PagerDuty refused creating team "payments" (HTTP 403): the API '
                   "key lacks permission for it (a read-only key cannot create or update) — done before the "
                   "failure: nothing. Re-running setup-pagerduty finishes the job without duplicates\n")


def test_unknown_ids_and_emails_are_spec_errors(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    _spec(tmp_path, pagerduty="  escalation_policy_id: PABC123\n  schedule_ids: [PNOSUCH]\n"
                              "  escalation_emails: [ghost@example.com]\n")
    code, out, err = _setup(run_cli, fake)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "services/checkout.yaml:5:25: /pagerduty/escalation_policy_id: PABC123 does not exist in PagerDuty",
        "services/checkout.yaml:6:18: /pagerduty/schedule_ids/0: PNOSUCH does not exist in PagerDuty",
        "services/checkout.yaml:7:23: /pagerduty/escalation_emails/0: no PagerDuty user has the e-mail "
        "address ghost@example.com",
    ]
    assert fake.writes == 0


def test_no_policy_source_is_a_spec_error(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    _spec(tmp_path, pagerduty="  urgency: low\n")
    code, _, err = _setup(run_cli, fake, "--dry-run")
    assert code == 1
    assert err == ("services/checkout.yaml:5:3: /pagerduty: no escalation policy for PagerDuty: set "
                   "pagerduty.escalation_policy_id or pagerduty.service_id, or list pagerduty.schedule_ids / "
                   "escalation_emails for nthlayer to build one\n")


def test_referenced_service_keeps_its_name_and_gets_tier_policy(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    policy = {"id": "PEOLD01", "type": "escalation_policy", "name": "Old policy", "teams": [],
              "escalation_rules": [{"escalation_delay_in_minutes": 5, "targets": [
                  {"id": "PU00002", "type": "user_reference"}]}]}
    fake.store.objects["escalation_policies"]["PEOLD01"] = policy
    fake.store.objects["services"]["PSOLD01"] = {
        "id": "PSOLD01", "type": "service", "name": "Legacy Checkout", "description": "hand made",
        "escalation_policy": {"id": "PEOLD01", "type": "escalation_policy_reference"},
        "auto_resolve_timeout": None, "acknowledgement_timeout": 1800,
        "incident_urgency_rule": {"type": "constant", "urgency": "severity_based"}}
    _spec(tmp_path, pagerduty="  service_id: PSOLD01\n")
    code, out, _ = _setup(run_cli, fake)
    assert code == 0
    assert '  ~ service "Legacy Checkout" PSOLD01 (1 field differs)\n      auto_resolve_timeout: null -> 14400\n' in out
    service = fake.store.objects["services"]["PSOLD01"]
    assert (service["name"], service["description"], service["escalation_policy"]["id"]) == \
        ("Legacy Checkout", "hand made", "PEOLD01")
    assert fake.all("escalation_policies") == [policy]


def test_429_is_retried(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    fake.faults.append(Fault("POST", "/teams", status=429, times=2))
    fake.faults.append(Fault("GET", "/escalation_policies", status=429, times=1))
    _spec(tmp_path)
    code, out, _ = _setup(run_cli, fake)
    assert code == 0 and "4 created" in out
    assert [s for m, p, s in fake.requests if p == "/teams" and m == "POST"] == [429, 429, 201]
    assert len(fake.all("teams")) == 1


def test_500_after_the_object_was_made_does_not_duplicate_it(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    fake.faults.append(Fault("POST", "/services", status=500, after_commit=True))
    fake.faults.append(Fault("POST", r"/services/\w+/integrations", status=502, after_commit=True))
    _spec(tmp_path)
    code, out, _ = _setup(run_cli, fake)
    assert code == 0, out
    assert len(fake.all("services")) == 1 and len(fake.all_integrations()) == 1
    assert [s for m, p, s in fake.requests if m == "POST" and p == "/services"] == [500]


def test_persistent_failure_reports_progress_and_rerun_finishes(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    fake.faults.append(Fault("POST", "/services", status=503, times=None))
    _spec(tmp_path)
    code, _, err = _setup(run_cli, fake, "--retries", "2")
    assert code == 1
    [team], [policy] = fake.all("teams"), fake.all("escalation_policies")
    assert err.endswith(
        f'nthlayer setup-pagerduty: error: PagerDuty answered creating service "checkout" with HTTP 503: '
        f'injected 503 — done before the failure: created team "payments" ({team["id"]}); created escalation '
        f'policy "checkout escalation" ({policy["id"]}). Re-running setup-pagerduty finishes the job without '
        "duplicates\n")
    assert [s for m, p, s in fake.requests if m == "POST" and p == "/services"] == [503, 503, 503]

    fake.faults.clear()
    code, out, _ = _setup(run_cli, fake)
    assert code == 0
    assert "Plan: 2 to create, 0 to update, 2 unchanged." in out
    assert [len(fake.all(k)) for k in ("teams", "escalation_policies", "services")] == [1, 1, 1]
    assert len(fake.all_integrations()) == 1


def test_crash_after_integration_created_rerun_adopts_it(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    fake.faults.append(Fault("POST", r"/services/\w+/integrations", status=500, after_commit=True, times=None))
    fake.faults.append(Fault("GET", r"/services/\w+", status=500, times=None))
    _spec(tmp_path)
    assert _setup(run_cli, fake, "--retries", "0")[0] == 1
    assert len(fake.all_integrations()) == 1
    fake.faults.clear()
    code, out, _ = _setup(run_cli, fake)
    assert code == 0 and "Plan: 0 to create, 0 to update, 4 unchanged." in out
    assert len(fake.all_integrations()) == 1


def test_slow_answer_times_out_and_is_retried(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    fake.faults.append(Fault("GET", "/teams", status=0, delay=0.5, times=1))
    _spec(tmp_path)
    code, _, err = _setup(run_cli, fake, "--timeout", "0.2")
    assert code == 0
    assert "GET" in err and "ReadTimeout" in err


def test_tls_needs_the_ca(fake: FakePagerDuty, run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    _spec(tmp_path)
    code, _, err = _setup(run_cli, fake, "--retries", "0")
    assert code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in err
    assert fake.all("teams") == []


def test_plain_http_url_is_refused(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    _spec(tmp_path)
    code, _, err = run_cli("setup-pagerduty", "services", "--api-url", "http://127.0.0.1:9")
    assert (code, err) == (1, "nthlayer setup-pagerduty: error: --api-url must be an https:// URL "
                               "(got http://127.0.0.1:9)\n")


def test_lookup_by_name_pages_through_results(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    for index in range(130):
        fake.store.objects["teams"][f"PX{index:05d}"] = {"id": f"PX{index:05d}", "type": "team",
                                                          "name": f"payments-{index}"}
    fake.store.objects["teams"]["PTLAST1"] = {"id": "PTLAST1", "type": "team", "name": "payments"}
    _spec(tmp_path)
    code, out, _ = _setup(run_cli, fake, "--dry-run")
    assert code == 0 and '  = team "payments" PTLAST1\n' in out
    offsets = [p for m, p, s in fake.requests if p == "/teams"]
    assert len(offsets) == 2


def test_keys_stay_secret_and_land_in_0600_files(fake: FakePagerDuty, run_cli, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    _spec(tmp_path)
    _spec(tmp_path, "ledger")
    fake.faults.append(Fault("POST", "/teams", status=500, times=1))
    outputs = [_setup(run_cli, fake, "--write-routing-keys", "state/secrets", "--retries", "0")]
    fake.faults.clear()
    outputs.append(_setup(run_cli, fake, "--write-routing-keys", "state/secrets"))
    outputs.append(_setup(run_cli, fake, "--dry-run"))
    assert outputs[1][0] == 0
    routing_keys = {i["service"]["id"]: i["integration_key"] for i in fake.all_integrations()}
    assert len(routing_keys) == 2
    by_name = {s["name"]: routing_keys[s["id"]] for s in fake.all("services")}
    for name, key in by_name.items():
        path = tmp_path / "state" / "secrets" / f"{name}.key"
        assert path.read_text(encoding="ascii") == key
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert f"Wrote routing key …{key[-4:]} to state/secrets/{name}.key" in outputs[1][1]
    text = "".join(out + err for _, out, err in outputs) + caplog.text
    for secret in [API_KEY, API_KEY[-6:], *by_name.values(), *(k[:-4] for k in by_name.values())]:
        assert secret not in text
    for path in tmp_path.rglob("*"):  # the state database included (issue 14 item 10b)
        if path.is_file() and "secrets" not in path.parts:
            data = path.read_bytes()
            assert API_KEY.encode() not in data and not any(k.encode() in data for k in by_name.values()), path
    store = tmp_path / "isolated-state" / "secrets"  # $NTHLAYER_SECRETS_DIR: where the keys are kept
    assert sorted(p.name for p in store.iterdir()) == ["checkout.key", "ledger.key"]
    assert stat.S_IMODE(store.stat().st_mode) == 0o700

    from nthlayer.state.pagerduty import load_integrations

    stored = load_integrations(None)
    assert {n: i.routing_key for n, i in stored.items()} == by_name


def test_desired_state_file_has_no_secret_fields(tmp_path: Path) -> None:
    _spec(tmp_path)
    [spec] = validate_specs([str(tmp_path / "services")], None).specs
    [(path, data)] = pagerduty_files(spec.service, str(tmp_path / "out" / "checkout")).items()
    assert path == str(tmp_path / "out" / "checkout" / "pagerduty.json")
    text = data.decode()
    assert "key" not in json.loads(text)["integration"]["fields"]
    assert "integration_key" not in text and "routing_key" not in text


def test_specs_without_pagerduty_settings_are_skipped(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "quiet.yaml").write_text("service: quiet\ntier: 2\nteam: ops\n", encoding="utf-8")
    code, out, err = _setup(run_cli, fake)
    assert (code, out, err) == (0, "Skipped services/quiet.yaml: no pagerduty settings in the spec\n", "")
    assert fake.requests == []


def test_retries_are_bounded_even_for_429(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    fake.faults.append(Fault("GET", "/teams", status=429, times=None))
    _spec(tmp_path)
    code, _, err = _setup(run_cli, fake, "--retries", "0")
    assert code == 1
    assert err.endswith("nthlayer setup-pagerduty: error: PagerDuty answered GET /teams?query=payments with "
                        "HTTP 429: injected 429\n")
    assert [s for m, p, s in fake.requests] == [429]
    code, _, _ = _setup(run_cli, fake, "--retries", "3")
    assert code == 1 and len(fake.requests) == 1 + 4


def test_a_database_with_routing_keys_has_them_moved_out_on_first_open(run_cli, tmp_path: Path) -> None:
    import duckdb

    db = tmp_path / "old" / "nthlayer.duckdb"
    db.parent.mkdir()
    key = "R0UTINGkey0123456789abcdefWXYZ"
    from nthlayer.state.db import MIGRATIONS, connect

    with connect(str(db)) as con:
        pass
    con = duckdb.connect(str(db))  # back to what versions before issue 14 left: schema 1, keys in a table
    con.execute("DELETE FROM schema_version WHERE version > 1")
    con.execute("DROP TABLE api_keys")  # migration 3's, made again on the next open
    con.execute("DROP TABLE budget_history")  # migration 4's, likewise
    con.execute("DROP TABLE pagerduty_integrations")
    con.execute("CREATE TABLE pagerduty_integrations (service VARCHAR PRIMARY KEY, integration_id VARCHAR NOT NULL, "
                "routing_key VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL)")
    con.execute("INSERT INTO pagerduty_integrations VALUES ('checkout', 'PINT001', ?, TIMESTAMP '2024-05-01 10:00:00')",
                [key])
    con.close()
    assert key.encode() in db.read_bytes() and [version for version, _ in MIGRATIONS][:3] == [1, 2, 3]

    code, _, err = run_cli("record-deploy", "--service", "checkout", "--version", "v1", "--state", str(db))
    assert (code, err) == (0, "")
    assert key.encode() not in db.read_bytes()
    assert not list(db.parent.glob("*.wal")) and not list(db.parent.glob("*.rewrite"))
    key_file = tmp_path / "isolated-state" / "secrets" / "checkout.key"
    assert key_file.read_text() == key and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    from nthlayer.state.pagerduty import load_integrations

    assert load_integrations(str(db)) == {"checkout": ("checkout", "PINT001", key)}
    con = duckdb.connect(str(db))
    columns = [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                         "WHERE table_name = 'pagerduty_integrations'").fetchall()]
    con.close()
    assert columns == ["service", "integration_id", "updated_at"]
