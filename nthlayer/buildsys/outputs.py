"""What out/ holds between builds: hand edits of generated files, what a killed build left behind, and
``nthlayer build --check`` (every file of out/ compared with what the specs produce).

doit notices a missing target but not an edited one. :func:`targets_unedited` records each task's
targets' sizes and mtimes when it succeeds (one stat per file, no hashing: a no-op build of 1000
services stays cheap) and makes the task run again when they differ. A hand edit, a ``touch`` or an
edit undone all count: the task runs, and ``write_if_changed`` rewrites only the files whose bytes differ.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from typing import Any, Callable, Iterable

from generators.render import temp_entries


def doit_signature(cls: type) -> type:
    """A class decorator for doit ``uptodate`` objects: their ``(task, values)`` signature, given as
    ``__signature__``. doit asks inspect.signature for it on every check of every task (14 µs where
    the attribute makes it 1: a first build of 10,000 services checks 20,000)."""
    import inspect

    cls.__signature__ = inspect.Signature([inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                           for name in ("task", "values")])
    return cls


def targets_stamp(paths: Iterable[str]) -> str | None:
    """The sizes and mtimes of ``paths`` in one short digest; None when one is missing."""
    parts = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.blake2b(" ".join(parts).encode(), digest_size=8).hexdigest()


@doit_signature
class _TargetsUnedited:
    """doit ``uptodate``: the task's targets are as its last successful run left them."""

    def __init__(self, paths: Iterable[str], saved_by_action: bool = False,
                 ahead: Callable[[], dict[int, str | None]] | None = None) -> None:
        self.paths = tuple(paths)
        self.saved_by_action = saved_by_action
        self.ahead = ahead

    def configure_task(self, task: Any) -> None:  # doit calls it when it makes the task
        if not self.saved_by_action:
            task.value_savers.append(self._save)  # run in the parent, after the worker wrote the files

    def _stamp(self) -> str | None:
        return targets_stamp(self.paths)

    def _save(self) -> dict[str, Any]:
        return {"targets": self._stamp()}

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        stamp = self._known_stamp(self.ahead()) if self.ahead is not None else self._stamp()
        return stamp is not None and values.get("targets") == stamp

    def _known_stamp(self, known: dict[int, str | None]) -> str | None:
        """The targets' stamp from ``known`` (stamps worked out ahead, by group hash: nthlayer.buildsys.settled)
        when it has these files, else worked out now."""
        key = hash(self.paths)
        return known[key] if key in known else self._stamp()

    def settled_values(self, known: dict[int, str | None]) -> dict[str, Any] | None:
        """The saved values that make this check pass, for the settled fast path (nthlayer.buildsys.settled):
        the targets' stamp now; None when one is missing."""
        stamp = self._known_stamp(known)
        return None if stamp is None else {"targets": stamp}


def targets_unedited(paths: Iterable[str], saved_by_action: bool = False,
                     ahead: Callable[[], dict[int, str | None]] | None = None) -> _TargetsUnedited:
    """A doit ``uptodate`` entry that is false when a file of ``paths`` is missing or was changed since
    the task last wrote it. ``saved_by_action``: the task's action returns ``{"targets":
    targets_stamp(paths)}`` itself (a worker, right after writing them: the service tasks), instead of
    the parent statting every file of every task after it ran. ``ahead``: the stamps a child process
    worked out meanwhile (nthlayer.buildsys.settled), asked when the check runs."""
    return _TargetsUnedited(paths, saved_by_action, ahead)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: not ours to judge
        return True
    try:  # a zombie has exited (where no one reaps orphans, as in some containers, it stays a while)
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_leftovers(directories: Iterable[str]) -> list[str]:
    """Remove the hidden temporary files and staging folders (generators.render's ``.NAME.PID-N.tmp``)
    in ``directories`` whose writing process is gone: what a killed build leaves. A live process's
    entries are kept (another build may be writing them)."""
    removed = []
    for directory in directories:
        for path, pid in temp_entries(directory):
            if _alive(pid):
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            removed.append(path)
    return removed


NOT_BUILT = frozenset({"prometheus"})  # out/ folders another command writes (setup-prometheus)


