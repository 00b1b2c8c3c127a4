"""The build's console reporter: spec errors as plain `path:line:col: pointer: message` lines."""
from __future__ import annotations

import sys
from typing import Any

from doit.exceptions import TaskFailed, UnmetDependency
from doit.reporter import ConsoleReporter


class SpecFailure(TaskFailed):
    """A task failure whose message is user-facing error lines (no traceback)."""


class StateFailure(TaskFailed):
    """The correlate task could not read the state database: one user-facing line, no traceback."""


def _line_key(line: str) -> tuple[str, int, int, str]:
    path, line_no, col, rest = (line.split(":", 3) + ["", "", ""])[:4]
    try:
        return (path, int(line_no), int(col), rest)
    except ValueError:
        pass
    try:  # `plugin FILE:LINE: message`: a line of code, no column
        return (path, int(line_no), 0, f"{col}:{rest}")
    except ValueError:
        return (path, 0, 0, line)


class NthlayerReporter(ConsoleReporter):
    """doit's console reporter, but spec errors print as plain `path:line:col: pointer: message` lines."""

    desc = "nthlayer: console output with plain spec error lines"

    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)
        self.spec_lines: set[str] = set()
        self.state_lines: list[str] = []  # the correlate task's one line about an unusable state database

    def skip_uptodate(self, task: Any) -> None:  # quiet no-op runs
        pass

    def add_failure(self, task: Any, fail: Any) -> None:
        if isinstance(fail, UnmetDependency) and self.spec_lines:
            return  # a group task whose sub-tasks failed on spec errors: already reported
        if isinstance(fail, SpecFailure):
            self.spec_lines.update(line for line in fail.message.splitlines() if line)
            task.executed = False  # nothing useful in its captured output
            return
        if isinstance(fail, StateFailure):
            self.state_lines.append(fail.message)
            task.executed = False
            return
        super().add_failure(task, fail)

    def complete_run(self) -> None:
        super().complete_run()
        for line in sorted(self.spec_lines, key=_line_key):
            sys.stderr.write(line + "\n")
        if self.spec_lines:
            inputs = ("specs, catalog files or plugins" if any(line.startswith("plugin ") for line in self.spec_lines)
                      else "specs or catalog files")
            sys.stderr.write(f"nthlayer: services with invalid inputs ({inputs}) were not built; "
                             "the other services' outputs are up to date\n")
        for line in self.state_lines:
            sys.stderr.write(line + "\n")
