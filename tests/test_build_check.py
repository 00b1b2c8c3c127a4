"""`nthlayer build --check` (the CI guard of a committed or deployed out/), a build restoring a hand-edited
file, and the build refusing to run outside a project."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def _nthlayer(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
    env["NTHLAYER_STATE"] = str(cwd / "state" / "nthlayer.duckdb")
    return subprocess.run([sys.executable, "-m", "nthlayer", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_check_lists_every_difference_and_writes_nothing(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "services", tmp_path / "services")
    before = _nthlayer(tmp_path, "build", "--check")
    assert before.returncode == 1
    lines = before.stdout.splitlines()
    assert lines == sorted(lines) and len(lines) > 50 and all(line.endswith(": missing") for line in lines)
    assert "out/search-api/pagerduty.json: missing" in lines and "out/alertmanager/alertmanager.yml: missing" in lines
    assert "out/reports/correlations.md: missing" in lines
    assert before.stderr.endswith(f"{len(lines)} files of out/ differ from what services/ produces; "
                                  "run 'nthlayer build'\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["services"]  # no out/, no state/

    assert _nthlayer(tmp_path, "build").returncode == 0
    clean = _nthlayer(tmp_path, "build", "--check")
    assert (clean.returncode, clean.stdout, clean.stderr) == (0, "", "")

    out = tmp_path / "out"
    (out / "search-api" / "pagerduty.json").write_text("{}\n")
    (out / "alertmanager" / "alertmanager.yml").unlink()
    (out / "search-api" / "notes.txt").write_text("mine\n")
    (out / "search-api" / ".openslo.yaml.999999-0.tmp").write_text("half")
    (out / "prometheus").mkdir()
    (out / "prometheus" / "prometheus.yml").write_text("written by setup-prometheus\n")
    state = _tree(tmp_path / "state")
    outputs = _tree(out)
    result = _nthlayer(tmp_path, "build", "--check")
    assert result.returncode == 1
    assert result.stdout == ("out/alertmanager/alertmanager.yml: missing\n"
                             "out/search-api/.openslo.yaml.999999-0.tmp: extra\n"
                             "out/search-api/notes.txt: extra\n"
                             "out/search-api/pagerduty.json: edited\n")
    assert result.stderr == "nthlayer build --check: 4 files of out/ differ from what services/ produces; " \
                            "run 'nthlayer build' and remove the extra files (a build leaves them)\n"
    assert _tree(tmp_path / "state") == state and _tree(out) == outputs

    # A build restores the missing and edited files (and removes the dead writer's temp file); what is
    # left is the extra file it did not write, which it keeps.
    assert _nthlayer(tmp_path, "build").returncode == 0
    extra = _nthlayer(tmp_path, "build", "--check")
    assert extra.stdout == "out/search-api/notes.txt: extra\n"
    assert extra.stderr == "nthlayer build --check: 1 file of out/ differs from what services/ produces; " \
                           "remove the extra file (a build leaves it)\n"


def test_check_reports_a_broken_spec(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "services", tmp_path / "services")
    assert _nthlayer(tmp_path, "build").returncode == 0
    spec = tmp_path / "services" / "search-api.yaml"
    spec.write_text(spec.read_text().replace("tier: ", "tier: 9 #", 1))
    result = _nthlayer(tmp_path, "build", "--check")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("services/search-api.yaml:")
    assert result.stderr.endswith("nthlayer build --check: invalid inputs: out/ cannot match what they produce\n")


def test_a_build_restores_a_hand_edited_file(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "services", tmp_path / "services")
    assert _nthlayer(tmp_path, "build").returncode == 0
    out = tmp_path / "out"
    built = _tree(out)
    (out / "search-api" / "pagerduty.json").write_text("{}\n")
    (out / "alertmanager" / "alertmanager.yml").write_text("route: {}\n")
    again = _nthlayer(tmp_path, "build")
    assert again.returncode == 0, again.stderr
    assert sorted(again.stdout.split()) == [".", ".", "alertmanager", "service:search-api"]
    assert {path: data for path, (data, _) in _tree(out).items()} == {path: data for path, (data, _) in built.items()}
    assert _nthlayer(tmp_path, "build").stdout == ""  # and then nothing is stale


def test_outside_a_project_nothing_is_created(tmp_path: Path) -> None:
    hints = {"build": "pass --services DIR", "validate": "name the spec files or folders to validate",
             "setup-prometheus": "pass --out with a built output folder", "track-budget": "pass --services DIR"}
    for args in (["build"], ["build", "--check"], ["build", "list"], ["validate"], ["setup-prometheus"],
                 ["track-budget", "--all", "--prometheus", "http://127.0.0.1:9"]):
        result = _nthlayer(tmp_path, *args)
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == (f"nthlayer {args[0]}: error: no 'services' folder here ({tmp_path}): run it in a "
                                 f"folder with services/*.yaml or {hints[args[0]]}\n")
    assert list(tmp_path.iterdir()) == []


def test_doit_variables_name_the_folders(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "services", tmp_path / "specs")
    assert _nthlayer(tmp_path, "build", "services=specs", "out=built").returncode == 0
    assert (tmp_path / "built" / "search-api" / "pagerduty.json").is_file() and not (tmp_path / "out").exists()
    check = _nthlayer(tmp_path, "build", "--check", "services=specs", "out=built")
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")
