"""Spec validation for ``nthlayer validate``: split over processes when there are many, remembered by content.

A spec's own checks (YAML, JSON Schema, semantics, the selector warnings against the catalog), its policy
input document and its policy verdict need nothing from the other specs:

- what an earlier run found about the same bytes is reused from ``state/validate-cache.json``
  (nthlayer/ops/validate_cache.py) when the state folder exists;
- the others are checked by two forked processes above :data:`PARALLEL_MIN_FILES` files (as the build's
  plan does, nthlayer/buildsys/plan.py), and their policies evaluated by two Rego engine processes.

The cross-file checks and every error line stay as they were: generators.spec.validate_specs decides them
from the summaries, in the order of the files.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

from generators.errors import SpecError, sort_key
from generators.model import Service, build_service
from generators.policy import PolicySet, start_engines, stop_engines
from generators.spec import (Checked, FileSummary, LoadedSpec, ValidationResult, check_file, enable_fast_validation,
                             validate_specs)
from generators.yamlload import load_yaml
from nthlayer.buildsys.parallel import PARALLEL_MIN_FILES, worker_count
from nthlayer.ops.validate_cache import ValidateCache, content_digest, lines_json, lines_of


class Validated(NamedTuple):
    """The validation result (``specs``: those checked in this run), and per file path: the policy input
    document of each spec checked in this run, the verdict of each spec the cache answered for, and the
    summary of every file."""

    result: ValidationResult
    documents: dict[str, str]  # JSON text (generators.policy.PolicySet.evaluate_all)
    verdicts: dict[str, tuple[SpecError, ...]]
    summaries: dict[str, FileSummary]
    native: bool = False  # verdicts found in Python: the engine has yet to compile the set


# What the forked workers check against: the catalog folder, and the policies when they are evaluated
# in Python (generators.policy_native); set in the parent before the fork.
_CATALOG: list[str | None] = [None, None]  # and where the workers keep its files validated
_POLICIES: list[PolicySet | None] = [None]


def _check_one(path: str) -> tuple[Checked, str | tuple[SpecError, ...] | None]:
    """One file's checks and, when valid, its policy verdict (the policies evaluated in Python) or else its
    policy input document for the engine (made here, beside the model it reads)."""
    from nthlayer.buildsys.policies import input_document

    checked = check_file(path, *_CATALOG)
    spec = checked.spec
    if spec is None or not _CATALOG[0]:
        return checked, None
    document = input_document(spec.located, spec.service, *_CATALOG)
    policies = _POLICIES[0]
    findings = policies.native_findings(document) if policies is not None else None
    if findings is not None:
        return checked, tuple(sorted((finding.error(spec.located, path) for finding in findings), key=sort_key))
    return checked, json.dumps(document)  # a tenth of the dict


def _check_in_worker(path: str) -> tuple[Checked, str | tuple[SpecError, ...] | None]:
    """:func:`_check_one` without the spec's model and marks, which the parent does not read when the
    verdict came with it (a composite's services are loaded again, SpecServices): a third of what the
    parent unpickles per spec."""
    checked, answer = _check_one(path)
    return (checked._replace(spec=None) if isinstance(answer, tuple) else checked), answer


def _check_all(files: list[str], documents: dict[str, str],
               verdicts: dict[str, tuple[SpecError, ...]]) -> list[Checked]:
    """Every file's own checks, in order; in forked processes when there are many files and cores."""
    workers = worker_count()
    if len(files) < PARALLEL_MIN_FILES or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        results = [_check_one(path) for path in files]
    else:
        from nthlayer.buildsys.parallel import die_with_parent

        enable_fast_validation("service.schema.json")  # before the fork: the pool inherits it
        context = multiprocessing.get_context("fork")
        # Each catalog file a worker validates is kept for the other to read back (2 ms instead of 10-20):
        # the two share the catalog's validation instead of each doing all of it (0.2-0.5 s each).
        with tempfile.TemporaryDirectory(prefix="nthlayer-catalog-") as kept:
            _CATALOG[1] = kept
            try:
                with context.Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
                    results = list(pool.imap(_check_in_worker, files, chunksize=max(1, len(files) // (workers * 8))))
            finally:
                _CATALOG[1] = None
    for checked, answer in results:
        if isinstance(answer, str):
            documents[checked.summary.path] = answer
        elif answer is not None:
            verdicts[checked.summary.path] = answer
    return [checked for checked, _ in results]


def validate_files(files: Iterable[str], known_technologies: Iterable[str] | None,
                   all_service_names: Iterable[str] | Mapping[str, str] | None, catalog_dir: str,
                   cache: ValidateCache | None = None, policies: PolicySet | None = None) -> Validated:
    """:func:`generators.spec.validate_specs` of ``files`` against ``catalog_dir``; files whose bytes
    ``cache`` knows are not checked again. With ``policies`` of the native subset, each spec's verdict is
    found beside its checks (:func:`judge` then evaluates only the documents the Python evaluator declined)."""
    documents: dict[str, str] = {}
    verdicts: dict[str, tuple[SpecError, ...]] = {}
    known: dict[str, Checked] = {}
    summaries: dict[str, FileSummary] = {}

    def check_all(paths: list[str]) -> list[Checked]:
        digests = {path: content_digest(path) for path in paths} if cache is not None else {}
        for path in paths:
            entry = cache.get(digests[path]) if cache is not None else None
            if entry is not None:
                known[path] = Checked(FileSummary.from_json(entry[0]), None, lines_of(entry[1]))
                if entry[2] is not None:
                    verdicts[path] = lines_of(entry[2])
        found: dict[str, tuple[SpecError, ...]] = {}
        missing = [p for p in paths if p not in known]
        if missing and _POLICIES[0] is not None:
            start_engines(1)  # compiling the set meanwhile (judge): its errors are the ones users see
        fresh = dict(zip(missing, _check_all(missing, documents, found)))
        verdicts.update(found)
        native[0] = native[0] or bool(found)
        if cache is not None:
            for path, checked in fresh.items():
                verdict = lines_json(found[path]) if path in found else None
                cache.put(digests[path], [checked.summary.to_json(), lines_json(checked.selector_warnings), verdict])
        every = [known.get(path) or fresh[path] for path in paths]
        summaries.update((item.summary.path, item.summary) for item in every)
        return every

    _CATALOG[:] = [catalog_dir, None]
    _POLICIES[0] = policies if policies is not None and policies.files and policies.native() else None
    native = [False]
    try:
        result = validate_specs(files, known_technologies, all_service_names, catalog_dir, check_all=check_all)
    finally:
        _CATALOG[:] = [None, None]
        _POLICIES[0] = None
    return Validated(result, documents, verdicts, summaries, native=native[0])


def judge(validated: Validated, policies: PolicySet, catalog_dir: str, cache: ValidateCache | None,
          jobs: int) -> tuple[list[SpecError], list[SpecError]]:
    """The policies' findings about every valid spec without errors: (denies, warnings). Verdicts the
    cache holds are reused; the others evaluated (in ``jobs`` engines) and remembered."""
    from nthlayer.buildsys.policies import input_document, verdicts

    failed = {error.path for error in validated.result.errors}
    checked = {spec.located.path: spec for spec in validated.result.specs}
    lines: dict[str, tuple[SpecError, ...]] = {}
    stale: list[tuple[Any, Service]] = []
    documents: dict[str, dict[str, Any] | str] = dict(validated.documents)
    for path, summary in validated.summaries.items():
        if path in failed or summary.name is None:  # an invalid spec is not judged: it fails anyway
            continue
        if path in validated.verdicts:
            lines[path] = validated.verdicts[path]
            continue
        spec = checked.get(path) or _reload(path)
        if path not in documents:
            documents[path] = input_document(spec.located, spec.service, catalog_dir)
        stale.append((spec.located, spec.service))
    try:
        if not stale and (not lines or validated.native):
            policies.compile()  # a broken policy is an error even with nothing to check, or checked in Python
        elif stale:
            found = verdicts(stale, policies, catalog_dir, jobs=jobs if len(stale) >= PARALLEL_MIN_FILES else 1,
                             documents=documents)
            for path, spec_lines in found.items():
                lines[path] = tuple(spec_lines)
                if cache is not None:
                    _remember_verdict(cache, path, spec_lines)
    finally:
        stop_engines()  # one validate_files started for a compile no spec needed
    everything = sorted((line for spec_lines in lines.values() for line in spec_lines), key=sort_key)
    return [line for line in everything if not line.warning], [line for line in everything if line.warning]


def _reload(path: str) -> LoadedSpec:
    """A spec the cache says is valid, loaded for its policy input document (its verdict is unknown)."""
    located = load_yaml(path)
    return LoadedSpec(located, build_service(located.data, path))


def _remember_verdict(cache: ValidateCache, path: str, spec_lines: list[SpecError]) -> None:
    digest = content_digest(path)
    entry = cache.get(digest)
    if entry is not None:
        cache.put(digest, [entry[0], entry[1], lines_json(spec_lines)])


class SpecServices(Mapping[str, Service]):
    """Service name → model of a folder's valid specs, each loaded when first asked for (composites name
    a few of many services; the cache answered for most specs without loading them)."""

    def __init__(self, paths: dict[str, str], loaded: Mapping[str, Service]) -> None:
        self.paths = paths
        self.loaded = dict(loaded)

    def __getitem__(self, name: str) -> Service:
        if name not in self.loaded:
            path = self.paths[name]
            self.loaded[name] = _reload(path).service
        return self.loaded[name]

    def __contains__(self, name: object) -> bool:  # without loading it
        return name in self.paths

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


__all__ = ["Validated", "validate_files", "judge", "SpecServices", "PARALLEL_MIN_FILES", "worker_count"]
