"""pytest plugin that tests/run.sh loads (``-p tests.fail_on_skip``): a skipped test fails the run.

The tests that need promtool, amtool or a Prometheus server skip when the tool is missing, which is right
for a quick local ``pytest`` but would let CI pass without ever running them. ``-ra`` lists the reasons.
"""
from __future__ import annotations

import pytest


def _skipped(session: pytest.Session) -> int:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    return len(reporter.stats.get("skipped", [])) if reporter is not None else 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus == pytest.ExitCode.OK and _skipped(session):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int) -> None:  # type: ignore[no-untyped-def]
    skipped = len(terminalreporter.stats.get("skipped", []))
    if skipped:
        terminalreporter.write_line(
            f"tests/run.sh: {skipped} skipped {'test' if skipped == 1 else 'tests'} fail the run: "
            "install what their reasons name (a missing tool must not pass unnoticed)", red=True)
