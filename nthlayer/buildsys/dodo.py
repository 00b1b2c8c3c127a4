"""The doit build: every services/*.yaml → out/<service>/…, as doit tasks.

Wiring only; the logic lives in the other nthlayer.buildsys modules (the artifact kinds in
nthlayer.buildsys.kinds) and the generators package. One definition for both
entry points: the checkout's top-level ``dodo.py`` (``doit``) takes its names from :func:`namespace`,
and ``nthlayer build`` hands the same namespace to doit from an installed package, in any folder.
Variables: ``doit services=DIR out=DIR catalog=DIR secrets_dir=DIR strict=1`` (or NTHLAYER_SERVICES /
NTHLAYER_OUT / NTHLAYER_CATALOG / NTHLAYER_SECRETS_DIR / NTHLAYER_STRICT); for a sharded build
(nthlayer.buildsys.shards, docs/build.md) ``shard=K/N shard_by=name|team``, then ``assemble=N``
(NTHLAYER_SHARD / NTHLAYER_SHARD_BY / NTHLAYER_ASSEMBLE).
"""
from __future__ import annotations

import atexit
import gc
import os
from contextlib import contextmanager
from typing import Any, Iterator

from doit import get_var
from doit.exceptions import InvalidDodoFile
from doit.tools import config_changed

from generators.catalog import default_catalog_dir
from generators.errors import UserError
from nthlayer.buildsys.backend import SharedMD5Checker
from nthlayer.buildsys.composites import composite_names, composite_tasks, prune_composites
from nthlayer.buildsys.correlation import correlation_action, correlation_code, correlation_targets
from nthlayer.buildsys.kinds import SHARED_KINDS
from nthlayer.buildsys.outputs import remove_leftovers, targets_unedited
from nthlayer.buildsys.plan import make_plan, spec_stats, worker_count
from nthlayer.buildsys.plugin_kinds import activate as activate_plugins
from nthlayer.buildsys.project import build_setting, is_on
from nthlayer.buildsys.reporter import NthlayerReporter
from nthlayer.buildsys.runner import install as install_prefetch_runner
from nthlayer.buildsys.settled import AHEAD_FILE, keep_groups, settled_filter, stamps_ahead, stamps_ahead_from
from nthlayer.buildsys.settled import wanted as settled_wanted
from nthlayer.buildsys.shards import (Shard, assemble_task, assembled_plan, fragment_task, in_shard, parse_count,
                                      parse_shard, shard_errors_task)
from nthlayer.buildsys.tasks import (clean_targets, code_stamps, policies_task, prune_out, service_checks, service_outputs,
                                    service_task, shared_task)
from nthlayer.integrations.secrets import secrets_dir


# A build makes millions of short-lived dicts and lists (the generated documents) and few reference cycles.
# At CPython's default threshold (a collection every 700 new containers) the cyclic collector ran thousands
# of times in a first build of 1000 services, its older generations walking every object the plan holds.
# At 50,000 it runs a fiftieth as often (1000 services, out/ on tmpfs: median 2.96 -> 2.72 s over six
# alternating runs; docs/benchmarks.md). Set for the build's process and inherited by the forked workers.
GC_THRESHOLDS = (50_000, 20, 100)


def _freeze_at_exit() -> None:
    """At interpreter exit, before its collections: every object moved out of the cyclic collector's reach.

    Finalization runs full collections over every object still alive (a no-op build of 10,000 services
    holds 160,000 containers: the plan, the tasks, doit's database). They cost 0.1-0.2 s on the way out,
    to free memory the process is about to give back whole. Exit handlers registered before this one run
    after it, with everything intact; only cyclic garbage is left to the operating system."""
    gc.freeze()


