"""What dodo.py wires: the build plan (which services, which files), task actions, and the reporter.

The plan is computed once per doit run from the spec files. A spec that fails
validation still gets its tasks: they fail with the spec's error lines, and
no file of that service (or any other) is touched.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from doit.dependency import JsonDB, MD5Checker, get_file_md5
from doit.exceptions import TaskFailed, UnmetDependency
from doit.reporter import ConsoleReporter

from generators.alertmanager import Routing
from generators.catalog import default_catalog_dir, technology_files
from generators.errors import SpecError, SpecErrors, as_errors, sort_key
from generators.model import Service, build_service
from generators.render import write_all, write_if_changed, write_new_tree
from generators.shapes import shaped_files
from generators.spec import (FileSummary, cross_file_problems, enable_fast_validation, expand_paths,
                             keep_validators_in, load_spec, summarize)
from generators.yamlload import external_links_allowed, load_yaml
from nthlayer.outputs import remove_leftovers, targets_unedited

GENERATORS_DIR = Path(__file__).resolve().parent.parent / "generators"

# Every artifact kind: the generator modules its output depends on (besides the
# spec-loading core) and the files it writes, relative to out/<service>/.
CORE_CODE = ("errors.py", "yamlload.py", "spec.py", "spec_values.py", "schema_messages.py", "model.py", "tiers.py",
             "render.py", "promql.py", "slo_maths.py", "paging.py", "slo_spec.py", "promql_scope.py",
             "schemas/service.schema.json")
ARTIFACTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "openslo": (("openslo.py", "shapes.py", "slo_rules.py", "sli_queries.py"),
                ("openslo/service.yaml", "openslo/availability.yaml", "openslo/latency.yaml")),
    "slo_rules": (("slo_rules.py", "slo_tests.py", "slo_test_inputs.py", "sli_queries.py", "shapes.py"),
                  ("prometheus/slo.rules.yaml", "prometheus/slo-rules.test.yaml", "prometheus/slo-burst.test.yaml",
                   "prometheus/scrape.yaml")),
    "alerts": (("tech_alerts.py", "promql_scope.py", "catalog.py", "schemas/catalog.schema.json", "shapes.py"),
               ("prometheus/alerts.rules.yaml",)),
    "pagerduty": (("pagerduty.py",), ("pagerduty.json",)),
    "alertmanager": (("alertmanager.py",), ()),
}
PER_SERVICE = ("openslo", "slo_rules", "alerts", "pagerduty")
# The files of a kind that exist once per SLO, or only when the service has SLOs at all.
SLO_FILES = frozenset({"openslo/availability.yaml", "openslo/latency.yaml", "prometheus/slo.rules.yaml",
                       "prometheus/slo-rules.test.yaml", "prometheus/slo-burst.test.yaml"})


def artifact_files(kind: str, slos: tuple[str, ...] | None) -> tuple[str, ...]:
    """The files of ``kind`` under out/<service>/, for a spec declaring SLOs ``slos`` (None: the default
    availability and latency SLOs): an OpenSLO file per SLO, and no SLO rules or tests without SLOs."""
    files = ARTIFACTS[kind][1]
    if slos is None:
        return files
    if kind == "openslo":
        return ("openslo/service.yaml", *(f"openslo/{name}.yaml" for name in slos))
    if not slos:
        return tuple(name for name in files if name not in SLO_FILES)
    return files
SHARED_DIRS = frozenset({"alertmanager", "reports", "prometheus"})  # out/ folders not of one service


@dataclass
class SpecEntry:
    path: str
    stem: str
    summary: FileSummary
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[SpecError] = field(default_factory=list)
    # What alertmanager.yml and the correlation graph need from it: from the spec when valid on its own,
    # else from its last version that was (state/spec-index.json), so that a typo drops neither a
    # service's routes nor its dependency edges.
    routing: Routing | None = None
    upstream: tuple[str, ...] = ()  # that version's dependencies.upstream
    changed: bool = False  # validated in this run: new, or edited since the last (state/spec-index.json)

    @property
    def name(self) -> str | None:
        """The service name, when the spec is valid."""
        return self.summary.name.value if self.summary.name is not None and not self.errors else None

    @property
    def technology_types(self) -> list[str]:
        return sorted({ref.value for ref in self.summary.technologies})


@dataclass
class BuildPlan:
    services_dir: str
    out_dir: str
    catalog_dir: str
    entries: list[SpecEntry]
    catalog_cache: str | None = None  # where validated catalog files are kept (state/catalog)

    def task_names(self) -> dict[str, str]:
        """Each spec's doit sub-task name (file path → name): its service when valid; else its file's stem,
        or its path when a valid service or another spec (``a.yaml`` beside ``a.yml``) has that stem, since
        doit refuses a build with two tasks of one name."""
        valid = {entry.name for entry in self.valid}
        stems: dict[str, int] = {}
        for entry in self.entries:
            if entry.name is None:
                stems[entry.stem] = stems.get(entry.stem, 0) + 1
        return {entry.path: entry.name if entry.name is not None else
                entry.stem if entry.stem not in valid and stems[entry.stem] == 1 else entry.path
                for entry in self.entries}

    @property
    def valid(self) -> list[SpecEntry]:
        return [e for e in self.entries if e.name is not None]

    def protected_dirs(self) -> set[str]:
        """out/ subfolders a prune must keep: current services, broken specs' stems and last valid names,
        shared output."""
        names = {e.name for e in self.valid} | {e.stem for e in self.entries if e.name is None}
        # A broken spec's service keeps its outputs under its last valid name, whatever its file is called.
        names |= {e.routing.name for e in self.entries if e.name is None and e.routing is not None}
        return {n for n in names if n} | SHARED_DIRS

    def edges(self) -> list[tuple[str, str]]:
        """(deployed, affected) pairs as nthlayer.correlation.dependency_edges makes them: each valid
        spec's ``dependencies.upstream`` entry U gives (U, spec) — a deploy of U can hurt the spec's service.
        A broken spec keeps its last valid version's pairs, unless a valid spec claims its service."""
        claimed = {entry.name for entry in self.valid}
        return sorted({(upstream, entry.routing.name) for entry in self.entries
                       if entry.routing is not None and (entry.name is not None or entry.routing.name not in claimed)
                       for upstream in entry.upstream})

    def dependency_graph(self) -> str:
        """A digest of who-calls-whom (the correlation report's input from the specs)."""
        return hashlib.sha256(json.dumps(self.edges()).encode()).hexdigest()[:16]

    def catalog_files(self, entry: SpecEntry) -> list[str]:
        files = technology_files(self.catalog_dir)  # listed once per process while the folder is unchanged
        return [files[t] for t in entry.technology_types if t in files]


