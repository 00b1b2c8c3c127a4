"""Run Prometheus's own tools (promtool, amtool) and report their verdicts."""
from __future__ import annotations

import shutil
import subprocess
from typing import NamedTuple, Sequence

from generators.errors import UserError


class ToolResult(NamedTuple):
    ok: bool
    output: str


def find_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UserError(f"'{name}' is not installed (Debian: apt-get install prometheus prometheus-alertmanager)")
    return path


def run_tool(name: str, args: Sequence[str], cwd: str | None = None, timeout: float = 600) -> ToolResult:
    completed = subprocess.run([find_tool(name), *args], cwd=cwd, capture_output=True, text=True,
                               timeout=timeout, check=False)
    return ToolResult(completed.returncode == 0, (completed.stdout + completed.stderr).strip())


def check_rules(paths: Sequence[str], cwd: str | None = None) -> ToolResult:
    return run_tool("promtool", ["check", "rules", *paths], cwd=cwd)


def test_rules(paths: Sequence[str], cwd: str | None = None) -> ToolResult:
    return run_tool("promtool", ["test", "rules", *paths], cwd=cwd)


def check_config(path: str, cwd: str | None = None) -> ToolResult:
    return run_tool("promtool", ["check", "config", "--syntax-only", path], cwd=cwd)


def amtool_check_config(path: str) -> ToolResult:
    return run_tool("amtool", ["check-config", path])
