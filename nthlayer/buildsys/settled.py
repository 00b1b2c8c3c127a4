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

The targets' stamps come from a child process forked before the plan is read (:func:`stamps_ahead_from`),
which stats the groups of target files the last run kept in state/settled-targets.pickle (rewritten when
they differ from this run's); without that file, from a child forked once the plan's specs are read
(:func:`stamps_ahead`). Either answers by hash of the group, so a group the file does not hold is only
missed, and its check stats the files itself. (Two different groups of one hash in the child's answer are
both left out; a group of this run taking the stamp of another of its hash could pass only if that stamp
were the one its task saved: the same sizes and nanosecond mtimes, file for file.)

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


def fast_path() -> bool:
    """Whether the build's fast paths are on (they are unless NTHLAYER_FAST_PATH=0): this module's, the plan
    kept whole (nthlayer.buildsys.plan._Snapshot), alertmanager.yml rewritten from its layout
    (nthlayer.buildsys.kinds). Off, the build does everything the long way: the tests compare both."""
    return os.environ.get("NTHLAYER_FAST_PATH", "1") != "0"


def wanted() -> bool:
    """Whether this doit run takes the fast path: a plain ``run`` of the default tasks (no task names, no
    ``--always``), unless NTHLAYER_FAST_PATH=0."""
    from doit.cmd_run import Run

    if not fast_path():
        return False
    loading = _loading_command()
    if loading is None:
        return False
    command, args, params = loading
    return isinstance(command, Run) and not args and params is not None and not params.get("always")


AHEAD_FILE = "settled-targets.pickle"  # in state/: the groups of target files the last run checked


def stamps_ahead(groups: list[tuple[str, ...]]) -> Callable[[], dict[int, str | None]]:
    """Each group of target files' stamp (nthlayer.buildsys.outputs.targets_stamp), worked out by a forked
    child process while this one goes on (reading doit's database, making the tasks): at 10,000 services
    the 100,000 stats take a quarter of a second. The function returned waits for the child and gives
    ``{hash(group): stamp}`` (the child is forked: the same hash of a group as here); empty (every check
    then stats its files itself) if the child failed."""
    if not groups:
        return dict
    return _forked(lambda: groups)


def stamps_ahead_from(path: str) -> Callable[[], dict[int, str | None]] | None:
    """:func:`stamps_ahead` of the groups the last run kept in ``path`` (:func:`keep_groups`), forked before
    the plan is read: the child reads them itself, so its stats start 0.2 s sooner at 10,000 specs. A group
    that is not what the files are now only misses (its check stats its files). None: no such file."""
    if not os.path.isfile(path):
        return None

    def read() -> list[tuple[str, ...]]:
        with open(path, "rb") as handle:
            return pickle.load(handle)

    return _forked(read)


def keep_groups(path: str, groups: list[tuple[str, ...]], known: dict[int, str | None] | None) -> None:
    """Keep ``groups`` in ``path`` for the next run's :func:`stamps_ahead_from`, unless they are the groups
    ``known`` (what the child of :func:`stamps_ahead_from` answered: None, there was none) is of."""
    if known is not None and len(known) == len(groups) and all(hash(group) in known for group in groups):
        return
    from generators.render import write_if_changed

    write_if_changed(path, pickle.dumps(groups, protocol=pickle.HIGHEST_PROTOCOL))


def _forked(groups_of: Callable[[], list[tuple[str, ...]]]) -> Callable[[], dict[int, str | None]]:
    from nthlayer.buildsys.outputs import targets_stamp

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
                pipe.write(pickle.dumps([(hash(group), targets_stamp(group)) for group in dict.fromkeys(groups_of())],
                                        protocol=pickle.HIGHEST_PROTOCOL))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    answer: list[dict[int, str | None]] = []

    def collect() -> dict[int, str | None]:
        if answer:
            return answer[0]
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        _pid, status = os.waitpid(pid, 0)
        try:
            pairs = pickle.loads(data) if status == 0 else []
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
            pairs = []
        stamps = dict(pairs)
        if len(stamps) < len(pairs):  # two different groups of one hash: neither is answered (their checks stat)
            seen: set[int] = set()
            for key in {key for key, _ in pairs if key in seen or seen.add(key)}:
                del stamps[key]
        answer.append(stamps)
        return stamps

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


def settled_filter(ahead: Callable[[], dict[int, str | None]] = dict, stats: dict[str, Any] | None = None
                   ) -> Callable[[dict[str, Any]], bool] | None:
    """A test telling which service task dicts may be left out of this run (see the module's text), or
    None when doit must be given every task. ``ahead``: the targets' stamps worked out beforehand
    (:func:`stamps_ahead`), asked for at the first check. ``stats``: files' stats already taken in this
    run (the plan's of the specs: nthlayer.buildsys.plan.spec_stats), not taken again."""
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
    # each file dependency's mtime as the checker reads it, shared by the tasks (the specs': as the plan read them)
    mtimes_of: dict[str, float] = {path: stat.st_mtime for path, stat in (stats or {}).items()}

    known: list[dict[int, str | None]] = []

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
        deps = set(task["file_dep"])
        try:
            mtimes = [(dep, mtimes_of[dep]) for dep in deps]
        except KeyError:
            try:
                mtimes_of.update((dep, checker.info(dep).st_mtime) for dep in deps if dep not in mtimes_of)
            except OSError:
                return False
            mtimes = [(dep, mtimes_of[dep]) for dep in deps]
        return settled_digest(checker_name, mtimes, expected) == saved

    return settled
