"""Spec validation for ``nthlayer validate`` and ``nthlayer policy check``, split over processes when there are many.

A spec's own checks (YAML, JSON Schema, semantics, the selector warnings against the catalog) and its
policy input document need nothing from the other specs: above :data:`PARALLEL_MIN_FILES` files they are
made by two forked processes (as the build's plan does, nthlayer/buildsys/plan.py), and the policies are
evaluated by two Rego engine processes. The cross-file checks and every error line stay as they were
(generators.spec.validate_specs decides them; the order of files is kept).
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Any, Iterable, Mapping, NamedTuple

from generators.spec import Checked, ValidationResult, check_file, enable_fast_validation, validate_specs
from nthlayer.buildsys.plan import PARALLEL_MIN_FILES, worker_count

class Validated(NamedTuple):
    """The validation result, and the policy input document of each valid spec (by file path)."""

    result: ValidationResult
    documents: dict[str, dict[str, Any]]


# The catalog folder the forked workers check against: set in the parent before the fork.
_CATALOG: list[str | None] = [None]


def _check_one(path: str) -> tuple[Checked, dict[str, Any] | None]:
    """One file's checks and, when valid, its policy input document (made here, beside the model it reads)."""
    from nthlayer.buildsys.policies import input_document

    checked = check_file(path, _CATALOG[0])
    spec = checked.spec
    document = input_document(spec.located, spec.service, _CATALOG[0]) if spec is not None and _CATALOG[0] else None
    return checked, document


def _check_all(files: list[str], documents: dict[str, dict[str, Any]]) -> list[Checked]:
    """Every file's own checks, in order; in forked processes when there are many files and cores."""
    workers = worker_count()
    if len(files) < PARALLEL_MIN_FILES or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        results = [_check_one(path) for path in files]
    else:
        from nthlayer.buildsys.runner import die_with_parent

        enable_fast_validation("service.schema.json")  # before the fork: the pool inherits it
        context = multiprocessing.get_context("fork")
        with context.Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            results = list(pool.imap(_check_one, files, chunksize=max(1, len(files) // (workers * 8))))
    for checked, document in results:
        if document is not None:
            documents[checked.summary.path] = document
    return [checked for checked, _ in results]


def validate_files(files: Iterable[str], known_technologies: Iterable[str] | None,
                   all_service_names: Iterable[str] | Mapping[str, str] | None, catalog_dir: str) -> Validated:
    """:func:`generators.spec.validate_specs` of ``files`` against ``catalog_dir``, with each valid spec's
    policy input document."""
    documents: dict[str, dict[str, Any]] = {}
    _CATALOG[0] = catalog_dir
    try:
        result = validate_specs(files, known_technologies, all_service_names, catalog_dir,
                                check_all=lambda paths: _check_all(paths, documents))
    finally:
        _CATALOG[0] = None
    return Validated(result, documents)


__all__ = ["Validated", "validate_files", "worker_count", "PARALLEL_MIN_FILES"]