def expected_files(plan: Any, state_db: str, secrets_dir: str) -> tuple[dict[str, bytes], list[str]]:
    """Every file a build of ``plan`` writes, with its bytes (made by the build's own functions), and the
    error lines of the inputs that stop it (a broken spec, a broken catalog file)."""
    from generators.errors import SpecErrors
    from nthlayer.buildsys.composites import expected_composite_files
    from nthlayer.buildsys.kinds import SHARED_KINDS
    from nthlayer.buildsys.plan import load_service
    from nthlayer.buildsys.report import expected_report_files
    from nthlayer.buildsys.reports import correlation_report_files
    from nthlayer.buildsys.tasks import service_files

    files: dict[str, bytes] = {}
    errors = [error.format() for entry in plan.entries for error in entry.errors]
    if plan.policy_error:  # a policy file that cannot be used: no spec was judged (docs/policies.md)
        errors += plan.policy_error.splitlines()
    from nthlayer.buildsys.plugins import PluginError
    from nthlayer.buildsys.tasks import all_kinds

    for entry in plan.valid:
        try:
            files.update(service_files(load_service(entry.path), plan, all_kinds(entry.plugins)))
        except SpecErrors as exc:
            errors += exc.lines()
        except PluginError as exc:
            errors.append(exc.as_spec_error().format())
    for kind in SHARED_KINDS:
        files.update(kind.generate(plan, {"secrets_dir": secrets_dir}))
    composite_files, composite_errors = expected_composite_files(plan)
    files.update(composite_files)
    errors += composite_errors
    files.update(correlation_report_files(state_db, plan.out_dir, plan.edges()))
    files.update(expected_report_files(plan, state_db))
    return files, errors


def check_out(services_dir: str, out_dir: str, state_db: str, index_path: str | None = None,
              catalog_dir: str | None = None, secrets_dir: str | None = None, strict: bool = False
              ) -> tuple[list[tuple[str, str]], list[str]]:
    """``nthlayer build --check``: (path, "missing" | "extra" | "edited") for each file of ``out_dir`` that
    differs from what the specs produce, sorted by path; and the error lines of invalid inputs. Writes
    nothing: no out/, no state/. ``index_path``: the build's spec index, read for the last valid routing
    of a broken spec (which the build keeps in alertmanager.yml); ``secrets_dir`` and ``strict`` as the
    build takes them (nthlayer.integrations.secrets.secrets_dir decides the default)."""
    from generators.render import file_holds
    from nthlayer.buildsys.plan import make_plan
    from nthlayer.integrations.secrets import secrets_dir as resolve_secrets_dir

    from nthlayer.buildsys.plugin_kinds import activate

    if activate(None).error is not None:  # the plugins the build would load; their stamps are not written
        return [], [activate(None).error.format()]
    plan = make_plan(services_dir, out_dir, catalog_dir, index_path, strict=strict, record=False)
    expected, errors = expected_files(plan, state_db, resolve_secrets_dir(secrets_dir))
    wanted = {os.path.normpath(path): data for path, data in expected.items()}
    # A broken spec's folder keeps its last build (the build leaves it as it was): not judged here.
    unjudged = {os.path.normpath(os.path.join(out_dir, name)) for name in NOT_BUILT}
    unjudged |= {os.path.normpath(os.path.join(out_dir, entry.stem)) for entry in plan.entries if entry.name is None}
    # With a broken spec, the reliability report (its index, the broken spec's page: a build keeps that page
    # and re-renders the index from the valid services) is not judged either.
    from nthlayer.buildsys.report import REPORT_DIR, broken_pages

    skipped = {os.path.normpath(path) for path in broken_pages(plan)}
    wanted = {path: data for path, data in wanted.items() if path not in skipped}
    found: set[str] = set()
    for root, dirs, names in os.walk(out_dir):
        root = os.path.normpath(root)
        dirs[:] = sorted(name for name in dirs if os.path.join(root, name) not in unjudged)
        found.update(os.path.join(root, name) for name in names)
        found.update(os.path.join(root, name) for name in dirs if os.path.islink(os.path.join(root, name)))
    found -= skipped
    differences = [(path, "missing") for path in wanted if path not in found]
    differences += [(path, "extra") for path in found if path not in wanted]
    # The reliability report's pages are judged for presence only: the report task re-renders them when the
    # state or the set of services changes, not on every spec edit (docs/report.md), so a page may show an
    # edited spec's old objective until the next state change or `nthlayer report`.
    pages = os.path.normpath(os.path.join(out_dir, REPORT_DIR)) + os.sep
    differences += [(path, "edited") for path in found if path in wanted
                    and not (path.startswith(pages) and path.endswith(".html")) and not file_holds(path, wanted[path])]
    return sorted(differences), errors
