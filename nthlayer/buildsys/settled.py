"""The settled-service fast path: a plain ``doit`` run is not given the service tasks that are certainly
up to date.

Why: doit spends about 0.15 ms per task to make it and check it up to date, whatever the task does; at
10,000 services that alone is over a second, on every no-op build and every one-spec edit. Most of a
run's service tasks are up to date and need nothing from doit.

What: when the loading doit command is a ``run`` of the default tasks (no task names, no ``--always``),
each service task is checked before it is handed over, against the digest doit's dependency database
(nthlayer.buildsys.backend.StateJsonDB) keeps with each entry: the checker's name, every file dependency
with the modification time recorded when the task last succeeded, and the values it saved then (the
targets' sizes and mtimes, the policy verdict). The task's digest now is made of the same parts as they
are: its file dependencies' modification times, and the values each ``uptodate`` entry would accept
(``settled_values()``: the targets' stamp now, the verdict now). Equal digests: doit would find the task
up to date by the same tests; it is left out of this run, and its database entry is neither decoded nor
changed. Anything else — a changed, added or removed dependency, a different checker, a missing or edited
target, a changed verdict, an ``uptodate`` entry without ``settled_values``, a spec with errors, no
database entry or digest — hands the task to doit, which decides as always. Every other command (``list``,
``clean``, ``forget``, ``info``, a run naming tasks) sees every task. ``NTHLAYER_FAST_PATH=0`` turns it off
(tests/test_settled.py runs the same edits both ways and compares what ran and what was written).

The interface is :func:`settled_filter`; an ``uptodate`` object takes part by having a ``settled_values()``
method (nthlayer.buildsys.outputs.targets_unedited, nthlayer.buildsys.policies.verdict_unchanged).
Measured in docs/benchmarks.md (“no-op rebuild”, “one service edited”).
"""
from __future__ import annotations

import os
import pickle
import sys
from typing import Any, Callable

from nthlayer.buildsys.backend import settled_digest


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


def wanted() -> bool:
    """Whether this doit run takes the fast path: a plain ``run`` of the default tasks (no task names, no
    ``--always``), unless NTHLAYER_FAST_PATH=0."""
    from doit.cmd_run import Run

    if os.environ.get("NTHLAYER_FAST_PATH", "1") == "0":
        return False
    loading = _loading_command()
    if loading is None:
        return False
    command, args, params = loading
    return isinstance(command, Run) and not args and params is not None and not params.get("always")


def stamps_ahead(groups: list[tuple[str, ...]]) -> Callable[[], dict[tuple[str, ...], str | None]]:
    """Each group of target files' stamp (nthlayer.buildsys.outputs.targets_stamp), worked out by a forked
    child process while this one goes on (reading doit's database, making the tasks): at 10,000 services
    the 100,000 stats take a quarter of a second. The function returned waits for the child and gives
    ``{group: stamp}``; empty (every check then stats its files itself) if the child failed."""
    from nthlayer.buildsys.outputs import targets_stamp

    if not groups:
        return dict
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return dict
    if pid == 0:  # the child: stats, one pickled list down the pipe, and out without any cleanup of the parent's
        code = 1
        try:
            _close_all_but(write_end)  # a pipe of the parent's (a policy engine's input) must not stay open here
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(pickle.dumps([targets_stamp(group) for group in groups], protocol=pickle.HIGHEST_PROTOCOL))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)

    def collect() -> dict[tuple[str, ...], str | None]:
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        _pid, status = os.waitpid(pid, 0)
        try:
            stamps = pickle.loads(data) if status == 0 else []
        except (pickle.UnpicklingError, EOFError, ValueError):
            stamps = []
        return dict(zip(groups, stamps)) if len(stamps) == len(groups) else {}

    return collect


def _close_all_but(keep: int) -> None:
    """Close every file descriptor above stderr but ``keep`` (in a forked child)."""
    try:
        found = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        found = list(range(3, 256))
    for fd in found:
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass


def settled_filter(ahead: Callable[[], dict[tuple[str, ...], str | None]] = dict
                   ) -> Callable[[dict[str, Any]], bool] | None:
    """A test telling which service task dicts may be left out of this run (see the module's text), or
    None when doit must be given every task. ``ahead``: the targets' stamps worked out beforehand
    (:func:`stamps_ahead`), asked for at the first check."""
    from doit.globals import Globals

    if not wanted():
        return None
    manager = Globals.dep_manager
    if manager is None:
        return None
    backend = manager.backend
    if not hasattr(backend, "settled_digest"):  # another backend: no digests recorded
        return None
    checker = manager.checker
    checker_name = checker.__class__.__name__

    known: list[dict[tuple[str, ...], str | None]] = []

    def settled(task: dict[str, Any]) -> bool:
        saved = backend.settled_digest(f"service:{task['name']}")
        if saved is None:
            return False
        if not known:
            known.append(ahead())
        expected: dict[str, Any] = {}
        for check in task["uptodate"]:
            answer = getattr(check, "settled_values", None)
            values = None if answer is None else answer(known[0])
            if values is None:
                return False
            expected.update(values)
        try:
            mtimes = [(dep, checker.info(dep).st_mtime) for dep in set(task["file_dep"])]
        except OSError:
            return False
        return settled_digest(checker_name, mtimes, expected) == saved

    return settled
