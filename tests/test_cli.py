"""The CLI as a user meets it: help, exit codes, init/list-templates, validate on the bundled examples."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nthlayer.cli.commands import COMMANDS
from tests.conftest import ROOT


def test_help_lists_every_command() -> None:
    result = subprocess.run([sys.executable, "-m", "nthlayer", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"    {name}" in result.stdout


def test_list_templates(run_cli) -> None:
    code, out, _ = run_cli("list-templates")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert {"critical-api", "standard-api", "worker", "batch-job"} <= set(names)
    assert all(len(line.split(None, 1)) == 2 for line in out.splitlines())  # each has a description


@pytest.mark.parametrize("template", ["critical-api", "standard-api", "grpc-service", "worker", "batch-job"])
def test_init_writes_a_valid_spec_and_refuses_to_overwrite(template: str, tmp_path: Path, run_cli) -> None:
    services = tmp_path / "services"
    code, out, err = run_cli("init", "new-svc", "--team", "payments", "--template", template,
                             "--services-dir", str(services), "--escalation-email", "oncall@example.com")
    assert (code, err) == (0, "")
    spec = services / "new-svc.yaml"
    text = spec.read_text()
    assert "service: new-svc\n" in text and "team: payments\n" in text
    code, out, err = run_cli("validate", "--catalog", str(ROOT / "rules_catalog"), str(spec))
    assert code == 0, err
    code, _, err = run_cli("init", "new-svc", "--team", "other", "--template", template, "--services-dir", str(services))
    assert code == 1
    assert err == f"nthlayer init: error: {spec} already exists; not overwriting it\n"
    assert spec.read_text() == text


@pytest.mark.parametrize("name", ["PaymentAPI_v2_PROD", "has space", "trailing-", "a" * 64])
def test_init_rejects_bad_names(name: str, tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli("init", name, "--team", "t", "--services-dir", str(tmp_path))
    assert code == 1
    assert err.startswith(f"nthlayer init: error: '{name}' is not a valid service name")
    assert list(tmp_path.iterdir()) == []


def test_init_rejects_unknown_template(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli("init", "x", "--team", "t", "--template", "nope", "--services-dir", str(tmp_path))
    assert code == 1
    assert err.startswith("nthlayer init: error: unknown template 'nope'; choose one of: batch-job, critical-api")


def test_validate_bundled_examples(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli("validate", "services")
    assert (code, err) == (0, "")
    specs = len(list((ROOT / 'services').glob('*.yaml')))
    composites = len(list((ROOT / 'services' / 'composites').glob('*.yaml')))
    assert out == f"{specs + composites} specs valid ({specs} services, {composites} composite)\n"


def test_validate_one_file_knows_its_neighbours(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-commit hook passes only changed files: upstream names elsewhere in services/ still count."""
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli("validate", "services/payment-api.yaml")
    assert (code, out, err) == (0, "1 spec valid (1 service)\n", "")


def test_validate_reports_a_typo_with_a_suggestion(tmp_path: Path, run_cli) -> None:
    spec = tmp_path / "db-user.yaml"
    spec.write_text("service: db-user\ntier: 2\nteam: t\ndependencies:\n  technologies:\n"
                    "    - type: postgress\n      name: main\npagerduty:\n  schedule_ids: [PSCHED1]\n")
    code, out, err = run_cli("validate", "--catalog", str(ROOT / "rules_catalog"), str(spec))
    assert code == 1
    assert err.splitlines() == [
        f"{spec}:6:13: /dependencies/technologies/0/type: unknown technology 'postgress'; did you mean 'postgres'?",
        "1 error in 1 file",
    ]


def test_generate_slo_dry_run_writes_nothing(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run_cli("generate-slo", "services/payment-api.yaml", "--output", str(tmp_path / "o"),
                           "--format", "openslo", "--dry-run")
    assert code == 0
    assert [line.split(" (")[0] for line in out.splitlines()] == [f"would create {tmp_path}/o/openslo.yaml"]
    assert not (tmp_path / "o").exists()


def test_generate_slo_uses_the_build_functions(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, _, _ = run_cli("generate-slo", "services/payment-api.yaml", "--output", str(tmp_path / "o"),
                         "--state", str(tmp_path / "state.duckdb"))
    assert code == 0
    golden = ROOT / "tests" / "golden" / "examples" / "payment-api"
    assert os.listdir(tmp_path / "o") == ["openslo.yaml"]
    assert (tmp_path / "o" / "openslo.yaml").read_bytes() == (golden / "openslo.yaml").read_bytes()


def test_validate_checks_composites_at_their_line(run_cli, tmp_path: Path) -> None:
    """A composite given alone (the pre-commit hook passes changed files) is checked against the specs of
    its services folder; so is every composite of a folder given."""
    import shutil

    services = tmp_path / "services"
    shutil.copytree(ROOT / "services", services)
    composite = services / "composites" / "checkout.yaml"
    composite.write_text(composite.read_text().replace("slo: latency", "slo: latncy"))
    line = (f"{composite}:14:10: /components/2/slo: service 'checkout-web' has no SLO 'latncy'; "
            "did you mean 'latency'? (its SLOs: availability, latency)")
    for given in (composite, services):
        code, out, err = run_cli("validate", str(given))
        assert (code, out, err) == (1, "", f"{line}\n1 error in 1 file\n")
    (services / "payment-api.yaml").unlink()
    code, _, err = run_cli("validate", str(composite))
    assert code == 1 and "/components/0/service: no spec defines service 'payment-api'" in err
