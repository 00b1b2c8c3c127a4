"""doit build: every services/*.yaml → out/<service>/… (run `doit`, `doit list`, `doit clean`).

Wiring only; the logic lives in nthlayer.build and the generators package.
Variables: `doit services=DIR out=DIR catalog=DIR` (or NTHLAYER_SERVICES / NTHLAYER_OUT / NTHLAYER_CATALOG).
"""
from __future__ import annotations

import os

from doit import get_var
from doit.tools import config_changed

from nthlayer.build import (NthlayerReporter, SharedMD5Checker, alertmanager_routes, clean_targets, code_fingerprint,
                            code_stamps, correlation_action, correlation_code, correlation_targets, make_plan,
                            prune_out, routes_digest, service_task, state_unchanged, worker_count)
from nthlayer.runner import install as install_prefetch_runner

SERVICES = get_var("services", os.environ.get("NTHLAYER_SERVICES", "services"))
OUT = get_var("out", os.environ.get("NTHLAYER_OUT", "out"))
STATE = get_var("state", os.environ.get("NTHLAYER_STATE_DIR", "state"))
os.makedirs(STATE, exist_ok=True)

DOIT_CONFIG = {
    "default_tasks": ["alertmanager", "correlate", "prune", "service"],  # the shared tasks overlap the services
    "dep_file": os.path.join(STATE, "doit.json"),
    "backend": "nthlayer-json",  # nthlayer.build.StateJsonDB, registered by pyproject.toml
    "check_file_uptodate": SharedMD5Checker,  # md5, each file hashed once per run
    "continue": True,
    # Two worker processes (forked: they inherit the plan, only task names cross the queue) where there
    # are two cores: the generation splits over them (docs/benchmarks.md: 10-30 % faster than one process
    # at 1000 services, where doit's one-task-at-a-time dispatch eats much of the gain; 1.6-2x at 5000).
    "num_process": worker_count(),
    "par_type": "process",
    "reporter": NthlayerReporter,
    "verbosity": 1,
}

install_prefetch_runner()  # doit's parallel runner, keeping each worker one task ahead (nthlayer/runner.py)

PLAN = make_plan(SERVICES, OUT, get_var("catalog", None), index_path=os.path.join(STATE, "spec-index.json"))


def task_alertmanager():
    """Alertmanager routing tree and receivers for every valid service."""
    from nthlayer.build import alertmanager_action, alertmanager_targets

    outputs = alertmanager_targets(OUT)
    routes = routes_digest(alertmanager_routes(PLAN))  # the routing facts of every spec, from the plan
    return {
        "actions": [alertmanager_action(PLAN)],
        "uptodate": [config_changed({"code": code_fingerprint("alertmanager"), "routes": routes})],
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


def task_service():
    """Per service: OpenSLO documents, SLO rules and their promtool tests, scrape config, technology
    alerts from the rules catalog, PagerDuty desired state. Only the stale kinds are regenerated: all
    after a spec edit, the alerts after a catalog file edit, a kind whose generator code changed."""
    stamps = code_stamps(STATE)
    # Specs edited since the last build first: doit hands out tasks in this order, checking each one up
    # to date on the way, and an edited spec's task should not wait for the checks of a thousand others.
    names = PLAN.task_names()
    for entry in sorted(PLAN.entries, key=lambda entry: not entry.changed):
        yield service_task(entry, PLAN, stamps, names[entry.path])
