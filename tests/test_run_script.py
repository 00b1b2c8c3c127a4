"""tests/run.sh, the one test command: a virtual environment on an externally managed Python (PEP 668),
and a skipped test fails the run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.externally_managed import externally_managed

# The interpreter this environment was made from: never a virtual environment, like a system's python3.
BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable)).resolve()


def test_the_pep_668_marker_counts_only_outside_a_virtual_environment(tmp_path: Path) -> None:
    assert not externally_managed(str(tmp_path), in_virtual_environment=False)
    (tmp_path / "EXTERNALLY-MANAGED").write_text("[externally-managed]\nError=use a venv\n")
    assert externally_managed(str(tmp_path), in_virtual_environment=False)
    assert not externally_managed(str(tmp_path), in_virtual_environment=True)
    script = [str(BASE_PYTHON), str(ROOT / "tests" / "externally_managed.py"), "--stdlib"]
    assert subprocess.run([*script, str(tmp_path)]).returncode == 0
    assert subprocess.run([*script, str(tmp_path / "nowhere")]).returncode == 1


def _pytest(tmp_path: Path, body: str, *plugin: str) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_one.py"
    test.write_text(body)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-ra", *plugin,
                           "--rootdir", str(tmp_path), str(test)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


SKIPS = "import pytest\n\ndef test_needs_a_tool():\n    pytest.skip('sometool not installed')\n\n" \
        "def test_fine():\n    pass\n"


def test_a_skipped_test_fails_the_run_with_the_plugin(tmp_path: Path) -> None:
    assert _pytest(tmp_path, SKIPS).returncode == 0  # plain pytest: a skip passes
    result = _pytest(tmp_path, SKIPS, "-p", "tests.fail_on_skip")
    assert result.returncode == 1
    assert "test_one.py:4: sometool not installed\n" in result.stdout  # -ra: the reason
    assert "tests/run.sh: 1 skipped test fail the run: install what their reasons name " \
           "(a missing tool must not pass unnoticed)" in result.stdout
    assert _pytest(tmp_path, "def test_fine():\n    pass\n", "-p", "tests.fail_on_skip").returncode == 0


def test_run_sh_uses_a_virtual_environment_when_python_is_externally_managed(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    anywhere = shutil.ignore_patterns("*.egg-info", "__pycache__", ".hypothesis")

    def ignore(folder: str, names: list[str]) -> set[str]:
        # out/ and state/ of the checkout only: nthlayer/state/ is a package
        top = {".git", ".venv", "out", "state", "benchmarks", "docs"} if Path(folder) == ROOT else set()
        return set(anywhere(folder, names)) | (top & set(names))

    shutil.copytree(ROOT, checkout, ignore=ignore)
    marker = tmp_path / "stdlib"
    marker.mkdir()
    (marker / "EXTERNALLY-MANAGED").write_text("[externally-managed]\nError=use a venv\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(BASE_PYTHON)
    # The dependencies come from the base interpreter's site-packages: no download in a test.
    subprocess.run([str(BASE_PYTHON), "-m", "venv", "--system-site-packages", "--without-pip", str(checkout / ".venv")],
                   check=True)  # pip too comes from the base interpreter
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    # PIP_REQUIRE_VIRTUALENV: should run.sh not take the virtual environment, pip must not touch the base.
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", NTHLAYER_TEST_STDLIB=str(marker),
               PIP_REQUIRE_VIRTUALENV="1")
    result = subprocess.run(["bash", "tests/run.sh", "tests/test_packaging.py"], cwd=checkout, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"testing with {checkout}/.venv/bin/python\n" in result.stdout
    shown = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-m", "pip", "show", "nthlayer-slo"],
                           capture_output=True, text=True, check=True).stdout
    assert f"Editable project location: {checkout}\n" in shown
