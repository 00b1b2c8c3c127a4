"""The build plan: which specs, which services, validated once per doit run (reusing state/spec-index.json).

A spec that fails validation still gets its task: it fails with the spec's error lines, and no file of
that service (or any other) is touched. The artifact kinds are in nthlayer.buildsys.kinds; the tasks made
from the plan in nthlayer.buildsys.tasks.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable

import orjson

from generators.alertmanager import Routing
from generators.catalog import default_catalog_dir, technology_files
from generators.errors import SpecError, as_errors, sort_key
from generators.policy import engine_count, start_engines, stop_engines
from generators.model import Service, build_service
from generators.render import write_if_changed
from generators.spec import (FileSummary, cross_file_problems, enable_fast_validation, expand_paths,
                             keep_validators_in, load_spec, summarize)
from generators.yamlload import external_links_allowed, load_yaml
from nthlayer.buildsys.backend import FileStat, compact_json, read_json
from nthlayer.buildsys.parallel import PARALLEL_MIN_FILES, worker_count
from nthlayer.buildsys.kinds import CORE_CODE, GENERATORS_DIR, SHARED_DIRS, import_generators, prepare_shapes
from nthlayer.buildsys.plugin_kinds import active as active_plugins
from nthlayer.buildsys.plugin_kinds import apply_plugins
from nthlayer.buildsys.plugins import PluginError
from nthlayer.buildsys.settled import fast_path


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
    plugins: tuple[str, ...] = ()  # the keys of the plugins that apply to it (its task depends on their stamps)
    verdict: str = ""  # digest of its policy findings ('' for none): its task depends on it (docs/policies.md)
    cross: tuple[SpecError, ...] = ()  # the errors and warnings the checks across files found in it

    @cached_property
    def name(self) -> str | None:
        """The service name, when the spec is valid. Kept once worked out (a 10,000-spec build asks it
        240,000 times): :func:`make_plan` forgets it after the last change to ``errors``."""
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
    strict: bool = False  # --strict: warnings are errors (the composites' too: nthlayer/buildsys/composites.py)
    # The lines of an nthlayer.toml or policy file that cannot be used: no service is built until it is fixed.
    policy_error: str | None = None

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

    @cached_property
    def valid(self) -> list[SpecEntry]:
        """The entries of valid specs (worked out once: a plan's entries are final when it is made, and a
        10,000-spec build asks a dozen times)."""
        return [e for e in self.entries if e.name is not None]

    def protected_dirs(self) -> set[str]:
        """out/ subfolders a prune must keep: current services, broken specs' stems and last valid names,
        shared output."""
        names = {e.name for e in self.valid} | {e.stem for e in self.entries if e.name is None}
        # A broken spec's service keeps its outputs under its last valid name, whatever its file is called.
        names |= {e.routing.name for e in self.entries if e.name is None and e.routing is not None}
        return {n for n in names if n} | SHARED_DIRS

    def edges(self) -> list[tuple[str, str]]:
        """(deployed, affected) pairs as nthlayer.state.correlation.dependency_edges makes them: each valid
        spec's ``dependencies.upstream`` entry U gives (U, spec) — a deploy of U can hurt the spec's service.
        A broken spec keeps its last valid version's pairs, unless a valid spec claims its service."""
        return self._edges

    @cached_property
    def _edges(self) -> list[tuple[str, str]]:  # asked by the correlation and report tasks, each twice
        claimed = {entry.name for entry in self.valid}
        return sorted({(upstream, entry.routing.name) for entry in self.entries
                       if entry.routing is not None and (entry.name is not None or entry.routing.name not in claimed)
                       for upstream in entry.upstream})

    def dependency_graph(self) -> str:
        """A digest of who-calls-whom (the correlation report's input from the specs)."""
        return self._graph

    @cached_property
    def _graph(self) -> str:
        return hashlib.sha256(json.dumps(self.edges()).encode()).hexdigest()[:16]

    def worked_out(self) -> BuildPlan:
        """This plan with what every run asks of it worked out (its valid entries, routes, edges and their
        digest): a plan kept whole between runs (:class:`_Snapshot`) is read back with them."""
        for name in ("valid", "routes", "_edges", "_graph"):
            getattr(self, name)
        return self

    @cached_property
    def routes(self) -> list[Routing]:
        """The routing facts of every valid service, and the last valid routing of each broken spec whose
        service no valid spec claims: a broken edit must not take a service's alerts off their receivers
        (the build fails, and alertmanager.yml stays as it was). From the plan; no spec is loaded again.
        Worked out once (alertmanager.yml, the Grafana overview and the Kubernetes kustomization read it)."""
        valid = {entry.path for entry in self.valid}
        claimed = {entry.routing.name for entry in self.valid if entry.routing is not None}
        routes: list[Routing] = []
        seen: set[str] = set()
        for entry in self.entries:
            routing = entry.routing
            if routing is None or routing.name in seen or (entry.path not in valid and routing.name in claimed):
                continue
            seen.add(routing.name)
            routes.append(routing)
        return routes

    @cached_property
    def _technology_files(self) -> dict[str, str]:
        return technology_files(self.catalog_dir)  # listed once per plan (each of its specs asks)

    def catalog_files(self, entry: SpecEntry) -> list[str]:
        files = self._technology_files
        return [files[t] for t in entry.technology_types if t in files]


