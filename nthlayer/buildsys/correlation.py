"""The build's ``correlate`` task: deploy ↔ incident reports (out/reports/) from the DuckDB state.

The scoring itself is SQL over the state database (nthlayer.state.correlation), the reports' content is
made in nthlayer.buildsys.reports; this module decides, without opening DuckDB when it can (or importing
either), whether they are up to date, and writes them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from generators.render import write_if_changed
from nthlayer.buildsys.outputs import remove_leftovers
from nthlayer.buildsys.reporter import StateFailure

if TYPE_CHECKING:
    from nthlayer.buildsys.plan import BuildPlan


NTHLAYER_DIR = Path(__file__).resolve().parent.parent


def correlation_targets(out_dir: str) -> list[str]:
    return [f"{out_dir}/reports/correlations.json", f"{out_dir}/reports/correlations.md"]


def correlation_code() -> list[str]:
    """The code the reports are made by: rebuilt when it changes."""
    return [str(NTHLAYER_DIR / name) for name in ("buildsys/correlation.py", "buildsys/reports.py",
                                                  "state/correlation.py", "state/events.py", "state/db.py",
                                                  "state/schema.py")]


def correlation_action(state_db: str, plan: BuildPlan, cache_path: str | None = None) -> Any:
    """Write the correlation reports. A state database that is locked past the timeout, unreadable or
    damaged fails this task alone, with one line: run-time state never stops the configuration build.

    Returns the fingerprint of the data it read, taken before reading, as the task's value: the up-to-date
    check may have found the database busy (the report task of this build reading it) and saved none."""
    from nthlayer.buildsys.reports import write_correlation_reports
    from nthlayer.state.db import StateUnavailable

    remove_leftovers([f"{plan.out_dir}/reports"])  # a killed build's temp files
    try:
        content = cached_state_fingerprint(state_db, cache_path)
        write_correlation_reports(state_db, plan.services_dir, plan.out_dir, edges=plan.edges())
        # Writing scores correlations in the database: stamp the cache as the file is now, so the next
        # no-op build need not open DuckDB to find the same content.
        cached_state_fingerprint(state_db, cache_path)
    except StateUnavailable as exc:
        return StateFailure(f"nthlayer: correlate: {exc}")
    return {"state_fingerprint": f"{content}:{plan.dependency_graph()}"}


def _file_stamp(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


Fingerprint = Callable[[str, "float | None"], str]  # (database path, lock timeout) → content hash


def _events_fingerprint(path: str, lock_timeout: float | None) -> str:
    from nthlayer.state.events import state_fingerprint  # here: a no-op build's cache hit never imports it

    return state_fingerprint(path, lock_timeout)


def cached_state_fingerprint(state_db: str, cache_path: str | None, lock_timeout: float | None = None,
                             fingerprint: Fingerprint = _events_fingerprint) -> str:
    """``fingerprint`` of the database (default: :func:`nthlayer.state.events.state_fingerprint`),
    remembered in ``cache_path`` against the database file's size and mtime: a file untouched since holds
    the same data, and not opening DuckDB spares a no-op build importing it (about 0.3 s and 60 MB)."""
    stamp = _file_stamp(state_db)  # taken first: a write while we read only makes the next run look again
    if cache_path:
        try:
            with open(cache_path, encoding="utf-8") as handle:
                cached = json.load(handle)
            if cached.get("database") == os.path.abspath(state_db) and cached.get("stamp") == stamp:
                return str(cached["fingerprint"])
        except (OSError, ValueError, KeyError, AttributeError):
            pass
    content = fingerprint(state_db, lock_timeout)
    if cache_path:
        data = {"database": os.path.abspath(state_db), "stamp": stamp, "fingerprint": content}
        write_if_changed(cache_path, json.dumps(data, sort_keys=True).encode("utf-8"))
    return content


def state_unchanged(state_db: str, graph: str, cache_path: str | None = None,
                    fingerprint: Fingerprint = _events_fingerprint) -> Callable[[Any, dict[str, Any]], bool]:
    """doit uptodate: the data ``fingerprint`` covers (default: deploys and incidents; not the file's
    mtime) and ``graph`` (a digest of what the task reads from the specs) are what they were at the last run.

    Evaluated only when the task is selected, so builds that skip it never open DuckDB. doit runs this
    check in its dispatching process before handing out the service tasks, so it never waits for a lock
    and never raises: a database it cannot read now is "not up to date", and the task's action (in a
    worker, beside the services) waits for the lock or fails with one line.
    """
    def check(task: Any, values: dict[str, Any]) -> bool:
        try:
            content = f"{cached_state_fingerprint(state_db, cache_path, 0.0, fingerprint)}:{graph}"
        except Exception as exc:
            from nthlayer.state.db import StateUnavailable  # here: a no-op build's cache hit never imports it

            if isinstance(exc, StateUnavailable):
                return False
            raise
        task.value_savers.append(lambda: {"state_fingerprint": content})
        return values.get("state_fingerprint") == content

    return check
