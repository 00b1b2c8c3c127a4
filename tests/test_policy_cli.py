"""``nthlayer policy check`` and ``policy input``, and validate's policy lines, as a user runs them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT

CATALOG = str(ROOT / "rules_catalog")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NTHLAYER_CONFIG", raising=False)
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "ok.yaml").write_text("service: ok\ntier: 2\nteam: t\n"
                                                   "pagerduty:\n  escalation_policy_id: PABC123\n")
    return tmp_path


def test_policy_check_passes_and_counts(project: Path, run_cli) -> None:
    assert run_cli("policy", "check", "--catalog", CATALOG) == (0, "1 spec passes 7 policies\n", "")


def test_policy_check_reports_denies_and_warnings(project: Path, run_cli) -> None:
    (project / "services" / "crit.yaml").write_text("service: crit\ntier: 1\nteam: t\n")
    code, out, err = run_cli("policy", "check", "--catalog", CATALOG)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "services/crit.yaml:2:1: policy tier1-pagerduty: tier-1 service 'crit' must route its pages to PagerDuty: "
        "list pagerduty.escalation_emails or schedule_ids, or reference pagerduty.escalation_policy_id or service_id",
        "services/crit.yaml:2:1: policy tier1-runbook: warning: tier-1 service 'crit' has no runbook_url: "
        "its pages would link no runbook",
        "1 error in 1 file"]


def test_policy_check_strict_fails_on_a_warning(project: Path, run_cli) -> None:
    (project / "services" / "crit.yaml").write_text("service: crit\ntier: 1\nteam: t\n"
                                                    "pagerduty:\n  service_id: PXXXXXX\n")
    assert run_cli("policy", "check", "--catalog", CATALOG)[0] == 0
    code, out, err = run_cli("policy", "check", "--strict", "--catalog", CATALOG, "services/crit.yaml")
    assert (code, err) == (1, "services/crit.yaml:2:1: policy tier1-runbook: tier-1 service 'crit' has no "
                              "runbook_url: its pages would link no runbook\n1 error in 1 file\n")


def test_policy_check_names_an_invalid_spec_it_cannot_judge(project: Path, run_cli) -> None:
    (project / "services" / "bad.yaml").write_text("service: bad\ntier: 7\nteam: t\n")
    code, _, err = run_cli("policy", "check", "--catalog", CATALOG)
    assert code == 1
    assert err.splitlines()[0].startswith("services/bad.yaml:2:7: /tier: ")


def test_a_broken_policy_is_one_line_and_exit_1(project: Path, run_cli) -> None:
    (project / "own.rego").write_text("package nthlayer.policies.own\n\ndeny contains x if {\n  x := \n}\n")
    (project / "nthlayer.toml").write_text('[policy]\npaths = ["own.rego"]\n')
    for command in (("policy", "check"), ("validate",)):
        assert run_cli(*command, "--catalog", CATALOG) == (1, "", "own.rego:4:5: Invalid assignment operator\n")


def test_validate_prints_policy_lines_among_the_others(project: Path, run_cli) -> None:
    (project / "services" / "db.yaml").write_text(
        "service: db\ntier: 2\nteam: t\ndependencies:\n  technologies:\n    - {type: postgres, name: main}\n"
        "pagerduty:\n  escalation_policy_id: PABC123\n")
    code, out, err = run_cli("validate", "--catalog", CATALOG)
    assert (code, out) == (1, "")
    assert err == ("services/db.yaml:6:7: policy database-selector: database dependency postgres 'main' has no "
                   "selector: its alerts would fire for every postgres instance Prometheus scrapes; add a selector "
                   "naming this one (e.g. {cluster: main})\n1 error in 1 file\n")


def test_policy_input_prints_the_document(project: Path, run_cli) -> None:
    code, out, err = run_cli("policy", "input", "services/ok.yaml", "--catalog", CATALOG)
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["path"] == "services/ok.yaml"
    assert (document["service"], document["tier"], document["tier_name"]) == ("ok", 2, "standard")
    assert [(s["name"], s["objective"], s["objective_pointer"]) for s in document["slos"]] == [
        ("availability", 0.995, "/tier"), ("latency", 0.95, "/tier")]
    assert document["pagerduty"]["escalation"] == "referenced"
    assert document["tier_policy"]["availability"] == 0.995