# What a spec-index entry is computed by: the spec checks (validation asks slo_tests and promql_scope about
# SLI matchers), the routing facts (Routing.paged comes from paging.py, in CORE_CODE), and the selector
# warnings (generators.catalog_labels, which read the catalog files: each entry keeps their stamps too).
INDEX_CODE = (*CORE_CODE, "alertmanager.py", "pagerduty.py", "catalog_labels.py", "catalog.py", "promql_scope.py",
              "tech_alerts.py", "slo_tests.py", "schemas/catalog.schema.json")
INDEX_FORMAT = "5"  # [size/mtime, summary, routing, upstream, catalog stamps] per file; summary with its SLO names


def _code_fingerprint() -> str:
    parts = [INDEX_FORMAT]
    for name in INDEX_CODE:
        stat = (GENERATORS_DIR / name).stat()
        parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    # A link leaving the project is refused or read depending on this setting: a cached verdict made
    # under the other one must not be reused (allowing it, or revoking it, takes effect on the next build).
    parts.append(f"external-links:{int(external_links_allowed())}")
    return "|".join(parts)


# The catalog folder and its cache (state/catalog) the selector warnings and the index's catalog stamps
# read; set by make_plan before the summaries are made.
_CATALOG: list[tuple[str, str | None]] = []


def _summarize_one(path: str) -> tuple[FileSummary, Service | None, Any]:
    """A spec's summary and model, and where its dependency selectors are (for the selector warnings the
    parent adds: it holds the catalog files, which a worker would otherwise read again)."""
    summary, spec = summarize(path)
    if spec is None:
        return summary, None, None
    from generators.catalog_labels import SelectorMarks

    return summary, spec.service, SelectorMarks.of(spec.located, spec.service)


def _with_selector_warnings(summary: FileSummary, service: Service, marks: Any) -> FileSummary:
    """``summary`` with the warnings for alerts the spec's dependency selectors silence."""
    if not _CATALOG or not service.technologies:
        return summary
    from generators.catalog_labels import spec_selector_warnings

    extra = spec_selector_warnings(marks, service, *_CATALOG[0])
    if not extra:
        return summary
    return summary._replace(warnings=tuple(sorted((*summary.warnings, *extra), key=sort_key)))


