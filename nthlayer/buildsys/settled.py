"""The settled-service fast path: a plain ``doit`` run is not given the service tasks that are certainly
up to date.

Why: doit spends about 0.15 ms per task to make it and check it up to date, whatever the task does; at
10,000 services that alone is over a second, on every no-op build and every one-spec edit. Most of a
run's service tasks are up to date and need nothing from doit.

What: when the loading doit command is a ``run`` of the default tasks (no task names, no ``--always``),
each service task is checked against doit's own dependency database (already loaded by doit, with its
file checker) before it is handed over: the same file dependencies as when it last succeeded, each with
the modification time recorded then, and each ``uptodate`` entry answering :func:`settled` from the
saved values (the targets' sizes and mtimes, the policy verdict). A task passing every check is one doit
would find up to date by the same tests; it is left out of this run, and its database entry stays as
it is. Anything else — a changed, added or removed dependency, a different checker, a missing or edited
target, a changed verdict, an ``uptodate`` entry without a ``settled`` answer, a spec with errors, no
database entry — hands the task to doit, which decides as always. Every other command (``list``,
``clean``, ``forget``, ``info``, a run naming tasks) sees every task. ``NTHLAYER_FAST_PATH=0`` turns it off
(tests/test_settled.py runs the same edits both ways and compares what ran and what was written).

The interface is :func:`settled_filter`; an ``uptodate`` object takes part by having a ``settled(values)``
method (nthlayer.buildsys.outputs.targets_unedited, nthlayer.buildsys.policies.verdict_unchanged).
Measured in docs/benchmarks.md (“no-op rebuild”, “one service edited”).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable


def _loading_command() -> tuple[Any, list[str], Any] | None:
    """The doit command object loading the tasks now, its positional arguments and its parameters: from
    the frame of doit's ``DoitCmdBase.execute`` below this call (doit passes them to no task creator)."""
    from doit.cmd_base import DoitCmdBase

    code = DoitCmdBase.execute.__code__
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is code:
            local = frame.f_locals
            return local.get("self"), list(local.get("args") or ()), local.get("params")
        frame = frame.f_back
    return None


def settled_filter() -> Callable[[dict[str, Any]], bool] | None:
    """A test telling which service task dicts may be left out of this run (see the module's text), or
    None when doit must be given every task."""
    from doit.cmd_run import Run
    from doit.globals import Globals

    if os.environ.get("NTHLAYER_FAST_PATH", "1") == "0":
        return None
    loading = _loading_command()
    if loading is None:
        return None
    command, args, params = loading
    if not isinstance(command, Run) or args or params is None or params.get("always"):
        return None
    manager = Globals.dep_manager
    if manager is None:
        return None
    checker = manager.checker
    checker_name = checker.__class__.__name__

    def settled(task: dict[str, Any]) -> bool:
        name = f"service:{task['name']}"
        deps = task["file_dep"]
        if manager._get(name, "checker:") != checker_name:
            return False
        previous = manager._get(name, "deps:")
        if not previous or len(previous) != len(deps) or set(previous) != set(deps):
            return False
        for dep in deps:
            state = manager._get(name, dep)
            try:
                if not state or state[0] != checker.info(dep).st_mtime:
                    return False
            except OSError:
                return False
        values = manager.get_values(name)
        for check in task["uptodate"]:
            answer = getattr(check, "settled", None)
            if answer is None or not answer(values):
                return False
        return True

    return settled
