"""Shared test helpers: the repo root, running the CLI in-process, and Prometheus tool availability."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
UPDATE_GOLDEN = os.environ.get("NTHLAYER_UPDATE_GOLDEN") == "1"

# The property tests (hypothesis) run the same examples every run: the README's test command is CI's, and a
# commit that passes it here passes there. HYPOTHESIS_RANDOM=1 explores new examples instead.
settings.register_profile("fixed", derandomize=True)
settings.register_profile("random", derandomize=False)
settings.load_profile("random" if os.environ.get("HYPOTHESIS_RANDOM") == "1" else "fixed")

requires_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
requires_amtool = pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed")


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run `nthlayer ARGS` in-process; return (exit code, stdout, stderr)."""
    from nthlayer.cli import main

    def _run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return _run


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands that record audit rows write to a per-test database, never the checkout's state/."""
    monkeypatch.setenv("NTHLAYER_STATE", str(tmp_path / "isolated-state" / "nthlayer.duckdb"))
    monkeypatch.setenv("NTHLAYER_CRASH_LOG", str(tmp_path / "isolated-state" / "crash.log"))
    monkeypatch.setenv("NTHLAYER_SECRETS_DIR", str(tmp_path / "isolated-state" / "secrets"))