_STAMPS: dict[str, list[int] | None] = {}  # catalog file → [size, mtime_ns], once per process


def catalog_stamps(technologies: Iterable[str]) -> dict[str, list[int] | None]:
    """The size and mtime of the catalog file of each technology (None: not in the catalog), by which a
    spec-index entry's selector warnings are known to be current."""
    if not _CATALOG:
        return {}
    files = technology_files(_CATALOG[0][0])
    stamps: dict[str, list[int] | None] = {}
    for name in sorted(set(technologies)):
        path = files.get(name)
        if path is not None and path not in _STAMPS:
            try:
                stat = os.stat(path)
                _STAMPS[path] = [stat.st_size, stat.st_mtime_ns]
            except OSError:
                _STAMPS[path] = None
        stamps[name] = _STAMPS[path] if path is not None else None
    return stamps


def _entry_stamps(summary: FileSummary) -> dict[str, list[int] | None]:
    return catalog_stamps(ref.value for ref in summary.technologies)


PARALLEL_MIN_FILES = 200  # below this, forking costs more than it saves


def worker_count() -> int:
    """Processes a build splits its work over: two where there are two cores (docs/benchmarks.md)."""
    return min(2, len(os.sched_getaffinity(0)))


def _summarize_all(paths: list[str], meanwhile: Callable[[FileSummary], None] | None = None
                   ) -> list[tuple[FileSummary, Service | None, Any]]:
    """Validate files, in two forked processes when there are many and two cores (a first build of
    1000 specs: 1 s of YAML parsing and JSON Schema checks). Results come back in order; ``meanwhile``
    is called with each summary as it arrives, while the pool works on the rest."""
    workers = worker_count()
    if len(paths) >= PARALLEL_MIN_FILES:
        enable_fast_validation("service.schema.json")  # before the fork: the pool inherits it
    if len(paths) < PARALLEL_MIN_FILES or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [_summarize_one(path) for path in paths]
    results = []
    from nthlayer.runner import die_with_parent

    with multiprocessing.get_context("fork").Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        for result in pool.imap(_summarize_one, paths, chunksize=max(1, len(paths) // (workers * 8))):
            results.append(result)
            if meanwhile is not None:
                meanwhile(result[0])
    return results


class _Warmer:
    """What every build process would otherwise do alone, done once in the parent before doit forks
    its workers, while the plan's pool validates the specs (the parent only waits for it): the
    generator modules imported, and each catalog file the specs name validated (kept in state/catalog,
    and in memory for the forked workers). A first build of 1000 services: two workers each spent
    0.2-0.3 s of CPU on it."""

    def __init__(self, catalog_dir: str, cache_dir: str) -> None:
        self.catalog_dir = catalog_dir
        self.cache_dir = cache_dir
        self.seen: set[str] = set()

    def __call__(self, summary: FileSummary) -> None:
        try:
            self._warm(summary)
        except Exception:  # noqa: BLE001 - only a head start: the tasks meet (and report) any problem again
            pass

    def _warm(self, summary: FileSummary) -> None:
        from generators.catalog import load_technology_cached

        if not self.seen:
            from generators import openslo, pagerduty, slo_rules, tech_alerts  # noqa: F401

            enable_fast_validation("catalog.schema.json")
        files = technology_files(self.catalog_dir)
        for ref in summary.technologies:
            if ref.value not in self.seen and ref.value in files:
                self.seen.add(ref.value)
                try:
                    load_technology_cached(files[ref.value], self.cache_dir)
                except SpecErrors:  # a broken catalog file: its services' tasks report it
                    pass


def _summaries(files: list[str], index_path: str | None, meanwhile: Callable[[FileSummary], None] | None = None,
               record: bool = True) -> tuple[list[tuple[FileSummary, Routing | None, tuple[str, ...]]], set[str]]:
    """Per-file validation results, reused from state/spec-index.json for files that did not change;
    and the files that did (validated now)."""
    cache: dict[str, Any] = {}
    fingerprint = _code_fingerprint()
    if index_path and os.path.exists(index_path):
        try:
            with open(index_path, encoding="utf-8") as handle:
                loaded = json.load(handle)
            if loaded.get("code") == fingerprint:
                cache = loaded.get("files", {})
        except (OSError, ValueError):
            cache = {}
    keys: dict[str, list[int] | None] = {}
    for path in files:
        try:
            stat = os.stat(path)
            keys[path] = [stat.st_size, stat.st_mtime_ns]
        except OSError:
            keys[path] = None
    stale = [p for p in files if keys[p] is None or cache.get(p, [None])[0] != keys[p]
             or cache[p][4] != catalog_stamps(cache[p][4])]
    checked = dict(zip(stale, _summarize_all(stale, meanwhile)))
    fresh: dict[str, Any] = {}
    summaries = []
    for path in files:
        key = keys[path]
        routing: Routing | None = None
        upstream: list[str] = []
        if path in checked:
            summary, service, marks = checked[path]
            if service is not None:
                summary = _with_selector_warnings(summary, service, marks)
                routing, upstream = Routing.of(service), list(service.upstream)
                if key is not None:
                    _LOADED[(path, key[0], key[1])] = service  # the build's load_service reuses it
            elif path in cache and cache[path][2] is not None:
                # Broken now: its last valid version's routing and dependency edges are kept.
                routing, upstream = Routing(*cache[path][2]), cache[path][3]
        else:
            hit = cache[path]
            summary = FileSummary.from_json(hit[1])
            if summary.name is not None and not summary.errors and key is not None:
                _VALIDATED.add((path, key[0], key[1]))
            if hit[2] is not None:
                routing, upstream = Routing(*hit[2]), hit[3]
        summaries.append((summary, routing, tuple(upstream)))
        if key is not None:  # an unchanged file keeps its entry as read
            fresh[path] = ([key, summary.to_json(), routing, upstream, _entry_stamps(summary)] if path in checked
                           else cache[path])
    if index_path and record and (checked or fresh.keys() != cache.keys()):  # a no-op neither encodes nor writes it
        data = json.dumps({"code": fingerprint, "files": fresh}, separators=(",", ":")).encode("utf-8")
        write_if_changed(index_path, data)
    return summaries, set(checked)


def make_plan(services_dir: str, out_dir: str, catalog_dir: str | None = None,
              index_path: str | None = None, strict: bool = False, record: bool = True) -> BuildPlan:
    """The build plan of ``services_dir``: every spec validated (reusing state/spec-index.json for
    unchanged files). ``index_path``: the spec index to reuse and, with ``record``, to update along with
    state/'s validator and catalog caches; without ``record`` nothing is written (``nthlayer build --check``).
    ``strict`` (``--strict``) promotes every warning to an error: that spec's service is not built.
    """
    catalog_dir = catalog_dir or default_catalog_dir()
    state_dir = (os.path.dirname(index_path) or ".") if index_path and record else None
    keep_validators_in(os.path.join(state_dir, "validators") if state_dir else None)
    files = expand_paths([services_dir]) if os.path.isdir(services_dir) else []
    warmer = _Warmer(catalog_dir, os.path.join(state_dir, "catalog")) if state_dir else None
    _CATALOG[:] = [(catalog_dir, os.path.join(state_dir, "catalog") if state_dir else None)]
    _STAMPS.clear()  # a new plan: catalog files may have changed since the last (a long-lived process)
    summaries, changed = _summaries(files, index_path, warmer, record)
    errors, warnings = cross_file_problems([s for s, _, _ in summaries], technology_files(catalog_dir))
    entries = {s.path: SpecEntry(s.path, os.path.splitext(os.path.basename(s.path))[0], s, list(s.errors),
                                 list(s.warnings), routing, upstream, s.path in changed)
               for s, routing, upstream in summaries}
    for error in errors:
        entries[error.path].errors.append(error)
    for warning in warnings:
        entries[warning.path].warnings.append(warning)
    for entry in entries.values():
        if strict and entry.warnings:
            entry.errors += as_errors(entry.warnings)
            entry.warnings = []
        entry.errors.sort(key=sort_key)
        entry.warnings.sort(key=sort_key)
    cache = os.path.join(state_dir, "catalog") if state_dir else None
    return BuildPlan(services_dir, out_dir, catalog_dir, [entries[p] for p in files], cache)


_LOADED: dict[tuple[str, int, int], Service] = {}
_VALIDATED: set[tuple[str, int, int]] = set()  # file versions state/spec-index.json says are valid


def load_service(path: str) -> Service:
    """A valid spec's model, loaded once per process per file version.

    A file version the index already validated is only parsed and modelled: re-running the schema
    check on every spec made the shared alertmanager task cost a one-spec edit seconds at 1000 specs.
    """
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _LOADED:
        if key in _VALIDATED:
            _LOADED[key] = build_service(load_yaml(path).data, path)
        else:
            _LOADED[key] = load_spec(path).service
    return _LOADED[key]


_CODE_DEPS: dict[str, tuple[str, ...]] = {}


def code_deps(kind: str) -> list[str]:
    if kind not in _CODE_DEPS:  # built once: dodo asks for every task
        extra, _ = ARTIFACTS[kind]
        _CODE_DEPS[kind] = tuple(str(GENERATORS_DIR / name) for name in (*CORE_CODE, *extra))
    return list(_CODE_DEPS[kind])


_CODE_HASH: dict[str, str] = {}


def code_fingerprint(kind: str) -> str:
    """One hash of the generator code an artifact kind depends on, computed once per run.

    Tasks depend on it through doit's ``uptodate`` instead of listing each code file as a
    ``file_dep``: one comparison per task instead of a dozen file checks, same rebuild semantics.
    """
    if kind not in _CODE_HASH:
        digest = hashlib.sha256()
        for path in code_deps(kind):
            with open(path, "rb") as handle:
                digest.update(path.rsplit("/", 1)[-1].encode() + b"\0" + handle.read() + b"\0")
        _CODE_HASH[kind] = digest.hexdigest()
    return _CODE_HASH[kind]


def targets(out_dir: str, service: str, kind: str, slos: tuple[str, ...] | None = None) -> list[str]:
    return [f"{out_dir}/{service}/{name}" for name in artifact_files(kind, slos)]


def _generate(kind: str, service: Service, out_dir: str, catalog_dir: str,
              catalog_cache: str | None = None) -> dict[str, bytes]:
    base = f"{out_dir}/{service.name}"
    if kind == "openslo":
        from generators import openslo

        return shaped_files(kind, openslo.openslo_documents, openslo.READS, service, f"{base}/openslo")
    if kind == "slo_rules":
        from generators import slo_rules

        return shaped_files(kind, slo_rules.slo_rule_documents, slo_rules.READS, service, f"{base}/prometheus")
    if kind == "alerts":
        from generators import tech_alerts
        from generators.catalog import load_technologies

        catalog = load_technologies(catalog_dir, service.technology_types, catalog_cache)
        tech_alerts.check_dependencies(service, catalog)  # the real service's own errors, template or not
        context = tuple((name, id(tech)) for name, tech in sorted(catalog.items()))  # kept alive by the cache
        return shaped_files(kind, lambda s: tech_alerts.alert_documents(s, catalog), tech_alerts.READS, service,
                            f"{base}/prometheus", context, lambda s: tech_alerts.check_standin(s, catalog))
    if kind == "pagerduty":
        from generators.pagerduty import pagerduty_files

        return pagerduty_files(service, base)
    raise ValueError(kind)


class SharedMD5Checker(MD5Checker):
    """doit's md5 checker, but each dependency is stat'ed and hashed once per run, not once per task.

    Every service task depends on the same four code stamps and on shared catalog files; no task
    writes a file another depends on (they write only under out/), so a file's state within one run
    is one value.
    """

    _known: dict[tuple[str, float, int], str] = {}  # keyed by mtime and size: valid across runs

    def __init__(self) -> None:
        super().__init__()
        self._stats: dict[str, os.stat_result] = {}  # one doit run (a checker is made per run)

    def info(self, file_path: str) -> os.stat_result:
        stat = self._stats.get(file_path)
        if stat is None:
            stat = self._stats[file_path] = os.stat(file_path)
        return stat

    def get_state(self, dep: str, current_state: Any) -> Any:
        stat = self.info(dep)
        if current_state and current_state[0] == stat.st_mtime:
            return None
        key = (dep, stat.st_mtime, stat.st_size)
        md5 = self._known.get(key)
        if md5 is None:
            md5 = self._known[key] = get_file_md5(dep)
        return stat.st_mtime, stat.st_size, md5


def code_stamps(state_dir: str) -> dict[str, str]:
    """One file per artifact kind holding the hash of its generator code (rewritten only when that
    changes), so each service task lists its code as four file_deps and doit reports which changed."""
    stamps = {}
    for kind in PER_SERVICE:
        path = os.path.join(state_dir, "code", f"{kind}.sha256")
        write_if_changed(path, (code_fingerprint(kind) + "\n").encode())
        stamps[kind] = path
    return stamps


def stale_kinds(spec_path: str, changed: Iterable[str], stamps: dict[str, str]) -> list[str]:
    """The artifact kinds a service task must regenerate, from the file_deps doit says changed: all
    after a spec edit (or a first build, or a missing output: doit then reports every file_dep), a
    kind whose code stamp changed, the technology alerts after a catalog file edit."""
    changed = set(changed)
    if not changed or spec_path in changed:
        return list(PER_SERVICE)
    kinds = {kind for kind, stamp in stamps.items() if stamp in changed}
    if changed - set(stamps.values()):
        kinds.add("alerts")  # the rest are catalog files
    return [kind for kind in PER_SERVICE if kind in kinds]


_SERVICE_FILES = tuple(name for kind in PER_SERVICE for name in ARTIFACTS[kind][1])


def service_task(entry: SpecEntry, plan: BuildPlan, stamps: dict[str, str], name: str) -> dict[str, Any]:
    """The doit task of one spec: every per-service artifact, regenerating only the stale kinds."""
    # A spec that is no regular file (a named pipe, a dangling link) is reported by its action; doit
    # must not hash it: opening a named pipe waits forever, a missing file_dep is a doit error. (A spec
    # without errors was read as a regular file: a no-op build of 1000 specs asks nothing more.)
    regular = not entry.errors or os.path.isfile(entry.path)
    deps = [entry.path, *stamps.values()] if regular else list(stamps.values())
    outputs: list[str] = []
    service = entry.name
    if service is not None:
        deps += plan.catalog_files(entry)
        base = f"{plan.out_dir}/{service}/"
        slos = entry.summary.slos
        # Every kind's targets (a thousand tasks are made a run: the default SLOs' list is made once).
        outputs = [base + name for name in (_SERVICE_FILES if slos is None else
                                            [f for kind in PER_SERVICE for f in artifact_files(kind, slos)])]

    def title(task: Any) -> str:
        kinds = stale_kinds(entry.path, task.dep_changed or (), stamps)
        return task.name if len(kinds) == len(PER_SERVICE) else f"{task.name} ({', '.join(kinds)})"

    task = {
        "name": name,
        "actions": [service_action(entry, plan, stamps)],
        "file_dep": deps,
        "targets": outputs,
        "uptodate": [targets_unedited(outputs)] if outputs else [],  # a hand-edited file is rebuilt
        "title": title,
        "clean": [(clean_targets, [outputs, plan.out_dir])],
    }
    if entry.errors:
        # Its files may be unchanged since a successful run (a warning under --strict, a clash with
        # another spec): the task must still run, to fail and report the errors.
        task["uptodate"] = [False]
    return task


def _as_read_back(value: Any) -> Any:
    """``value`` as JSON would give it back: tuples as lists."""
    if isinstance(value, (tuple, list)):
        return [_as_read_back(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_read_back(item) for key, item in value.items()}
    return value


class StateJsonDB(JsonDB):
    """doit's dependency database as one JSON file (registered as doit backend ``nthlayer-json``).

    Like doit's ``json`` backend (read whole, served from memory: half the per-task cost of ``sqlite3``
    on a no-op run of 1000 services), but the file is replaced atomically and only when its content
    changed, so an interrupted run cannot leave it half-written and a no-op run writes nothing.
    """

    desc = "JSON file, written atomically and only when changed"

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None) -> None:
        self._saved: str | None = None
        self._dirty = False
        super().__init__(name, codec, module_name=module_name)

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        old = self.get(task_id, dependency)
        if old != value and old != _as_read_back(value):  # a tuple comes back from JSON as a list
            self._dirty = True
            super().set(task_id, dependency, value)

    def remove(self, task_id: str) -> None:
        self._dirty = self._dirty or task_id in self._db
        super().remove(task_id)

    def remove_all(self) -> None:
        self._dirty = self._dirty or bool(self._db)
        super().remove_all()

    def _load(self) -> Any:
        with open(self.name, encoding="utf-8") as handle:
            self._saved = handle.read()
        try:
            return self.codec.decode(self._saved)
        except ValueError:
            from doit.dependency import DatabaseException

            raise DatabaseException(f"{os.path.abspath(self.name)} is not valid JSON: remove it and the next "
                                    "build rebuilds everything") from None

    def dump(self) -> None:
        if not self._dirty and self._saved is not None:
            return
        text = self.codec.encode(self._db)
        if text != self._saved:
            write_if_changed(self.name, text.encode("utf-8"))
            self._saved = text
        self._dirty = False


class SpecFailure(TaskFailed):
    """A task failure whose message is user-facing error lines (no traceback)."""


def service_files(service: Service, plan: BuildPlan, kinds: Iterable[str] = PER_SERVICE) -> dict[str, bytes]:
    """The files of ``kinds`` for one service, as the build writes them (``nthlayer build --check``
    compares out/ with them)."""
    files: dict[str, bytes] = {}
    for kind in kinds:
        made = _generate(kind, service, plan.out_dir, plan.catalog_dir, plan.catalog_cache)
        # The SLO names decide the file names (the default pair's names give the default files).
        expected = set(targets(plan.out_dir, service.name, kind, tuple(s.name for s in service.slos)))
        if set(made) != expected:
            raise RuntimeError(f"{kind} generator wrote {sorted(made)}, dodo expects {sorted(expected)}")
        files.update(made)
    return files


def service_action(entry: SpecEntry, plan: BuildPlan, stamps: dict[str, str]) -> Callable[..., Any]:
    def action(changed: list[str]) -> Any:  # doit passes the file_deps that changed
        if entry.errors or entry.name is None:
            return SpecFailure("\n".join(e.format() for e in entry.errors))
        for warning in entry.warnings:
            print(warning.format(), file=sys.stderr)
        try:
            service = load_service(entry.path)
            kinds = stale_kinds(entry.path, changed, stamps)
            files = service_files(service, plan, kinds)
        except SpecErrors as exc:
            return SpecFailure("\n".join(exc.lines()))
        # Only after every kind was generated: an error leaves all files as they were. A service's first
        # build creates its folder whole; later ones replace the changed files one by one.
        if len(kinds) < len(PER_SERVICE) or not write_new_tree(f"{plan.out_dir}/{service.name}", files):
            remove_leftovers(sorted({os.path.dirname(path) for path in files}))  # a killed build's temp files
            write_all(files)
            _remove_former_slo_files(f"{plan.out_dir}/{service.name}", kinds, files)
        return None

    action.__name__ = "build_service"
    return action


def _remove_former_slo_files(base: str, kinds: list[str], files: dict[str, bytes]) -> None:
    """Remove the SLO files a renamed or removed SLO left behind (a `slos:` block edited, added or removed)."""
    candidates: list[str] = []
    if "openslo" in kinds and os.path.isdir(f"{base}/openslo"):
        candidates += [f"{base}/openslo/{name}" for name in os.listdir(f"{base}/openslo") if name.endswith(".yaml")]
    if "slo_rules" in kinds:
        candidates += [f"{base}/{name}" for name in SLO_FILES if name.startswith("prometheus/")]
    for path in candidates:
        if path not in files and os.path.isfile(path):
            os.remove(path)


def clean_targets(paths: Iterable[str], stop_at: str) -> None:
    """doit clean: remove the files, then any folders they leave empty (up to out/)."""
    stop = os.path.abspath(stop_at)
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        folder = os.path.dirname(os.path.abspath(path))
        while folder.startswith(stop + os.sep) and os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
            folder = os.path.dirname(folder)


def prune_out(out_dir: str, keep: Iterable[str]) -> None:
    """Remove out/<name>/ folders of services that no longer exist."""
    keep = set(keep)
    removed: list[str] = []
    if not os.path.isdir(out_dir):
        return None
    for name in sorted(os.listdir(out_dir)):
        path = os.path.join(out_dir, name)
        if name in keep or not os.path.isdir(path) or name.startswith("."):
            continue
        shutil.rmtree(path)
        removed.append(path)
    for path in removed:
        print(f"removed {path} (its service spec is gone)")
    return None


def _line_key(line: str) -> tuple[str, int, int, str]:
    path, line_no, col, rest = (line.split(":", 3) + ["", "", ""])[:4]
    try:
        return (path, int(line_no), int(col), rest)
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
            sys.stderr.write("nthlayer: services with invalid inputs (specs or catalog files) were not built; "
                             "the other services' outputs are up to date\n")
        for line in self.state_lines:
            sys.stderr.write(line + "\n")


ALERTMANAGER_FILES = ("alertmanager.yml",)


def alertmanager_targets(out_dir: str) -> list[str]:
    return [f"{out_dir}/alertmanager/{name}" for name in ALERTMANAGER_FILES]


def alertmanager_routes(plan: BuildPlan) -> list[Routing]:
    """The routing facts of every valid service, and the last valid routing of each broken spec whose
    service no valid spec claims: a broken edit must not take a service's alerts off their receivers
    (the build fails, and alertmanager.yml stays as it was). From the plan; no spec is loaded again."""
    valid = {entry.path for entry in plan.valid}
    claimed = {entry.routing.name for entry in plan.valid if entry.routing is not None}
    routes: list[Routing] = []
    seen: set[str] = set()
    for entry in plan.entries:
        routing = entry.routing
        if routing is None or routing.name in seen or (entry.path not in valid and routing.name in claimed):
            continue
        seen.add(routing.name)
        routes.append(routing)
    return routes


def routes_digest(routes: list[Routing]) -> str:
    return hashlib.sha256(json.dumps(sorted(routes)).encode()).hexdigest()


def alertmanager_action(plan: BuildPlan, secrets_dir: str) -> Callable[[], Any]:
    """Write alertmanager.yml; its receivers read routing keys from ``secrets_dir``/<service>.key."""
    def action() -> Any:
        from generators.alertmanager import alertmanager_files

        files = alertmanager_files(alertmanager_routes(plan), f"{plan.out_dir}/alertmanager", secrets_dir)
        remove_leftovers([f"{plan.out_dir}/alertmanager"])
        write_all(files)
        return None

    action.__name__ = "build_alertmanager"
    return action


NTHLAYER_DIR = Path(__file__).resolve().parent


def correlation_targets(out_dir: str) -> list[str]:
    return [f"{out_dir}/reports/correlations.json", f"{out_dir}/reports/correlations.md"]


def correlation_code() -> list[str]:
    return [str(NTHLAYER_DIR / name) for name in ("correlation.py", "events.py", "state.py", "state_schema.py")]


class StateFailure(TaskFailed):
    """The correlate task could not read the state database: one user-facing line, no traceback."""


def correlation_action(state_db: str, plan: BuildPlan, cache_path: str | None = None) -> Any:
    """Write the correlation reports. A state database that is locked past the timeout, unreadable or
    damaged fails this task alone, with one line: run-time state never stops the configuration build."""
    from nthlayer.correlation import write_correlation_reports
    from nthlayer.state import StateUnavailable

    remove_leftovers([f"{plan.out_dir}/reports"])  # a killed build's temp files
    try:
        write_correlation_reports(state_db, plan.services_dir, plan.out_dir, edges=plan.edges())
        if cache_path:  # writing the reports may create or touch the database: stamp it as it is now
            cached_state_fingerprint(state_db, cache_path)
    except StateUnavailable as exc:
        return StateFailure(f"nthlayer: correlate: {exc}")
    return None


def _file_stamp(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def cached_state_fingerprint(state_db: str, cache_path: str | None, lock_timeout: float | None = None) -> str:
    """:func:`nthlayer.events.state_fingerprint`, remembered in ``cache_path`` against the database file's
    size and mtime: a file untouched since holds the same data, and not opening DuckDB spares a no-op
    build importing it (about 0.3 s and 60 MB)."""
    stamp = _file_stamp(state_db)  # taken first: a write while we read only makes the next run look again
    if cache_path:
        try:
            with open(cache_path, encoding="utf-8") as handle:
                cached = json.load(handle)
            if cached.get("database") == os.path.abspath(state_db) and cached.get("stamp") == stamp:
                return str(cached["fingerprint"])
        except (OSError, ValueError, KeyError, AttributeError):
            pass
    from nthlayer.events import state_fingerprint

    fingerprint = state_fingerprint(state_db, lock_timeout)
    if cache_path:
        data = {"database": os.path.abspath(state_db), "stamp": stamp, "fingerprint": fingerprint}
        write_if_changed(cache_path, json.dumps(data, sort_keys=True).encode("utf-8"))
    return fingerprint


def state_unchanged(state_db: str, graph: str, cache_path: str | None = None
                    ) -> Callable[[Any, dict[str, Any]], bool]:
    """doit uptodate: the deploys/incidents data (not the file's mtime) and the service graph are
    what they were at the last run.

    Evaluated only when the task is selected, so builds that skip it never open DuckDB. doit runs this
    check in its dispatching process before handing out the service tasks, so it never waits for a lock
    and never raises: a database it cannot read now is "not up to date", and the task's action (in a
    worker, beside the services) waits for the lock or fails with one line.
    """
    def check(task: Any, values: dict[str, Any]) -> bool:
        try:
            fingerprint = f"{cached_state_fingerprint(state_db, cache_path, lock_timeout=0.0)}:{graph}"
        except Exception as exc:
            from nthlayer.state import StateUnavailable  # here: a no-op build's cache hit never imports it

            if isinstance(exc, StateUnavailable):
                return False
            raise
        task.value_savers.append(lambda: {"state_fingerprint": fingerprint})
        return values.get("state_fingerprint") == fingerprint

    return check