# What a spec-index entry is computed by: the spec checks (validation asks slo_tests and promql_scope about
# SLI matchers), the routing facts (Routing.paged comes from paging.py, in CORE_CODE), and the selector
# warnings (generators.catalog_labels, which read the catalog files: each entry keeps their stamps too).
INDEX_CODE = (*CORE_CODE, "alertmanager.py", "pagerduty.py", "catalog_labels.py", "catalog.py", "promql_scope.py",
              "tech_alerts.py", "slo_tests.py", "schemas/catalog.schema.json")
INDEX_FORMAT = "7"  # [size/mtime, summary, routing, upstream, catalog stamps, plugin keys] per file; summary with extras


def _code_fingerprint() -> str:
    parts = [INDEX_FORMAT]
    for name in INDEX_CODE:
        stat = (GENERATORS_DIR / name).stat()
        parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    # A link leaving the project is refused or read depending on this setting: a cached verdict made
    # under the other one must not be reused (allowing it, or revoking it, takes effect on the next build).
    parts.append(f"external-links:{int(external_links_allowed())}")
    # The plugins' answers (which apply, the SLOs they add) are kept per spec: any plugin change redoes them.
    parts.append(f"plugins:{active_plugins().fingerprint()}")
    return "|".join(parts)


# The catalog folder and its cache (state/catalog) the selector warnings and the index's catalog stamps
# read; set by make_plan before the summaries are made.
_CATALOG: list[tuple[str, str | None]] = []


def _summarize_one(path: str) -> tuple[FileSummary, Service | None, tuple[str, ...], Any]:
    """A spec's summary with its selector warnings, its model (the build's SLO generators applied), the
    keys of the plugins that apply to it, and its policy verdict (:func:`_judged`). In a pool worker:
    the catalog files it reads are kept validated in state/catalog, where the other worker and the
    parent read them back. A plugin that fails on the spec makes it invalid, with the plugin's line as
    its error."""
    summary, spec = summarize(path)
    if spec is None:
        return summary, None, (), None
    from generators.catalog_labels import SelectorMarks

    source = (spec.located.data, spec.service)  # a policy reads the spec as written, its model before the plugins
    try:
        applied, keys = apply_plugins(spec)
    except PluginError as exc:
        # The spec itself is valid: its routing stays in alertmanager.yml while the plugin is fixed.
        failed = summary._replace(errors=(exc.as_spec_error(),))
        return (_with_selector_warnings(failed, spec.service, SelectorMarks.of(spec.located, spec.service)),
                spec.service, (), _judged(path, source))
    if applied is not spec:  # an SLO generator changed its SLOs: their names name its files
        summary = summary._replace(slos=tuple(slo.name for slo in applied.service.slos))
    return (_with_selector_warnings(summary, applied.service, SelectorMarks.of(spec.located, applied.service)),
            applied.service, keys, _judged(path, source))


def _judged(path: str, source: tuple[Any, Service]) -> list[Any] | str | None:
    """A spec's policy findings, found in Python when the policies allow (generators/policy_native.py);
    else its policy input document as JSON text, for the engine's run (10,000 of them wait for it: as
    dicts, they cost the parent a hundred megabytes more)."""
    if not _CATALOG:
        return None
    from nthlayer.buildsys.policies import policy_document

    data, service = source
    document = policy_document(data, service, path, *_CATALOG[0])
    native = _native_policies()
    findings = native.native_findings(document) if native is not None else None
    if findings is not None:
        return findings
    try:
        return orjson.dumps(document).decode()  # for the engine's JSON parser alone: 5x json's speed
    except TypeError:  # what orjson refuses (an integer beyond 64 bits): json's text parses the same
        return json.dumps(document)


def _native_policies() -> Any:
    """The project's policies when every one is of the shape generators/policy_native.py evaluates (a
    broken set: None, and the policy run reports it); read once per plan, when first asked."""
    if not _NATIVE:
        from nthlayer.buildsys.policies import ConfigError, PolicyError, project_policies

        try:
            policies = project_policies()
        except (ConfigError, PolicyError):
            policies = None
        _NATIVE.append(policies if policies is not None and policies.files and policies.native() else None)
    return _NATIVE[0]


def _with_selector_warnings(summary: FileSummary, service: Service, marks: Any) -> FileSummary:
    """``summary`` with the warnings for alerts the spec's dependency selectors silence."""
    if not _CATALOG or not service.technologies:
        return summary
    from generators.catalog_labels import spec_selector_warnings

    extra = spec_selector_warnings(marks, service, *_CATALOG[0])
    if not extra:
        return summary
    return summary._replace(warnings=tuple(sorted((*summary.warnings, *extra), key=sort_key)))


