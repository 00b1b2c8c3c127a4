"""The build's ``report`` task: the HTML reliability report (out/reports/index.html and a page per service),
rebuilt only when what it shows from the state database changed (budget history, deploys, incidents:
a content fingerprint, cached against the file's size and mtime so a no-op build does not open DuckDB)
or the set of services or their dependency graph did.

Spec edits that keep the services and their graph (a team, an objective) reach the report with the next
state change — track-budget records one every run — or ``nthlayer report``: re-rendering a thousand
pages on every edit would cost the one-edit build its budget (docs/benchmarks.md).

The pages are the operation's (nthlayer.ops.report: the deploy gate's own verdict per service); this
module only decides when to make them, and makes a state failure one line that fails this task alone.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from nthlayer.buildsys.correlation import NTHLAYER_DIR, cached_state_fingerprint, state_unchanged
from nthlayer.buildsys.outputs import remove_leftovers
from nthlayer.buildsys.reporter import StateFailure
from nthlayer.buildsys.kinds import GENERATORS_DIR

if TYPE_CHECKING:
    from generators.model import Service
    from nthlayer.buildsys.plan import BuildPlan

REPORT_DIR = "reports"


def report_targets(out_dir: str, plan: BuildPlan) -> list[str]:
    """index.html and the page of every valid service."""
    return [f"{out_dir}/{REPORT_DIR}/index.html",
            *sorted(f"{out_dir}/{REPORT_DIR}/services/{entry.name}.html" for entry in plan.valid)]


def _kept(plan: BuildPlan) -> set[str]:
    """Services whose spec is broken now: the build keeps their pages (as it keeps their out/ folders)."""
    names = {entry.stem for entry in plan.entries if entry.name is None}
    names |= {entry.routing.name for entry in plan.entries if entry.name is None and entry.routing is not None}
    return names - {entry.name for entry in plan.valid}


def broken_pages(plan: BuildPlan) -> list[str]:
    """With a broken spec, what ``build --check`` leaves unjudged: the index and the broken specs' pages."""
    kept = _kept(plan)
    if not kept:
        return []
    return [f"{plan.out_dir}/{REPORT_DIR}/index.html",
            *(f"{plan.out_dir}/{REPORT_DIR}/services/{name}.html" for name in sorted(kept))]


def report_code() -> list[str]:
    """The code and assets the pages are made by: rebuilt when they change."""
    nthlayer = [str(NTHLAYER_DIR / name) for name in (
        "buildsys/report.py", "ops/report.py", "ops/gate.py", "ops/budget.py", "state/history.py",
        "state/correlation.py", "state/events.py", "state/db.py", "state/schema.py", "buildsys/reports.py",
        "ops/cost.py", "state/cost.py")]
    assets = sorted(str(path) for path in (GENERATORS_DIR / "report_assets").iterdir() if path.is_file())
    return nthlayer + [str(GENERATORS_DIR / "report_html.py"), str(GENERATORS_DIR / "report_cost.py"),
                       str(GENERATORS_DIR / "paging.py"), *assets]


def report_inputs(plan: BuildPlan) -> str:
    """A digest of what the task reads from the specs to decide it is stale: the services and who calls whom."""
    names = sorted(entry.name for entry in plan.valid if entry.name)
    return hashlib.sha256(json.dumps([names, plan.edges()]).encode()).hexdigest()[:16]


def _history_fingerprint(path: str, lock_timeout: float | None) -> str:
    from nthlayer.state.history import history_fingerprint  # here: a no-op build's cache hit never imports it

    return history_fingerprint(path, lock_timeout)


def report_uptodate(state_db: str, plan: BuildPlan, cache_path: str) -> Any:
    """doit uptodate of the report: the state's content and the services are what they were."""
    return state_unchanged(state_db, report_inputs(plan), cache_path, _history_fingerprint)


def _services(plan: BuildPlan) -> list[Service]:
    from nthlayer.buildsys.plan import load_service

    return [load_service(entry.path) for entry in sorted(plan.valid, key=lambda e: e.name or "")]


def report_action(state_db: str, plan: BuildPlan, cache_path: str) -> Any:
    """Write the report. A state database that is locked past the timeout, unreadable or damaged fails
    this task alone, with one line: run-time state never stops the configuration build.

    Returns the fingerprint of the data it read, taken before reading, as the task's value: the up-to-date
    check may have found the database busy (another task of this build writing it) and saved none."""
    from nthlayer.ops.report import write_report
    from nthlayer.state.db import StateUnavailable

    remove_leftovers([os.path.join(plan.out_dir, REPORT_DIR, "services")])  # a killed build's temp files
    try:
        content = cached_state_fingerprint(state_db, cache_path, fingerprint=_history_fingerprint)
        write_report(state_db, _services(plan), plan.edges(), plan.out_dir, keep=_kept(plan))
        # Writing scores correlations in the database: stamp the cache as the file is now, so the next
        # no-op build need not open DuckDB to find the same content.
        cached_state_fingerprint(state_db, cache_path, fingerprint=_history_fingerprint)
    except StateUnavailable as exc:
        return StateFailure(f"nthlayer: report: {exc}")
    return {"state_fingerprint": f"{content}:{report_inputs(plan)}"}


def expected_report_files(plan: BuildPlan, state_db: str) -> dict[str, bytes]:
    """The report's files and bytes, as a build would write them (``nthlayer build --check``)."""
    from nthlayer.ops.report import expected_report

    return expected_report(state_db, _services(plan), plan.edges(), plan.out_dir)