def namespace() -> dict[str, Any]:
    """``DOIT_CONFIG`` and the ``task_*`` creators of one build, for the variables doit was given.

    Called when doit loads its tasks (after it has read ``name=value`` arguments), so each load plans
    from the spec files as they are then.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    gc.unfreeze()  # a long-lived process: the last load's objects (frozen below) within reach again
    atexit.unregister(_freeze_at_exit)  # once per process (a long-lived one loads the build again)
    atexit.register(_freeze_at_exit)
    given = {name: value for name in ("services", "out", "state", "secrets_dir", "strict", "shard", "shard_by",
                                      "assemble")
             if (value := get_var(name, None)) is not None}
    services = build_setting(given, "services", "NTHLAYER_SERVICES", "services")
    out = build_setting(given, "out", "NTHLAYER_OUT", "out")
    state = build_setting(given, "state", "NTHLAYER_STATE_DIR", "state")
    # Where Alertmanager reads routing keys (routing_key_file = SECRETS/<service>.key), written into
    # alertmanager.yml as given: a deployment names an absolute folder (secrets_dir=/etc/alertmanager/secrets).
    secrets = secrets_dir(given.get("secrets_dir"))  # the variable, else $NTHLAYER_SECRETS_DIR, else state/secrets
    # strict=1 (or NTHLAYER_STRICT=1, nthlayer build --strict): every spec warning is an error, its service not built.
    strict = is_on(build_setting(given, "strict", "NTHLAYER_STRICT"))
    with dodo_errors():
        shard, shards = sharding(given)  # shard=K/N: that shard's services and its fragment; assemble=N: the rest
    os.makedirs(state, mode=0o700, exist_ok=True)  # it will hold the state database (docs/state.md: 0700)
    remove_leftovers([out, state])  # what a killed build left: hidden staging folders and temp files

    config = {
        # the shared tasks overlap the services
        "default_tasks": [*(kind.name for kind in SHARED_KINDS), "composite", "correlate", "report", "prune",
                          "policies", "service"],
        "dep_file": os.path.join(state, "doit.json"),
        "backend": "nthlayer-json",  # nthlayer.buildsys.backend.StateJsonDB, registered by pyproject.toml
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

    # The plugins (nthlayer build --plugin / $NTHLAYER_PLUGINS, nthlayer.toml's [build] plugins, installed
    # entry points), loaded here, in the main process, before the plan and doit's workers fork: they inherit them.
    activate_plugins(state)
    # A plain run leaves out the service tasks certainly up to date (settled.py). The stamps of their targets
    # are worked out by a child process, from when the specs are read to when the tasks are made.
    # They start from the groups of target files the last run kept (state/settled-targets.pickle), before the
    # plan is read; without them, from the plan's once each spec is read.
    fast = settled_wanted()
    groups_file = os.path.join(state, AHEAD_FILE)
    ahead: list[Any] = [stamps_ahead_from(groups_file) if fast else None]
    from_file = ahead[0]
    kept_groups: list[tuple[str, ...]] = []  # the groups of the shared tasks' targets it stats too

    def prefetch(entries: list[Any]) -> None:
        if ahead[0] is None:
            ahead[0] = stamps_ahead([tuple(service_outputs(entry, out)) for entry in entries
                                     if not entry.changed and entry.name is not None])

    if shards is not None:  # the plan of every spec, from the shards' fragments: no spec validated again
        with dodo_errors():
            plan = assembled_plan(services, out, get_var("catalog", None) or default_catalog_dir(), shards, secrets,
                                  strict, os.path.join(state, "catalog"))
    else:
        plan = make_plan(services, out, get_var("catalog", None),
                         index_path=os.path.join(state, "spec-index.json"), strict=strict,
                         judge=None if shard is None else shard.holds,  # a shard judges its own specs
                         read=prefetch if fast else None)
    full = plan  # every spec: the prune keeps every service's folder, the fragment reads its shard's share
    # The plan lives as long as the build: out of the cyclic collector's reach from here on, in this process
    # and the workers it forks. Its objects were otherwise walked again by the next collection of the older
    # generation: 0.25 s at 10,000 services, in the parent, while it alone works (making the tasks).
    gc.freeze()
    if shard is not None:
        plan = in_shard(full, shard)
    def task_correlate() -> dict[str, Any]:
        """Deploy/incident correlation reports from the DuckDB state, rebuilt only when that data changed."""
        from nthlayer.buildsys.correlation import state_unchanged

        state_db = os.environ.get("NTHLAYER_STATE", os.path.join(state, "nthlayer.duckdb"))
        outputs = correlation_targets(out)
        cache = os.path.join(state, "state-fingerprint.json")  # spares no-op builds opening DuckDB
        return {
            "actions": [(correlation_action, [state_db, plan, cache])],
            "file_dep": correlation_code(),
            "uptodate": [state_unchanged(state_db, plan.dependency_graph(), cache_path=cache),
                         targets_unedited(outputs)],
            "targets": outputs,
            "clean": [(clean_targets, [outputs, out])],
        }

    def task_report() -> dict[str, Any]:
        """The HTML reliability report (out/reports/index.html, a page per service) from the DuckDB state,
        rebuilt only when the budget history, deploys, incidents or the set of services changed."""
        from nthlayer.buildsys.report import report_action, report_code, report_targets, report_uptodate

        state_db = os.environ.get("NTHLAYER_STATE", os.path.join(state, "nthlayer.duckdb"))
        outputs = report_targets(out, plan)
        kept_groups.append(tuple(outputs))  # its pages are stat'ed by the settled path's child, with the services'
        cache = os.path.join(state, "report-fingerprint.json")  # spares no-op builds opening DuckDB
        return {
            "actions": [(report_action, [state_db, plan, cache])],
            "file_dep": report_code(),
            "uptodate": [report_uptodate(state_db, plan, cache),
                         targets_unedited(outputs, ahead=from_file)],
            # doit checks that each target exists: the index alone (a missing page fails targets_unedited)
            "targets": outputs[:1],
            "clean": [(clean_targets, [outputs, out])],
        }

    def task_prune() -> dict[str, Any]:
        """Remove out/<service>/ of services whose spec was deleted (and out/composites/<name>/ of
        composites whose file was)."""
        keep = sorted(full.protected_dirs())  # a shard's build may share out/ with the other shards'
        composites = sorted({name for name in composite_names(full).values() if name is not None})
        return {
            "actions": [(prune_out, [out, keep]), (prune_composites, [out, composites])],
            "uptodate": [config_changed({"keep": keep, "composites": composites})],
            "verbosity": 2,
        }

    def task_composite() -> Iterator[dict[str, Any]]:
        """Per composite SLO of services/composites/: its rules, promtool tests and OpenSLO documents,
        rebuilt when its file or the spec of one of its components changes."""
        yield {"name": None, "doc": task_composite.__doc__}  # the group exists with no composite too
        yield from composite_tasks(plan)

    def task_service() -> Iterator[dict[str, Any]]:
        """Per service: OpenSLO documents, SLO rules and their promtool tests, scrape config, technology
        alerts from the rules catalog, PagerDuty desired state. Only the stale kinds are regenerated: all
        after a spec edit, the alerts after a catalog file edit, a kind whose generator code changed."""
        yield {"name": None, "doc": task_service.__doc__}  # the group exists when every service is settled
        stamps = code_stamps(state)
        # a plain run: the tasks certainly up to date are left out (settled.py)
        settled = settled_filter(ahead[0] or dict, spec_stats())
        # Specs edited since the last build first: doit hands out tasks in this order, checking each one up
        # to date on the way, and an edited spec's task should not wait for the checks of a thousand others.
        names = plan.task_names()
        # What doit checks of every task is made before the first check (which waits for the targets' stamps:
        # settled.py); the rest of a task only for the tasks doit is given.
        tasks = [(entry, service_checks(entry, plan, stamps, names[entry.path]))
                 for entry in sorted(plan.entries, key=lambda entry: not entry.changed)]
        for entry, checks in tasks:
            if settled is None or entry.changed or not settled(checks):
                yield service_task(entry, plan, stamps, checks["name"], checks)
        if settled is not None:  # the next run's stat child reads the groups of this one
            keep_groups(groups_file, [*(tuple(task["targets"]) for _, task in tasks if task["targets"]), *kept_groups],
                        from_file() if from_file is not None else None)

    settings = {"secrets_dir": secrets, "state_dir": state}  # what the shared kinds are given besides the plan

    def shared_creator(kind: str, doc: str) -> Any:
        def creator() -> dict[str, Any]:
            return shared_task(kind, plan, settings)

        creator.__doc__ = doc  # `doit list` shows it
        return creator

    shared = {f"task_{kind.name}": shared_creator(kind.name, kind.doc) for kind in SHARED_KINDS}
    def task_policies() -> dict[str, Any]:
        """The project's Rego policies (docs/policies.md): fails while one cannot be used."""
        return policies_task(plan)

    creators = {**shared, "task_composite": task_composite, "task_correlate": task_correlate,
                "task_report": task_report, "task_prune": task_prune,
                "task_policies": task_policies, "task_service": task_service}
    if shard is not None:  # the services of one shard and its fragment; the shared files are the assembly's
        def task_fragment() -> dict[str, Any]:
            """What the shared files need from this shard's specs (out/.shards/), for ``assemble=N``."""
            return fragment_task(full, shard, secrets)

        creators = {name: creators[name] for name in ("task_prune", "task_policies", "task_service")}
        creators["task_fragment"] = task_fragment
        config["default_tasks"] = ["prune", "policies", "service", "fragment"]
    elif shards is not None:  # the shared files from the fragments; no service task
        shared_names = [*(kind.name for kind in SHARED_KINDS), "composite", "correlate", "report", "prune"]

        def task_shard_errors() -> dict[str, Any]:
            """Fails with the error lines of the specs broken in their shard (their stage failed too)."""
            return shard_errors_task(plan)

        def task_assemble() -> dict[str, Any]:
            """Removes the fragments (out/.shards/) once every other task of the assembly succeeded."""
            return assemble_task(plan, [*shared_names, "shard-errors"])

        creators = {name: creator for name, creator in creators.items()
                    if name not in ("task_service", "task_policies")}
        creators.update({"task_shard-errors": task_shard_errors, "task_assemble": task_assemble})
        config["default_tasks"] = [*shared_names, "shard-errors", "assemble"]
    return {"DOIT_CONFIG": config, **creators}