_STAMPS: dict[str, list[int] | None] = {}  # catalog file → [size, mtime_ns], once per plan
_STAMP_SETS: dict[tuple[str, ...], dict[str, list[int] | None]] = {}  # technologies → their stamps, once per plan


def catalog_stamps(technologies: Iterable[str]) -> dict[str, list[int] | None]:
    """The size and mtime of the catalog file of each technology (None: not in the catalog), by which a
    spec-index entry's selector warnings are known to be current. Worked out once per plan for each set
    of technologies (a plan asks twice per spec; projects repeat a few dozen sets): do not modify it."""
    if not _CATALOG:
        return {}
    given = tuple(technologies)
    stamps = _STAMP_SETS.get(given)  # as given (most specs of a project name the same few sets, in order)
    if stamps is not None:
        return stamps
    key = tuple(sorted(set(given)))
    stamps = _STAMP_SETS.get(key)
    if stamps is not None:
        _STAMP_SETS[given] = stamps
        return stamps
    files = technology_files(_CATALOG[0][0])
    stamps = {}
    for name in key:
        path = files.get(name)
        if path is not None and path not in _STAMPS:
            try:
                stat = os.stat(path)
                _STAMPS[path] = [stat.st_size, stat.st_mtime_ns]
            except OSError:
                _STAMPS[path] = None
        stamps[name] = _STAMPS[path] if path is not None else None
    _STAMP_SETS[key] = _STAMP_SETS[given] = stamps
    return stamps


def _entry_stamps(summary: FileSummary) -> dict[str, list[int] | None]:
    return catalog_stamps(ref.value for ref in summary.technologies)


