"""Validating specs and composite SLOs (``nthlayer validate``): the schema, the cross-file checks, the
project's policies, and optionally the OpenSLO documents a build generated."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from generators.catalog import default_catalog_dir, technology_files
from generators.composite import (CompositeResult, composite_paths, is_composite_file, services_dir_of,
                                  validate_composites)
from generators.errors import SpecError, SpecErrors, as_errors
from generators.spec import LoadedSpec, expand_paths, load_spec, summarize, validate_specs
from nthlayer.ops.policy import policy_problems


@dataclass
class Validation:
    """What was validated and what was found (the errors and warnings unsorted)."""
    files: list[str]  # service specs
    composites: list[str]  # composite SLO files
    specs: list[LoadedSpec] = field(default_factory=list)  # the valid service specs
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[SpecError] = field(default_factory=list)


def validate_paths(paths: list[str], *, services_dir: str | None = None, catalog: str | None = None,
                   strict: bool = False, output: str | None = None) -> Validation:
    """Validate the specs and composites of ``paths`` (files or folders): against the catalog (default:
    the project's), the other specs of their folder (``services_dir``: of that folder), the project's
    policies; ``strict`` turns warnings into errors; ``output``: also the OpenSLO documents under it.
    Nothing to validate is an empty :class:`Validation`; a broken policy or config raises."""
    given = expand_paths(paths)
    files = [f for f in given if not is_composite_file(f)]
    composites = [f for f in given if is_composite_file(f)]
    composites += [c for path in paths if os.path.isdir(path) for c in composite_paths(path)]
    if not files and not composites:
        return Validation(files, composites)
    catalog_dir = catalog or default_catalog_dir()
    result = validate_specs(files, technology_files(catalog_dir), _known_services(services_dir, files), catalog_dir)
    errors: list[SpecError] = list(result.errors)
    warnings: list[SpecError] = list(result.warnings)
    checked = _composite_problems(services_dir, composites, result.specs)
    errors += checked.errors
    warnings += checked.warnings
    denies, findings = policy_problems(result.specs, catalog_dir, errors=result.errors)  # docs/policies.md
    errors += denies
    warnings += findings
    if strict:
        errors, warnings = errors + as_errors(warnings), []
    if output:
        from generators.openslo_validate import validate_openslo_dir

        errors.extend(validate_openslo_dir(output))
    return Validation(files, composites, list(result.specs), errors, warnings)


def _known_services(services_dir: str | None, files: list[str]) -> dict[str, str]:
    """The services of the other specs in the folders the given files live in (name → file): names
    'upstream' may refer to, and names a given file must not define again (a build would refuse both)."""
    folders = {services_dir} if services_dir else {os.path.dirname(f) or "." for f in files}
    names: dict[str, str] = {}
    given = {os.path.abspath(f) for f in files}
    for path in expand_paths(sorted(folders)):
        if os.path.abspath(path) in given:
            continue
        try:
            names.setdefault(load_spec(path).service.name, path)
        except SpecErrors:
            continue
    return names


def _composite_problems(services_dir: str | None, composites: list[str], specs: list[Any]) -> CompositeResult:
    """The composites checked against the specs of their services folder (``--services-dir``, else the
    folder above each one's ``composites`` folder): those just validated, the others loaded."""
    result = CompositeResult([], [], [])
    validated = {os.path.abspath(spec.located.path): spec for spec in specs}
    by_folder: dict[str, list[str]] = {}
    for path in composites:
        by_folder.setdefault(services_dir or services_dir_of(path), []).append(path)
    for folder, paths in sorted(by_folder.items()):
        services: dict[str, Any] = {}
        invalid: dict[str, str] = {}
        for spec_path in expand_paths([folder]) if os.path.isdir(folder) else []:
            spec: LoadedSpec | None = validated.get(os.path.abspath(spec_path))
            if spec is None:
                spec = summarize(spec_path)[1]
            if spec is None:
                invalid[os.path.splitext(os.path.basename(spec_path))[0]] = spec_path
            else:
                services.setdefault(spec.service.name, spec.service)
        found = validate_composites(paths, services, invalid)
        result.errors.extend(found.errors)
        result.warnings.extend(found.warnings)
    return result
