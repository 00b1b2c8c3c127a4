"""Pages that reach no receiver: the warning (validate, build), --strict, and amtool's routing verdict."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from generators.alertmanager import alertmanager_files
from generators.spec import validate_specs
from tests.conftest import ROOT, requires_amtool

UNROUTED = ("no PagerDuty routing: the pages and critical alerts of '{name}' go to Alertmanager's "
            "nthlayer-unrouted receiver, which notifies nobody; list pagerduty.escalation_emails or schedule_ids, "
            "or reference pagerduty.escalation_policy_id or service_id")
NO_POLICY = ("no escalation policy for PagerDuty: set pagerduty.escalation_policy_id or pagerduty.service_id, "
             "or list pagerduty.schedule_ids / escalation_emails for nthlayer to build one; until then "
             "setup-pagerduty cannot create the service and the pages of '{name}' reach nobody")

# name → (pagerduty section, the receiver a page reaches per amtool, the warning's line:col and text or None)
CASES: dict[str, tuple[str, str, tuple[str, str] | None]] = {
    "none": ("", "nthlayer-unrouted", ("1:1", UNROUTED)),
    "empty-map": ("pagerduty: {}\n", "nthlayer-unrouted", ("4:1", UNROUTED)),
    "emails": ("pagerduty:\n  escalation_emails: [oncall@example.com]\n", "emails-pagerduty", None),
    "schedule": ("pagerduty:\n  schedule_ids: [PSCHED1]\n", "schedule-pagerduty", None),
    "policy": ("pagerduty:\n  escalation_policy_id: PABC123\n", "policy-pagerduty", None),
    "service-id": ("pagerduty:\n  service_id: PXXXXXX\n", "service-id-pagerduty", None),
    "urgency-only": ("pagerduty:\n  urgency: high\n  team_id: PTEAM01\n", "urgency-only-pagerduty", ("4:1", NO_POLICY)),
}


def _write_cases(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (section, _, _) in CASES.items():
        (folder / f"{name}.yaml").write_text(f"service: {name}\ntier: 2\nteam: ops\n{section}", encoding="utf-8")


def _expected_warnings(folder: Path, prefix: str = "warning: ") -> list[str]:
    return [f"{folder}/{name}.yaml:{where}: /pagerduty: {prefix}{text.format(name=name)}"
            for name, (_, _, warned) in sorted(CASES.items()) if warned for where, text in [warned]]


def test_validate_warns_exactly_the_services_whose_pages_reach_nobody(tmp_path: Path, run_cli) -> None:
    _write_cases(tmp_path)
    code, out, err = run_cli("validate", str(tmp_path))
    assert code == 0
    assert err.splitlines() == _expected_warnings(tmp_path)
    assert out == "7 specs valid (7 services, 3 warnings)\n"


def test_validate_strict_turns_warnings_into_errors(tmp_path: Path, run_cli) -> None:
    _write_cases(tmp_path)
    code, out, err = run_cli("validate", "--strict", str(tmp_path))
    assert (code, out) == (1, "")
    assert err.splitlines() == [*_expected_warnings(tmp_path, prefix=""), "3 errors in 3 files"]


def test_strict_applies_to_every_warning_not_only_routing(tmp_path: Path, run_cli) -> None:
    spec = tmp_path / "caller.yaml"
    spec.write_text("service: caller\ntier: 2\nteam: ops\ndependencies:\n  upstream: [nowhere]\n"
                    "pagerduty:\n  schedule_ids: [PSCHED1]\n", encoding="utf-8")
    line = f"{spec}:5:14: /dependencies/upstream/0: upstream service 'nowhere' is not defined by any spec"
    assert run_cli("validate", str(spec))[::2] == (0, f"{line.replace(': upstream', ': warning: upstream', 1)}\n")
    assert run_cli("validate", "--strict", str(spec))[::2] == (1, f"{line}\n1 error in 1 file\n")


@requires_amtool
def test_amtool_routes_pages_to_nobody_exactly_where_validate_warns(tmp_path: Path) -> None:
    """The warning's definition checked against Alertmanager's own routing of the generated config."""
    _write_cases(tmp_path / "services")
    result = validate_specs([str(tmp_path / "services")], None)
    assert result.errors == []
    [(path, text)] = alertmanager_files([s.service for s in result.specs], str(tmp_path / "am")).items()
    Path(path).parent.mkdir()
    Path(path).write_bytes(text)
    warned = {w.path.rsplit("/", 1)[1][:-5]: w.message for w in result.warnings}
    for name, (_, receiver, warning) in CASES.items():
        for severity in ("page", "critical"):
            routed = subprocess.run(["amtool", "config", "routes", "test", f"--config.file={path}",
                                     f"service={name}", f"severity={severity}"],
                                    capture_output=True, text=True, timeout=60)
            assert routed.stdout.strip() == receiver, (name, severity, routed.stderr)
        assert (receiver == "nthlayer-unrouted") == (warned.get(name, "").startswith("no PagerDuty routing")), name
        assert warned.get(name) == (warning[1].format(name=name) if warning else None), name


def _build(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
    env = {**base, "NTHLAYER_CATALOG": str(ROOT / "rules_catalog"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "nthlayer", "build", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_build_warns_and_strict_fails_even_on_a_no_op_run(tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.mkdir()
    (services / "paged.yaml").write_text("service: paged\ntier: 2\nteam: ops\n"
                                         "pagerduty:\n  escalation_emails: [oncall@example.com]\n")
    (services / "quiet.yaml").write_text("service: quiet-svc\ntier: 2\nteam: ops\n")
    line = f"services/quiet.yaml:1:1: /pagerduty: {UNROUTED.format(name='quiet-svc')}"
    # The file is not named after its service on purpose (its outputs must still be kept): item 16's warning.
    named = ("services/quiet.yaml:1:10: /service: the file is named 'quiet' but defines service 'quiet-svc'; "
             "name it quiet-svc.yaml so the service is found by its name")
    first = _build(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines() == [line.replace(": no PagerDuty", ": warning: no PagerDuty"),
                                         named.replace(": the file", ": warning: the file")]
    built = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out" / "quiet-svc").rglob("*"))
    assert built

    # Nothing changed since: the validation results come from state/spec-index.json, warnings included.
    for strict in (("--strict",), ("strict=1",), ()):
        env = {"NTHLAYER_STRICT": "1"} if not strict else None
        result = _build(tmp_path, *strict, env=env)
        assert result.returncode not in (0, 4), result.stderr
        assert result.stderr.splitlines() == [
            line, named, "nthlayer: services with invalid inputs (specs or catalog files) were not built; "
                  "the other services' outputs are up to date"], strict
        # Not built, and its last outputs kept (its file is not named after the service).
        assert sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out" / "quiet-svc").rglob("*")) == built

    again = _build(tmp_path)
    assert again.returncode == 0, again.stderr
    assert _build(tmp_path).stdout == ""  # and a no-op again without --strict


@pytest.mark.parametrize("key", ["escalation_emails", "schedule_ids"])
def test_an_empty_target_list_is_an_error(key: str, tmp_path: Path, run_cli) -> None:
    spec = tmp_path / "x.yaml"
    spec.write_text(f"service: x\ntier: 1\nteam: ops\npagerduty:\n  {key}: []\n", encoding="utf-8")
    what = "addresses" if key == "escalation_emails" else "schedule ids"
    code, out, err = run_cli("validate", str(spec))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{spec}:5:{len(key) + 5}: /pagerduty/{key}: an empty list pages nobody: list the {what} to escalate to, "
        "or remove the key",
        "1 error in 1 file"]


@requires_amtool
def test_build_writes_the_secrets_dir_it_is_given(tmp_path: Path) -> None:
    """routing_key_file paths follow --secrets-dir / NTHLAYER_SECRETS_DIR / doit secrets_dir=, rebuilding
    alertmanager.yml (only it) when the setting changes."""
    services = tmp_path / "services"
    services.mkdir()
    (services / "pay.yaml").write_text("service: pay\ntier: 1\nteam: ops\npagerduty:\n  schedule_ids: [PSCHED1]\n")
    config = tmp_path / "out" / "alertmanager" / "alertmanager.yml"

    def key_files() -> list[str]:
        return [line.split(": ", 1)[1] for line in config.read_text().splitlines() if "routing_key_file" in line]

    assert _build(tmp_path).returncode == 0
    assert key_files() == ["state/secrets/pay.key"] * 2  # the default, relative to Alertmanager's folder
    result = _build(tmp_path, "--secrets-dir", "/etc/alertmanager/secrets")
    assert (result.returncode, result.stdout) == (0, ".  alertmanager\n"), result.stderr
    assert key_files() == ["/etc/alertmanager/secrets/pay.key"] * 2
    assert subprocess.run(["amtool", "check-config", str(config)], capture_output=True, timeout=60).returncode == 0
    assert _build(tmp_path, "--secrets-dir", "/etc/alertmanager/secrets").stdout == ""  # a no-op
    assert _build(tmp_path, env={"NTHLAYER_SECRETS_DIR": "/srv/keys"}).stdout == ".  alertmanager\n"
    assert key_files() == ["/srv/keys/pay.key"] * 2
    assert _build(tmp_path, "secrets_dir=/run/secrets/alertmanager").returncode == 0
    assert key_files() == ["/run/secrets/alertmanager/pay.key"] * 2


def test_the_pre_commit_hook_fails_a_spec_whose_pages_reach_nobody(tmp_path: Path, run_cli) -> None:
    """.pre-commit-hooks.yaml as pre-commit runs it: entry, then args, then the changed files."""
    import yaml

    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["entry"].split()[0] == "nthlayer"
    spec = tmp_path / "quiet.yaml"
    spec.write_text("service: quiet\ntier: 2\nteam: ops\n")
    code, _, err = run_cli(*hook["entry"].split()[1:], *hook.get("args", []), str(spec))
    assert code == 1
    assert err.splitlines() == [f"{spec}:1:1: /pagerduty: {UNROUTED.format(name='quiet')}", "1 error in 1 file"]
