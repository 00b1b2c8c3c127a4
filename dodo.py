"""doit build: every services/*.yaml → out/<service>/… (run `doit`, `doit list`, `doit clean`).

Wiring only; the logic lives in nthlayer.build and the generators package.
Variables: `doit services=DIR out=DIR catalog=DIR` (or NTHLAYER_SERVICES / NTHLAYER_OUT / NTHLAYER_CATALOG).
"""
from __future__ import annotations

import os

from doit import get_var
from doit.tools import config_changed

from nthlayer.build import (PER_SERVICE, NthlayerReporter, SharedMD5Checker, build_action, clean_targets,
                            code_fingerprint, correlation_action, correlation_code, correlation_targets, make_plan,
                            prune_out, state_unchanged, targets)

SERVICES = get_var("services", os.environ.get("NTHLAYER_SERVICES", "services"))
OUT = get_var("out", os.environ.get("NTHLAYER_OUT", "out"))
STATE = get_var("state", os.environ.get("NTHLAYER_STATE_DIR", "state"))
os.makedirs(STATE, exist_ok=True)

DOIT_CONFIG = {
    "default_tasks": [*PER_SERVICE, "alertmanager", "correlate", "prune"],
    "dep_file": os.path.join(STATE, "doit.db"),
    "backend": "sqlite3",
    "check_file_uptodate": SharedMD5Checker,  # md5, each file hashed once per run
    "continue": True,
    "reporter": NthlayerReporter,
    "verbosity": 1,
}

PLAN = make_plan(SERVICES, OUT, get_var("catalog", None), index_path=os.path.join(STATE, "spec-index.json"))


VALID_NAMES = {entry.name for entry in PLAN.valid}


def _task_name(entry) -> str:
    if entry.name is not None:
        return entry.name
    return entry.stem if entry.stem not in VALID_NAMES else entry.path  # a broken spec never shadows a valid one


def _artifact_tasks(kind: str):
    for entry in PLAN.entries:
        deps = [entry.path]
        if entry.name is not None and kind == "alerts":
            deps += PLAN.catalog_files(entry)
        outputs = targets(OUT, entry.name, kind) if entry.name is not None else []
        yield {
            "name": _task_name(entry),
            "actions": [build_action(kind, entry, OUT, PLAN.catalog_dir)],
            "file_dep": deps,
            "uptodate": [config_changed({"code": code_fingerprint(kind)})],  # the generator code
            "targets": outputs,
            "clean": [(clean_targets, [outputs, OUT])],
        }


def task_openslo():
    """OpenSLO v1 documents per service."""
    yield from _artifact_tasks("openslo")


def task_slo_rules():
    """Prometheus SLO recording rules, burn-rate alerts, their promtool tests, scrape config."""
    yield from _artifact_tasks("slo_rules")


def task_alerts():
    """Technology alerts from the rules catalog, scoped to each dependency instance."""
    yield from _artifact_tasks("alerts")


def task_pagerduty():
    """PagerDuty desired state per service."""
    yield from _artifact_tasks("pagerduty")


def task_alertmanager():
    """Alertmanager routing tree and receivers for every valid service."""
    from nthlayer.build import alertmanager_action, alertmanager_targets

    outputs = alertmanager_targets(OUT)
    return {
        "actions": [alertmanager_action(PLAN)],
        "file_dep": [e.path for e in PLAN.entries],
        "uptodate": [config_changed({"code": code_fingerprint("alertmanager")})],
        "targets": outputs,
        "clean": [(clean_targets, [outputs, OUT])],
    }


def task_correlate():
    """Deploy/incident correlation reports from the DuckDB state, rebuilt only when that data changed."""
    state_db = os.environ.get("NTHLAYER_STATE", os.path.join(STATE, "nthlayer.duckdb"))
    outputs = correlation_targets(OUT)
    cache = os.path.join(STATE, "state-fingerprint.json")  # spares no-op builds opening DuckDB
    return {
        "actions": [(correlation_action, [state_db, PLAN, cache])],
        "file_dep": correlation_code(),
        "uptodate": [state_unchanged(state_db, PLAN.dependency_graph(), cache_path=cache)],
        "targets": outputs,
        "clean": [(clean_targets, [outputs, OUT])],
    }


def task_prune():
    """Remove out/<service>/ of services whose spec was deleted."""
    keep = sorted(PLAN.protected_dirs())
    return {
        "actions": [(prune_out, [OUT, keep])],
        "uptodate": [config_changed({"keep": keep})],
        "verbosity": 2,
    }
