"""``nthlayer init`` and ``list-templates``: routed specs, loud unrouted ones, reserved names, next steps."""
from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNROUTED = ("/pagerduty: warning: no PagerDuty routing: the pages and critical alerts of '{name}' go to "
            "Alertmanager's nthlayer-unrouted receiver, which notifies nobody; list pagerduty.escalation_emails "
            "or schedule_ids, or reference pagerduty.escalation_policy_id or service_id")


@pytest.mark.parametrize("name", ["prometheus", "alertmanager", "reports", "grafana"])
def test_reserved_names_are_ordinary_validation_errors(name: str, tmp_path: Path, run_cli) -> None:
    code, out, err = run_cli("init", name, "--team", "ops", "--services-dir", str(tmp_path))
    path = tmp_path / f"{name}.yaml"
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{path}:2:10: /service: '{name}' is reserved for shared output; choose another name",
        f"nthlayer init: error: {path} not written"]
    assert list(tmp_path.iterdir()) == []


def test_validate_rejects_a_reserved_name_at_its_place(tmp_path: Path, run_cli) -> None:
    spec = tmp_path / "metrics.yaml"
    spec.write_text("tier: 1\nteam: ops\nservice: prometheus\n", encoding="utf-8")
    code, _, err = run_cli("validate", str(spec))
    assert code == 1
    assert err.splitlines() == [
        f"{spec}:3:10: /service: 'prometheus' is reserved for shared output; choose another name", "1 error in 1 file"]


