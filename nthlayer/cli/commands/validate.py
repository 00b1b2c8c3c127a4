"""``nthlayer validate PATH...``: schema + cross-file checks on specs; optionally the generated OpenSLO too."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from generators.catalog import default_catalog_dir, technology_files
from generators.errors import SpecError, as_errors, sort_key
from generators.schema_messages import plural
from generators.composite import (CompositeResult, composite_paths, is_composite_file, services_dir_of,
                                  validate_composites)
from generators.policy import PolicyError, PolicySet
from generators.spec import expand_paths, summarize
from generators.yamlload import allow_external_links
from nthlayer.config import ConfigError
from nthlayer.buildsys.policies import project_policies
from nthlayer.buildsys.project import build_setting, require_services_dir
from nthlayer.ops.validate_cache import CACHE_FILE, ValidateCache, cache_key
from nthlayer.ops.validation import SpecServices, Validated, judge, validate_files, worker_count

DEFAULT_PATH = "services"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", default=[DEFAULT_PATH],
                        help="spec files or folders of specs (default: services/)")
    parser.add_argument("--catalog", help="rules catalog folder (default: $NTHLAYER_CATALOG or rules_catalog/)")
    parser.add_argument("--services-dir", default=None,
                        help="folder of all specs, so 'upstream' may name services outside PATHS "
                             "(default: the folder of each given file)")
    parser.add_argument("--output", metavar="OUT_DIR",
                        help="also validate the OpenSLO documents generated under OUT_DIR (e.g. out/)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    parser.add_argument("--strict", action="store_true",
                        help="treat every warning as an error (exit 1), e.g. pages that reach no receiver")
    parser.add_argument("--allow-external-links", action="store_true",
                        help="read specs that are symbolic links to files outside the project (refused by default)")


def _known_services(args: argparse.Namespace, files: list[str]) -> dict[str, str]:
    """The services of the other specs in the folders the given files live in (name → file): names
    'upstream' may refer to, and names a given file must not define again (a build would refuse both)."""
    from generators.spec import load_spec
    from generators.errors import SpecErrors

    folders = {args.services_dir} if args.services_dir else {os.path.dirname(f) or "." for f in files}
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


def run(args: argparse.Namespace) -> int:
    if args.paths == [DEFAULT_PATH]:
        require_services_dir(DEFAULT_PATH, "name the spec files or folders to validate")
    if args.allow_external_links:
        allow_external_links(True)
    given = expand_paths(args.paths)
    files = [f for f in given if not is_composite_file(f)]
    composites = [f for f in given if is_composite_file(f)]
    composites += [c for path in args.paths if os.path.isdir(path) for c in composite_paths(path)]
    if not files and not composites:
        print(f"nthlayer validate: no spec files (*.yaml) in {', '.join(args.paths)}", file=sys.stderr)
        return 1
    catalog_dir = args.catalog or default_catalog_dir()
    try:  # the project's policies judge every valid spec (docs/policies.md); their digest keys the cache
        policies = project_policies()
        cache = _cache(catalog_dir, policies)
    except (ConfigError, PolicyError) as exc:  # lines of their own: file:line:col: message
        print(str(exc), file=sys.stderr)
        return 1
    validated = validate_files(files, technology_files(catalog_dir), _known_services(args, files), catalog_dir, cache)
    result = validated.result
    errors: list[SpecError] = list(result.errors)
    warnings: list[SpecError] = list(result.warnings)
    checked = _composite_problems(args, composites, validated)
    errors += checked.errors
    warnings += checked.warnings
    try:
        denies, findings = judge(validated, policies, catalog_dir, cache, worker_count())
    except PolicyError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if cache is not None:
        cache.save()
    errors += denies
    warnings += findings
    if args.strict:
        errors, warnings = errors + as_errors(warnings), []
    if args.output:
        from generators.openslo_validate import validate_openslo_dir

        errors.extend(validate_openslo_dir(args.output))
    problems = sorted(errors + ([] if args.quiet else warnings), key=sort_key)
    for problem in problems:
        print(problem.format(), file=sys.stderr)
    if errors:
        bad_files = len({e.path for e in errors})
        print(f"{plural(len(errors), 'error')} in {plural(bad_files, 'file')}", file=sys.stderr)
        return 1
    if not args.quiet:
        warn = f", {plural(len(warnings), 'warning')}" if warnings else ""
        valid = plural(sum(1 for s in validated.summaries.values() if s.name is not None), 'service') + (f", {plural(len(composites), 'composite')}" if composites else "")
        print(f"{plural(len(files) + len(composites), 'spec')} valid ({valid}{warn})")
    return 0


def _composite_problems(args: argparse.Namespace, composites: list[str], validated: Validated) -> CompositeResult:
    """The composites checked against the specs of their services folder (``--services-dir``, else the
    folder above each one's ``composites`` folder): those just validated (loaded only where a composite
    names them), the others checked now."""
    result = CompositeResult([], [], [])
    summaries = {os.path.abspath(path): summary for path, summary in validated.summaries.items()}
    models = {os.path.abspath(spec.located.path): spec.service for spec in validated.result.specs}
    by_folder: dict[str, list[str]] = {}
    for path in composites:
        by_folder.setdefault(args.services_dir or services_dir_of(path), []).append(path)
    for folder, paths in sorted(by_folder.items()):
        where: dict[str, str] = {}  # service name → its spec file (the first, as the build keeps it)
        loaded: dict[str, Any] = {}
        invalid: dict[str, str] = {}
        for spec_path in expand_paths([folder]) if os.path.isdir(folder) else []:
            key = os.path.abspath(spec_path)
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


def _cache(catalog_dir: str, policies: PolicySet) -> ValidateCache | None:
    """The validation cache in the build's state folder, when that folder exists (docs/validate.md)."""
    state = build_setting({}, "state", "NTHLAYER_STATE_DIR", "state")
    if not os.path.isdir(state):
        return None
    return ValidateCache(os.path.join(state, CACHE_FILE), cache_key(catalog_dir, policies.digest()))