def sharding(given: dict[str, str]) -> tuple[Shard | None, int | None]:
    """``shard=K/N`` (and ``shard_by``) and ``assemble=N`` as given (or NTHLAYER_SHARD, NTHLAYER_SHARD_BY,
    NTHLAYER_ASSEMBLE); a UserError for a bad value."""
    text = build_setting(given, "shard", "NTHLAYER_SHARD")
    by = build_setting(given, "shard_by", "NTHLAYER_SHARD_BY")
    count = build_setting(given, "assemble", "NTHLAYER_ASSEMBLE")
    if text and count:
        raise UserError(f"shard={text} and assemble={count}: a run builds one shard or assembles them, not both")
    if by and not text:
        raise UserError(f"shard_by={by} without shard=K/N")
    return (parse_shard(text, by) if text else None), (parse_count(count) if count else None)


@contextmanager
def dodo_errors() -> Iterator[None]:
    """A UserError while the tasks are made (a bad shard value, a missing fragment) is doit's "invalid dodo
    file" error: one ``ERROR: nthlayer: …`` line and exit 3 (``nthlayer build``: a usage error), no traceback."""
    try:
        yield
    except UserError as exc:
        raise InvalidDodoFile(f"nthlayer: {exc}") from None


def doit_exit_code(code: int | None) -> int:
    """doit's exit status in nthlayer's table: 1 and 2 (a task failed, or could not run after one did)
    are a failed build (1), unless a stop signal ended it (130, interrupted); 3 (doit refused its command
    line: unknown task, bad option) is a usage error."""
    from nthlayer.buildsys.runner import STOPPED
    from nthlayer.exit_codes import EXIT_INTERRUPTED, EXIT_USAGE

    if STOPPED:
        return EXIT_INTERRUPTED
    if not code:  # doit's clean and some other commands return None on success
        return 0
    return EXIT_USAGE if code == 3 else 1


DODO_FILE = __file__  # this file as doit's -f argument (a child build process: nthlayer.ops.services)
if __name__ != "nthlayer.buildsys.dodo":  # loaded by doit from its path (doit -f DODO_FILE): define the tasks
    globals().update(namespace())