def _summarize_all(paths: list[str], meanwhile: _Warmer | None = None
                   ) -> list[tuple[FileSummary, Service | None, tuple[str, ...], Any]]:
    """Validate (and judge) files, in two forked processes when there are many and two cores (a first
    build of 1000 specs: 1 s of YAML parsing and JSON Schema checks). Results come back in order;
    ``meanwhile`` is called with each summary and model as they arrive, while the pool works on the
    rest (:meth:`_Warmer.__call__`)."""
    workers = worker_count()
    if len(paths) >= PARALLEL_MIN_FILES:
        enable_fast_validation("service.schema.json")  # before the fork: the pool inherits it
        _native_policies()  # and the policies, compiled
    if len(paths) < PARALLEL_MIN_FILES or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [_summarize_one(path) for path in paths]
    results = []
    from nthlayer.buildsys.parallel import die_with_parent

    with multiprocessing.get_context("fork").Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        for result in pool.imap(_summarize_one, paths, chunksize=max(1, len(paths) // (workers * 8))):
            results.append(result)
            if meanwhile is not None:
                meanwhile(result[0], result[1])
        if meanwhile is not None:
            meanwhile.collect()
    return results


# Specs in a row whose shapes all had their templates before the parent stops making them: shapes repeat,
# so the first few hundred specs of a project make nearly all; rare later ones are made by the workers.
SHAPES_SATURATED = 50


class _Warmer:
    """What every build process would otherwise do alone, done once in the parent before doit forks
    its workers, while the plan's pool validates the specs (:meth:`__call__` sees each as it arrives):
    the generator modules imported and the shape templates of the valid specs made (kinds.prepare_shapes)
    until :data:`SHAPES_SATURATED` specs in a row make none; then each catalog file the specs name,
    which the pool's workers validated (each once, kept in state/catalog), read back (:meth:`collect`),
    in memory for the forked workers. A first build of 1000 services: two workers each spent 0.2-0.3 s
    of CPU on the catalog files, and 0.3 s on templates the other had made too. The templates were made
    after the pool until the policies came to be judged in Python (0.6 s at 10,000 specs with a core
    idle); the parent has had little else to do with the pool's results since."""

    def __init__(self, catalog_dir: str, cache_dir: str) -> None:
        self.catalog_dir = catalog_dir
        self.cache_dir = cache_dir
        self.seen: set[str] = set()  # the technologies the specs name
        self.barren = -1  # valid specs in a row that made no template (-1: the modules are yet to import)

    def __call__(self, summary: FileSummary, service: Service | None) -> None:
        self.seen.update(ref.value for ref in summary.technologies)
        if service is None or summary.errors or self.barren >= SHAPES_SATURATED:
            return
        if self.barren < 0:
            import_generators()
            self.barren = 0
        try:
            self.barren = 0 if prepare_shapes(service, self.catalog_dir, self.cache_dir) else self.barren + 1
        except Exception:  # noqa: BLE001 - only a head start: the service's own task reports any problem
            self.barren += 1

    def collect(self) -> None:
        """Read back the catalog files the specs name, which the pool's workers kept validated (a file whose
        record could not be kept is validated here)."""
        from generators.catalog import load_technology_cached

        files = technology_files(self.catalog_dir)
        for name in sorted(self.seen):
            try:
                if name in files:
                    load_technology_cached(files[name], self.cache_dir)
            except Exception:  # noqa: BLE001 - only a head start: the tasks meet (and report) any problem again
                pass
        self.seen = set()


def _spec_keys(files: list[str]) -> dict[str, list[int] | None]:
    """Each spec file's [size, mtime_ns] (None: it cannot be stat'ed), by which its index entry is reused.
    The stats as doit's checker reads them are kept too (:func:`spec_stats`)."""
    keys: dict[str, list[int] | None] = {}
    _STATS.clear()
    for path in files:
        try:
            stat = os.stat(path)
            keys[path] = [stat.st_size, stat.st_mtime_ns]
            _STATS[path] = FileStat(stat.st_mtime, stat.st_size)
        except OSError:
            keys[path] = None
    return keys


_STATS: dict[str, FileStat] = {}


def spec_stats() -> dict[str, FileStat]:
    """The spec files' stats as the last plan took them (doit's checker takes them: nthlayer.buildsys.settled)."""
    return _STATS


Summary = tuple[FileSummary, Routing | None, tuple[str, ...], tuple[str, ...]]  # and routing, upstream, plugins


def _checked(path: str, result: tuple[FileSummary, Service | None, tuple[str, ...], Any],
             key: list[int] | None, last: tuple[Routing, Iterable[str]] | None) -> Summary:
    """A file validated in this run (:func:`_summarize_one`) as the plan holds it: its summary with the
    selector warnings, its routing and upstream (a broken spec keeps ``last``, its last valid version's),
    the plugins that apply. Its policy verdict (``_FOUND``, or its input document: ``_DOCUMENTS``) waits
    for the policy run, its model for the build's load_service."""
    summary, service, plugins, judged = result
    if isinstance(judged, str):
        _DOCUMENTS[path] = judged
    elif judged is not None:
        _FOUND[path] = judged
    if service is not None:
        if key is not None and not summary.errors:  # (a plugin's failure: its task reports it)
            _LOADED[_loaded_key(path, key[0], key[1])] = service  # the build's load_service reuses it
        return summary, Routing.of(service), tuple(service.upstream), tuple(plugins)
    if last is not None:  # broken now: its last valid version's routing and dependency edges are kept
        return summary, last[0], tuple(last[1]), tuple(plugins)
    return summary, None, (), tuple(plugins)


def _index_entry(key: list[int], summary: FileSummary, routing: Routing | None, upstream: Iterable[str],
                 plugins: Iterable[str], stamps: dict[str, list[int] | None] | None = None) -> list[Any]:
    """A file's entry in state/spec-index.json; ``stamps``: its catalog files' as they were when it was made
    (default: as they are now)."""
    return [key, summary.to_json(), routing, list(upstream), _entry_stamps(summary) if stamps is None else stamps,
            list(plugins)]


def _summaries(files: list[str], keys: dict[str, list[int] | None], index_path: str | None,
               meanwhile: _Warmer | None = None, record: bool = True, newer: dict[str, list[Any]] | None = None
               ) -> tuple[list[Summary], set[str]]:
    """Per-file validation results, reused from state/spec-index.json for files that did not change
    (``keys``: :func:`_spec_keys`); and the files that did (validated now). ``newer``: index entries
    made since the index was written (a kept plan's edits: :class:`_Snapshot`), taken over it."""
    cache: dict[str, Any] = {}
    fingerprint = _code_fingerprint()
    if index_path and os.path.exists(index_path):
        try:
            loaded = read_json(index_path)
            if loaded.get("code") == fingerprint:
                cache = loaded.get("files", {})
        except (OSError, ValueError, AttributeError):
            cache = {}
    if newer:
        cache = {**cache, **newer}
    _VERSIONS.update(keys)
    stale = [p for p in files if keys[p] is None or cache.get(p, [None])[0] != keys[p]
             or cache[p][4] != catalog_stamps(cache[p][4])]
    checked = dict(zip(stale, _summarize_all(stale, meanwhile)))
    if checked and record:  # the engines start while the rest is read; make_plan stops those left unused
        # (one, to compile the set and judge what the Python evaluator declines, when it judges the rest)
        start_engines(1 if _native_policies() is not None else engine_count(len(checked), worker_count()))
    fresh: dict[str, Any] = {}
    summaries = []
    for path in files:
        key = keys[path]
        if path in checked:
            hit = cache.get(path)
            summary, routing, upstream, plugins = _checked(
                path, checked[path], key, (Routing(*hit[2]), hit[3]) if hit is not None and hit[2] is not None else None)
        else:
            hit = cache[path]
            summary = FileSummary.from_json(hit[1])
            if summary.name is not None and not summary.errors and key is not None:
                _VALIDATED.add((path, key[0], key[1]))
            routing, upstream = (Routing(*hit[2]), tuple(hit[3])) if hit[2] is not None else (None, ())
            plugins = tuple(hit[5])
        summaries.append((summary, routing, upstream, plugins))
        if key is not None:  # an unchanged file keeps its entry as read
            fresh[path] = _index_entry(key, summary, routing, upstream, plugins) if path in checked else cache[path]
    if index_path and record and (checked or newer or fresh.keys() != cache.keys()):  # a no-op neither encodes nor writes it
        data = compact_json({"code": fingerprint, "files": fresh})
        write_if_changed(index_path, data)
    return summaries, set(checked)


def make_plan(services_dir: str, out_dir: str, catalog_dir: str | None = None,
              index_path: str | None = None, strict: bool = False, record: bool = True,
              judge: Callable[[SpecEntry], bool] | None = None,
              read: Callable[[list[SpecEntry]], None] | None = None) -> BuildPlan:
    """The build plan of ``services_dir``: every spec validated (reusing state/spec-index.json for
    unchanged files). ``index_path``: the spec index to reuse and, with ``record``, to update along with
    state/'s validator and catalog caches; without ``record`` nothing is written (``nthlayer build --check``).
    ``strict`` (``--strict``) promotes every warning to an error: that spec's service is not built.
    ``judge``: the specs the policies are evaluated on (default all; a shard's build: its own, the others'
    verdicts are their shards' business). ``read``: called with the entries once each file is read and
    checked on its own, before the checks across files and the policies (which may still find errors):
    the build starts work of its own on them meanwhile (nthlayer.buildsys.settled.stamps_ahead).
    """
    catalog_dir = catalog_dir or default_catalog_dir()
    state_dir = (os.path.dirname(index_path) or ".") if index_path and record else None
    keep_validators_in(os.path.join(state_dir, "validators") if state_dir else None)
    files = expand_paths([services_dir]) if os.path.isdir(services_dir) else []
    warmer = _Warmer(catalog_dir, os.path.join(state_dir, "catalog")) if state_dir else None
    _CATALOG[:] = [(catalog_dir, os.path.join(state_dir, "catalog") if state_dir else None)]
    _NATIVE.clear()
    # a new plan: catalog and spec files may have changed since the last (a long-lived process)
    _STAMPS.clear()
    _STAMP_SETS.clear()
    _VERSIONS.clear()
    keys = _spec_keys(files)
    kept = _Snapshot(state_dir, services_dir, out_dir, catalog_dir, strict, files, keys, index_path) \
        if state_dir and index_path and judge is None and fast_path() else None
    if kept is not None:
        plan = kept.read()
        if plan is None:  # a few specs changed since: the kept plan with those validated again
            plan = _edited(kept, files, keys, catalog_dir, state_dir, strict)
        if plan is not None:
            _VERSIONS.update(keys)
            _VALIDATED.update((entry.path, *keys[entry.path]) for entry in plan.entries  # as the index says
                              if entry.summary.name is not None and not entry.summary.errors and keys[entry.path]
                              and not entry.changed)
            if read is not None:
                read(list(plan.entries))
            return plan
    try:  # engines started ahead by _summaries and left unused end here, whatever happens
        summaries, changed = _summaries(files, keys, index_path, warmer, record,
                                        kept.newer_index_entries() if kept is not None else None)
        entries = _entries(summaries, changed, catalog_dir)
        if read is not None:
            read(list(entries.values()))
        from nthlayer.buildsys.policies import VERDICTS_FILE, apply_policies

        judged = [entry for entry in entries.values() if judge is None or judge(entry)]
        policy_error = apply_policies(
            judged, _DOCUMENTS, _verdict_stamp, catalog_dir, os.path.join(state_dir, "catalog") if state_dir else None,
            os.path.join(os.path.dirname(index_path) or ".", VERDICTS_FILE) if index_path else None,
            worker_count(), record, found=_FOUND)
    finally:
        stop_engines()
    _DOCUMENTS.clear()
    _FOUND.clear()
    _finish(entries.values(), strict)
    cache = os.path.join(state_dir, "catalog") if state_dir else None
    plan = BuildPlan(services_dir, out_dir, catalog_dir, [entries[p] for p in files], cache, strict, policy_error)
    if kept is not None:
        kept.forget_edits()  # the index holds them now
        if not changed:  # kept when stable: an edit's run does not pay for it, the next does
            kept.write(plan.worked_out())
    return plan


def _entries(summaries: list[Summary], changed: set[str], catalog_dir: str) -> dict[str, SpecEntry]:
    """Each file's entry, with what the checks across files find (the policies are yet to judge)."""
    cross = _cross(summaries, catalog_dir)
    return {s[0].path: _entry(s, s[0].path in changed, cross.get(s[0].path)) for s in summaries}


def _cross(summaries: list[Summary], catalog_dir: str) -> dict[str, tuple[SpecError, ...]]:
    """The errors and warnings the checks across files find, by file (errors first)."""
    errors, warnings = cross_file_problems([s for s, _, _, _ in summaries], technology_files(catalog_dir))
    found: dict[str, tuple[SpecError, ...]] = {}
    for line in (*errors, *warnings):
        found[line.path] = (*found.get(line.path, ()), line)
    return found


def _entry(summarized: Summary, changed: bool, cross: tuple[SpecError, ...] | None) -> SpecEntry:
    summary, routing, upstream, plugins = summarized
    cross = cross or ()
    return SpecEntry(summary.path, os.path.splitext(os.path.basename(summary.path))[0], summary,
                     [*summary.errors, *(line for line in cross if not line.warning)],
                     [*summary.warnings, *(line for line in cross if line.warning)], routing, upstream, changed,
                     plugins, cross=cross)


def _finish(entries: Iterable[SpecEntry], strict: bool) -> None:
    """Entries judged: under ``strict`` their warnings are errors; both sorted."""
    for entry in entries:
        if strict and entry.warnings:
            entry.errors += as_errors(entry.warnings)
            entry.warnings = []
        entry.errors.sort(key=sort_key)
        entry.warnings.sort(key=sort_key)
        entry.__dict__.pop("name", None)  # asked while the errors were being found: worked out again


EDITED_MAX = 20  # specs changed since the kept plan beyond which the plan is made the long way (in parallel)


def _edited(kept: _Snapshot, files: list[str], keys: dict[str, list[int] | None], catalog_dir: str,
            state_dir: str, strict: bool) -> BuildPlan | None:
    """The kept plan (:class:`_Snapshot`) of the same inputs but a few specs, with those validated and judged
    again, and the checks across files made again over every spec; every entry they change is made again
    (a name clash an edit makes or ends is its partner's error too). The entries made since the plan was
    kept are kept beside it until the plan is kept whole again. None: the plan must be made the long way
    (no such plan, other inputs, too many edits, a policy that cannot judge)."""
    if not kept.base_matches():
        return None
    if _native_policies() is None:  # (the Python evaluator needs none: the kept plan's set compiled)
        start_engines(1)  # the edited specs' judge, started while the kept plan is read (0.1 s to start)
    held = kept.read_with_edits()
    made, entries = held if held is not None else ({}, {})  # the spec keys the kept plan and its edits are of
    listed = set(files)
    dirty = [path for path in files if keys[path] is None or made.get(path) != keys[path]]
    if held is None or len(dirty) > EDITED_MAX:
        stop_engines()  # before the long way's pool forks: its processes would hold the engine's input open
        return None
    cache = os.path.join(state_dir, "catalog")
    plan = None
    try:
        summaries: list[Summary] = []
        fresh = {path: _checked(path, _summarize_one(path), keys[path],
                                (entries[path].routing, entries[path].upstream)
                                if path in entries and entries[path].routing is not None else None)
                 for path in dirty}
        for path in files:
            entry = entries.get(path)
            summaries.append(fresh[path] if path in fresh else
                             (entry.summary, entry.routing, entry.upstream, entry.plugins))
        cross = _cross(summaries, catalog_dir)
        again = {path: _entry(summarized, path in fresh, cross.get(path)) for path, summarized in zip(files, summaries)
                 if path in fresh or cross.get(path, ()) != entries[path].cross}
        if again:
            from nthlayer.buildsys.policies import apply_policies

            if apply_policies(again.values(), _DOCUMENTS, _verdict_stamp, catalog_dir, cache, None, worker_count(),
                              False, found=_FOUND, compiled=True) is not None:
                return None
            _finish(again.values(), strict)
        for entry in entries.values():
            entry.changed = False
        entries.update(again)
        plan = BuildPlan(kept.services_dir, kept.out_dir, catalog_dir, [entries[path] for path in files], cache, strict)
    finally:
        stop_engines()
        _DOCUMENTS.clear()
        _FOUND.clear()
    removed = [path for path in made if path not in listed]  # since the last run
    if dirty or again or removed:
        kept.keep_edits({path: (keys[path], entries[path]) for path in files
                         if path in fresh or path in again or path in kept.edited}, {*kept.removed, *removed} - listed)
    else:  # nothing validated: the plan is kept whole again (its edits go to the index first)
        kept.write(plan.worked_out())
    return plan


SNAPSHOT_FILE = "plan.pickle"
EDITS_FILE = "plan-edits.pickle"
SNAPSHOT_FORMAT = "3"


def _file_id(path: str) -> list[int] | None:
    """A file's size and mtime, as the spec index knows a file's version (None: no such file)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _code_files() -> list[list[Any]]:
    """Every module of the build and the generators, by name, size and mtime."""
    found = []
    for folder in (os.path.dirname(__file__), str(GENERATORS_DIR)):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                found.append([name, _file_id(os.path.join(folder, name))])
    return found


class _Snapshot:
    """The plan kept whole between runs (``state/plan.pickle``), for a run where no input of the plan
    changed: a no-op of 10,000 specs reads it back in 0.1 s instead of 0.3 s of reading the spec index
    and the policy verdicts into a plan again.

    Its key holds exactly what those two caches check before they reuse an entry, for every spec at
    once: the code fingerprint the index is valid for (generator code, plugins, the external-links
    setting), the policies' digest the verdicts are valid for (or the error that stops them), every spec
    file's path, size and mtime, every catalog file's (the listing, the selector warnings and the verdict
    stamps read them), ``strict``, the folders, the build's and the generators' modules, and the index
    and verdict files as the run that wrote the snapshot left them (a state/ edited or removed by hand
    is not trusted). Its *base* key is the same but for the spec files.

    A run whose spec files differ from the kept plan's in a few specs, all else (the base key) the same,
    takes the kept plan with those specs validated and judged again (:func:`_edited`); the entries that
    made are kept beside it (``state/plan-edits.pickle``, with the specs removed since), so that the
    next edit validates only its own spec. A run that validates nothing keeps the plan whole again, after
    writing those entries into the spec index (which the edits' runs leave as it was: it is part of the
    base key). Made the long way, a plan takes them into the index too, and they are forgotten.

    Any other difference, or a snapshot that cannot be read, and the plan is made as always; it is kept
    again by a run that validated no spec (the run after an edit, not the edit's own). NTHLAYER_FAST_PATH=0
    turns it off with the settled fast path (tests/test_settled.py compares both)."""

    def __init__(self, state_dir: str, services_dir: str, out_dir: str, catalog_dir: str, strict: bool,
                 files: list[str], keys: dict[str, list[int] | None], index_path: str) -> None:
        from nthlayer.buildsys.policies import VERDICTS_FILE

        self.path = os.path.join(state_dir, SNAPSHOT_FILE)
        self.edits_path = os.path.join(state_dir, EDITS_FILE)
        self.verdicts = os.path.join(os.path.dirname(index_path) or ".", VERDICTS_FILE)
        self.index = index_path
        self.services_dir, self.out_dir = services_dir, out_dir
        self.keys = keys
        self.files = files
        self.parts = [SNAPSHOT_FORMAT, _code_files(), state_dir, services_dir, out_dir, catalog_dir, strict,
                      sorted([name, _file_id(path)] for name, path in technology_files(catalog_dir).items())]
        self.edited: set[str] = set()  # the specs whose entries the kept edits hold
        self.removed: set[str] = set()  # and the specs removed since the plan was kept

    def _base(self) -> str:
        from nthlayer.buildsys.policies import PolicyError, project_policies
        from nthlayer.config import ConfigError

        try:
            policies = project_policies().digest()
        except (ConfigError, PolicyError) as exc:
            policies = f"error:{exc}"
        parts = [*self.parts, _code_fingerprint(), policies, _file_id(self.index), _file_id(self.verdicts)]
        return hashlib.sha256(orjson.dumps(parts)).hexdigest()

    def _key(self, base: str) -> str:
        return hashlib.sha256(orjson.dumps([base, [[path, self.keys[path]] for path in self.files]])).hexdigest()

    def _heads(self) -> tuple[str, str]:
        if not hasattr(self, "_known"):
            base = self._base()
            self._known = (self._key(base), base)
        return self._known

    def _load(self, whole: bool) -> tuple[str, dict[str, list[int] | None], BuildPlan] | None:
        """(its key, its spec keys, the plan) when its key (``whole``) or its base key is this run's."""
        import pickle

        key, base = self._heads()
        try:
            with open(self.path, "rb") as handle:  # the keys first: a miss reads no more
                kept_key = handle.readline().rstrip(b"\n").decode()
                if (kept_key != key if whole else handle.readline().rstrip(b"\n").decode() != base):
                    return None
                if whole:
                    handle.readline()
                keys, plan = pickle.load(handle)
        except Exception:  # noqa: BLE001 - missing, damaged, or of classes since changed: made again
            return None
        if not isinstance(plan, BuildPlan) or not isinstance(keys, dict) or plan.policy_error is not None and not whole:
            return None
        for entry in plan.entries:
            entry.changed = False
        return kept_key, keys, plan

    def base_matches(self) -> bool:
        """Whether the kept plan's base key is this run's (its second line)."""
        try:
            with open(self.path, "rb") as handle:
                handle.readline()
                return handle.readline().rstrip(b"\n").decode() == self._heads()[1]
        except (OSError, UnicodeDecodeError):
            return False

    def read(self) -> BuildPlan | None:
        """The kept plan, if its key is this run's."""
        loaded = self._load(True)
        return None if loaded is None else loaded[2]

    def read_with_edits(self) -> tuple[dict[str, list[int] | None], dict[str, SpecEntry]] | None:
        """The spec keys and entries of the kept plan with the kept edits on it, if its base key is this
        run's (None: not)."""
        loaded = self._load(False)
        if loaded is None:
            return None
        kept_key, keys, plan = loaded
        entries = {entry.path: entry for entry in plan.entries}
        edits = self._edits()
        if edits is not None and edits["snapshot"] == kept_key:
            for path in edits["removed"]:
                keys.pop(path, None)
                entries.pop(path, None)
            for path, (key, entry, _stamps) in edits["entries"].items():
                keys[path] = key
                entries[path] = entry
                entry.changed = False
            self.edited, self.removed = set(edits["entries"]), set(edits["removed"])
        self._kept_key = kept_key
        return keys, entries

    def _edits(self) -> dict[str, Any] | None:
        import pickle

        try:
            with open(self.edits_path, "rb") as handle:
                edits = pickle.load(handle)
        except Exception:  # noqa: BLE001 - none, damaged, or of classes since changed: not used
            return None
        return edits if isinstance(edits, dict) and {"snapshot", "index", "code", "removed", "entries"} <= edits.keys() \
            else None

    def keep_edits(self, entries: dict[str, tuple[list[int] | None, SpecEntry]], removed: Iterable[str]) -> None:
        """Keep the entries that differ from the kept plan's (and the specs removed since) beside it."""
        import pickle

        edits = {"snapshot": self._kept_key, "index": _file_id(self.index), "code": _code_fingerprint(),
                 "removed": sorted(removed),
                 "entries": {path: (key, entry, _entry_stamps(entry.summary)) for path, (key, entry) in entries.items()}}
        write_if_changed(self.edits_path, pickle.dumps(edits, protocol=pickle.HIGHEST_PROTOCOL))

    def newer_index_entries(self) -> dict[str, list[Any]] | None:
        """The kept edits as spec-index entries, if they were made since the index was last written, by
        this code (None: none)."""
        edits = self._edits()
        if edits is None or edits["index"] != _file_id(self.index) or edits["code"] != _code_fingerprint():
            return None
        return {path: _index_entry(key, entry.summary, entry.routing, entry.upstream, entry.plugins, stamps)
                for path, (key, entry, stamps) in edits["entries"].items() if key is not None}

    def forget_edits(self) -> None:
        try:
            os.remove(self.edits_path)
        except FileNotFoundError:
            pass

    def write(self, plan: BuildPlan) -> None:
        """Keep ``plan`` (0.07 s at 10,000 specs; forking a writer cost the run more in copied pages), after
        the kept edits are written into the spec index."""
        import pickle

        newer = self.newer_index_entries()
        if newer:
            try:
                loaded = read_json(self.index)
                files = loaded["files"] if loaded.get("code") == _code_fingerprint() else {}
            except (OSError, ValueError, AttributeError, KeyError):
                files = {}
            listed = set(self.files)
            files = {path: entry for path, entry in {**files, **newer}.items() if path in listed}
            write_if_changed(self.index, compact_json({"code": _code_fingerprint(), "files": files}))
            self.__dict__.pop("_known", None)  # the index is part of the base key
        self.forget_edits()
        key, base = self._heads()
        write_if_changed(self.path, f"{key}\n{base}\n".encode() + pickle.dumps(
            (self.keys, plan), protocol=pickle.HIGHEST_PROTOCOL))


_DOCUMENTS: dict[str, str] = {}  # policy input documents (JSON text) of the specs validated by this plan
_FOUND: dict[str, Any] = {}  # or their findings, when the Python evaluator answered (_judged)
_NATIVE: list[Any] = []  # the project's policies when that evaluator judges them (make_plan)


_VERSIONS: dict[str, list[int] | None] = {}  # spec file → [size, mtime_ns] as this plan's validation saw it


def _verdict_stamp(entry: SpecEntry) -> list[Any]:
    """What a cached policy verdict is valid for: the spec file's version (as the plan read it) and its
    technologies' catalog files (their categories are in the input document)."""
    if entry.path in _VERSIONS:
        version = _VERSIONS[entry.path]
    else:
        try:
            stat = os.stat(entry.path)
            version = [stat.st_size, stat.st_mtime_ns]
        except OSError:
            version = None
    return [version, _entry_stamps(entry.summary)]


_LOADED: dict[tuple[str, int, int, str], Service] = {}
_VALIDATED: set[tuple[str, int, int]] = set()  # file versions state/spec-index.json says are valid


def _loaded_key(path: str, size: int, mtime_ns: int) -> tuple[str, int, int, str]:
    """A model is of one file version under one set of plugins (a long-lived process sees plugin edits)."""
    return (path, size, mtime_ns, active_plugins().fingerprint())


def load_service(path: str) -> Service:
    """A valid spec's model, loaded once per process per file version.

    A file version the index already validated is only parsed and modelled: re-running the schema
    check on every spec made the shared alertmanager task cost a one-spec edit seconds at 1000 specs.
    """
    stat = os.stat(path)
    key = _loaded_key(path, stat.st_size, stat.st_mtime_ns)
    if key not in _LOADED:
        if key[:3] in _VALIDATED:
            from generators.spec import LoadedSpec

            located = load_yaml(path)
            spec = LoadedSpec(located, build_service(located.data, path))
        else:
            spec = load_spec(path)
        _LOADED[key] = apply_plugins(spec)[0].service  # PluginError: the plugin's line, for its task
    return _LOADED[key]
