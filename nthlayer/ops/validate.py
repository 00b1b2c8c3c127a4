"""Validating specs and composite SLOs (``nthlayer validate``): the schema, the cross-file checks, the
project's policies, and optionally the OpenSLO documents a build generated."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from generators.catalog import default_catalog_dir, technology_files
from generators.composite import (CompositeResult, composite_paths, is_composite_file, services_dir_of,
                                  validate_composites)
from generators.errors import SpecError, SpecErrors, as_errors
from generators.policy import PolicySet
from generators.spec import expand_paths, load_spec, summarize
from nthlayer.buildsys.policies import project_policies
from nthlayer.buildsys.project import build_setting
from nthlayer.ops.validate_cache import CACHE_FILE, ValidateCache, cache_key
from nthlayer.ops.validation import SpecServices, Validated, judge, validate_files, worker_count


@dataclass
class Validation:
    """What was validated and what was found (the errors and warnings unsorted)."""
    files: list[str]  # service specs
    composites: list[str]  # composite SLO files
    services: int = 0  # the valid service specs
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[SpecError] = field(default_factory=list)


def validate_paths(paths: list[str], *, services_dir: str | None = None, catalog: str | None = None,
                   strict: bool = False, output: str | None = None) -> Validation:
    """Validate the specs and composites of ``paths`` (files or folders): against the catalog (default:
    the project's), the other specs of their folder (``services_dir``: of that folder), the project's
    policies; ``strict`` turns warnings into errors; ``output``: also the OpenSLO documents under it.
    Specs whose bytes state/validate-cache.json knows are not checked again (docs/validate.md). Nothing to
    validate is an empty :class:`Validation`; a broken policy or config raises."""
    given = expand_paths(paths)
    files = [f for f in given if not is_composite_file(f)]
    composites = [f for f in given if is_composite_file(f)]
    composites += [c for path in paths if os.path.isdir(path) for c in composite_paths(path)]
    if not files and not composites:
        return Validation(files, composites)
    catalog_dir = catalog or default_catalog_dir()
    policies = project_policies()  # they judge every valid spec (docs/policies.md); their digest keys the cache
    cache = _cache(catalog_dir, policies)
    validated = validate_files(files, technology_files(catalog_dir), _known_services(services_dir, files),
                               catalog_dir, cache, policies)
    result = validated.result
    errors: list[SpecError] = list(result.errors)
    warnings: list[SpecError] = list(result.warnings)
    checked = _composite_problems(services_dir, composites, validated)
    errors += checked.errors
    warnings += checked.warnings
    denies, findings = judge(validated, policies, catalog_dir, cache, worker_count())
    if cache is not None:
        cache.save()
    errors += denies
    warnings += findings
    if strict:
        errors, warnings = errors + as_errors(warnings), []
    if output:
        from generators.openslo_validate import validate_openslo_dir

        errors.extend(validate_openslo_dir(output))
    services = sum(1 for summary in validated.summaries.values() if summary.name is not None)
    return Validation(files, composites, services, errors, warnings)


def _cache(catalog_dir: str, policies: PolicySet) -> ValidateCache | None:
    """The validation cache in the build's state folder, when that folder exists (docs/validate.md)."""
    state = build_setting({}, "state", "NTHLAYER_STATE_DIR", "state")
    if not os.path.isdir(state):
        return None
    return ValidateCache(os.path.join(state, CACHE_FILE), cache_key(catalog_dir, policies.digest()))


def _known_services(services_dir: str | None, files: list[str]) -> dict[str, str]:
    """The services of the other specs in the folders the given files live in (name → file): names
    'upstream' may refer to, and names a given file must not define again (a build would refuse both)."""
    folders = {services_dir} if services_dir else {os.path.dirname(f) or "." for f in files}
    names: dict[str, str] = {}
    given = _Paths(files)
    for path in expand_paths(sorted(folders)):
        if given.find(path) is not None:
            continue
        try:
            names.setdefault(load_spec(path).service.name, path)
        except SpecErrors:
            continue
    return names


class _Paths:
    """Files as given, found again by another name of the same file: as given first (a folder's listing
    names its files as the listing that gave them did: no 20,000 absolute paths made), else absolute."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = set(paths)
        self.absolute: dict[str, str] | None = None

    def find(self, path: str) -> str | None:
        """The given path that names ``path``'s file, or None."""
        if path in self.paths:
            return path
        if self.absolute is None:
            self.absolute = {os.path.abspath(given): given for given in self.paths}
        return self.absolute.get(os.path.abspath(path))


def _composite_problems(services_dir: str | None, composites: list[str], validated: Validated) -> CompositeResult:
    """The composites checked against the specs of their services folder (``--services-dir``, else the
    folder above each one's ``composites`` folder): those just validated (loaded only where a composite
    names them), the others checked now."""
    result = CompositeResult([], [], [])
    if not composites:
        return result
    summaries = validated.summaries
    validated_paths = _Paths(summaries)
    models = {spec.located.path: spec.service for spec in validated.result.specs}
    by_folder: dict[str, list[str]] = {}
    for path in composites:
        by_folder.setdefault(services_dir or services_dir_of(path), []).append(path)
    for folder, paths in sorted(by_folder.items()):
        where: dict[str, str] = {}  # service name → its spec file (the first, as the build keeps it)
        loaded: dict[str, Any] = {}
        invalid: dict[str, str] = {}
        for spec_path in expand_paths([folder]) if os.path.isdir(folder) else []:
            key = validated_paths.find(spec_path) or spec_path
            summary = summaries.get(key)
            if summary is None:
                summary, spec = summarize(spec_path)
                if spec is not None:
                    models[key] = spec.service
            if summary.name is None:
                invalid[os.path.splitext(os.path.basename(spec_path))[0]] = spec_path
            elif summary.name.value not in where:
                where[summary.name.value] = spec_path
                if key in models:
                    loaded[summary.name.value] = models[key]
        found = validate_composites(paths, SpecServices(where, loaded), invalid)
        result.errors.extend(found.errors)
        result.warnings.extend(found.warnings)
    return result