def test_init_without_targets_writes_an_unrouted_spec_and_says_so(tmp_path: Path, run_cli,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("init", "pay", "--team", "ops", "--template", "critical-api")
    path = "services/pay.yaml"
    assert code == 0
    assert out == f"wrote {path} (template critical-api); edit it, then run 'nthlayer validate {path}' " \
                  "and 'nthlayer build'\n"
    warning = f"{path}:2:1: {UNROUTED.format(name='pay')}"
    assert err.splitlines() == [
        warning,
        f"nthlayer init: {path} pages nobody yet: rerun with --escalation-email or --schedule-id, "
        "or fill in its pagerduty section"]
    assert "escalation_emails: []" not in (tmp_path / path).read_text()
    catalog = str(ROOT / "rules_catalog")
    # A critical service that pages nobody is denied by the default policy tier1-pagerduty (docs/policies.md).
    denied = (f"{path}:3:1: policy tier1-pagerduty: tier-1 service 'pay' must route its pages to PagerDuty: list "
              "pagerduty.escalation_emails or schedule_ids, or reference pagerduty.escalation_policy_id or service_id")
    assert run_cli("validate", "--catalog", catalog, path)[::2] == (1, f"{warning}\n{denied}\n1 error in 1 file\n")
    assert run_cli("validate", "--strict", "--catalog", catalog, path)[0] == 1


@pytest.mark.parametrize("template", ["critical-api", "standard-api", "grpc-service", "worker", "batch-job"])
def test_init_with_targets_writes_a_routed_spec(template: str, tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli("init", "pay", "--team", "ops", "--template", template, "--services-dir", str(tmp_path),
                           "--schedule-id", "PSCHED1", "--escalation-email", "o'neil+pager@example.com",
                           "--escalation-email", "second@example.com")
    assert (code, err) == (0, "")
    text = (tmp_path / "pay.yaml").read_text()
    assert text.endswith("\npagerduty:\n  schedule_ids: [PSCHED1]\n"
                         "  escalation_emails: [o'neil+pager@example.com, second@example.com]\n")
    from generators.alertmanager import Routing
    from generators.spec import load_spec

    spec = load_spec(str(tmp_path / "pay.yaml"))
    assert Routing.of(spec.service).paged
    assert spec.service.pagerduty.escalation_emails == ("o'neil+pager@example.com", "second@example.com")
    assert run_cli("validate", "--strict", "--catalog", str(ROOT / "rules_catalog"), str(tmp_path))[::2] == (0, "")


def test_init_rejects_a_bad_target_at_its_place(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli("init", "pay", "--team", "ops", "--services-dir", str(tmp_path),
                           "--schedule-id", "nope")
    assert code == 1
    path = tmp_path / "pay.yaml"
    assert err.splitlines() == [
        f"{path}:15:18: /pagerduty/schedule_ids/0: 'nope' is not a PagerDuty id (uppercase letters and digits, "
        "e.g. PABC123)",
        f"nthlayer init: error: {path} not written"]
    assert not path.exists()


def _init_on_a_terminal(cwd: Path, answer: bytes) -> subprocess.CompletedProcess[str]:
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
    env["NTHLAYER_STATE"] = str(cwd / "state.duckdb")
    try:
        os.write(controller, answer)
        return subprocess.run([sys.executable, "-m", "nthlayer", "init", "pay", "--team", "ops"],
                              cwd=cwd, env=env, stdin=terminal, capture_output=True, text=True, timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)


PROMPT = "Who is paged for pay? PagerDuty e-mail addresses and/or schedule ids, comma-separated (empty: nobody for now): "


def test_init_asks_who_is_paged_on_a_terminal(tmp_path: Path) -> None:
    result = _init_on_a_terminal(tmp_path, b"oncall@example.com, PSCHED1\n")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(PROMPT + "wrote services/pay.yaml")
    assert (tmp_path / "services" / "pay.yaml").read_text().endswith(
        "\npagerduty:\n  schedule_ids: [PSCHED1]\n  escalation_emails: [oncall@example.com]\n")


def test_init_on_a_terminal_with_no_answer_says_the_spec_is_unrouted(tmp_path: Path) -> None:
    result = _init_on_a_terminal(tmp_path, b"\n")
    assert result.returncode == 0
    assert result.stdout.startswith(PROMPT + "wrote services/pay.yaml")
    assert result.stderr.splitlines() == [
        f"services/pay.yaml:2:1: {UNROUTED.format(name='pay')}",
        "nthlayer init: services/pay.yaml pages nobody yet: rerun with --escalation-email or --schedule-id, "
        "or fill in its pagerduty section"]


def test_init_names_doit_only_where_there_is_a_dodo(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dodo.py").write_text("")
    code, out, _ = run_cli("init", "pay", "--team", "ops", "--schedule-id", "PSCHED1")
    assert (code, out) == (0, "wrote services/pay.yaml (template standard-api); "
                              "edit it, then run 'nthlayer validate services/pay.yaml' and 'doit'\n")


def test_list_templates_says_what_the_tier_table_does(run_cli) -> None:
    code, out, err = run_cli("list-templates")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "batch-job     tier 3 (low) batch job, SLOs on runs and their durations: 99 % availability, "
        "p95 under 2000 ms; pages on fast burns; tickets on medium and slow burns",
        "critical-api  tier 1 (critical) customer-facing HTTP API: 99.9 % availability, p95 under 500 ms; "
        "pages on fast and medium burns; tickets on slow and drift burns; depends on postgres and redis",
        "grpc-service  tier 2 (standard) gRPC service, go-grpc-prometheus metrics: 99.5 % availability, "
        "p95 under 1000 ms; pages on fast and medium burns; tickets on slow burns; depends on go-runtime",
        "standard-api  tier 2 (standard) internal HTTP API: 99.5 % availability, p95 under 1000 ms; "
        "pages on fast and medium burns; tickets on slow burns; depends on postgres",
        "worker        tier 2 (standard) queue consumer, SLOs on job outcomes and durations: 99.5 % availability, "
        "p95 under 1000 ms; pages on fast and medium burns; tickets on slow burns; depends on kafka",
    ]


def test_list_templates_follows_the_tier_table(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Change a tier's policy and the description changes with it: nothing is written twice."""
    from generators.tiers import TIERS

    monkeypatch.setitem(TIERS[2].burn_alerts, "medium", "ticket")
    out = run_cli("list-templates")[1]
    assert "standard-api  tier 2 (standard) internal HTTP API: 99.5 % availability, p95 under 1000 ms; " \
           "pages on fast burns; tickets on medium and slow burns; depends on postgres\n" in out


def test_build_rejects_a_reserved_name_at_its_place(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "metrics.yaml").write_text("service: reports\ntier: 2\nteam: ops\n"
                                                        "pagerduty:\n  schedule_ids: [PSCHED1]\n")
    (tmp_path / "services" / "ok.yaml").write_text("service: ok\ntier: 2\nteam: ops\n"
                                                   "pagerduty:\n  schedule_ids: [PSCHED1]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
    env.update(NTHLAYER_STATE=str(tmp_path / "state.duckdb"), NTHLAYER_CATALOG=str(ROOT / "rules_catalog"))
    result = subprocess.run([sys.executable, "-m", "nthlayer", "build"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode not in (0, 4)
    assert result.stderr.splitlines() == [
        "services/metrics.yaml:1:10: /service: 'reports' is reserved for shared output; choose another name",
        "nthlayer: services with invalid inputs (specs or catalog files) were not built; "
        "the other services' outputs are up to date"]
    assert (tmp_path / "out" / "ok" / "pagerduty.json").exists()
