"""``nthlayer policy check [PATH...]``: the project's Rego policies on specs; ``policy input SPEC``: what they see."""
from __future__ import annotations

import argparse
import json
import sys

from generators.catalog import default_catalog_dir, technology_files
from generators.errors import SpecErrors, as_errors, sort_key
from generators.policy import PolicyError
from generators.schema_messages import plural
from generators.spec import expand_paths, load_spec, validate_specs
from nthlayer.buildsys.policies import input_document, project_policies
from nthlayer.buildsys.project import require_services_dir
from nthlayer.config import ConfigError
from nthlayer.ops.policy import policy_problems

DEFAULT_PATH = "services"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="evaluate the policies on specs (files or folders)",
                           description="Evaluate the default policies and the project's own (nthlayer.toml "
                                       "[policy]) on every valid spec; a deny fails (exit 1). docs/policies.md")
    check.add_argument("paths", nargs="*", default=[DEFAULT_PATH],
                       help="spec files or folders of specs (default: services/)")
    check.add_argument("--catalog", help="rules catalog folder (default: $NTHLAYER_CATALOG or rules_catalog/)")
    check.add_argument("--strict", action="store_true", help="treat every warning as an error (exit 1)")
    check.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    show = sub.add_parser("input", help="print the input document a policy sees for a spec (JSON)",
                          description="Print the JSON document a Rego policy reads as `input` for SPEC.")
    show.add_argument("spec", help="a spec file")
    show.add_argument("--catalog", help="rules catalog folder (default: $NTHLAYER_CATALOG or rules_catalog/)")


def run(args: argparse.Namespace) -> int:
    try:
        return _input(args) if args.action == "input" else _check(args)
    except (ConfigError, PolicyError) as exc:  # file:line:col lines of their own
        print(str(exc), file=sys.stderr)
        return 1


def _input(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)  # SpecErrors: the CLI prints its lines
    document = input_document(spec.located, spec.service, args.catalog or default_catalog_dir())
    print(json.dumps(document, indent=2))
    return 0


def _check(args: argparse.Namespace) -> int:
    if args.paths == [DEFAULT_PATH]:
        require_services_dir(DEFAULT_PATH, "name the spec files or folders to check")
    files = expand_paths(args.paths)
    if not files:
        print(f"nthlayer policy check: no spec files (*.yaml) in {', '.join(args.paths)}", file=sys.stderr)
        return 1
    catalog_dir = args.catalog or default_catalog_dir()
    policies = project_policies()
    result = validate_specs(files, technology_files(catalog_dir))
    denies, warnings = policy_problems(result.specs, catalog_dir, policies, result.errors)
    errors = list(result.errors) + denies  # a spec that is not valid cannot be judged: say why
    if args.strict:
        errors, warnings = errors + as_errors(warnings), []
    for problem in sorted(errors + ([] if args.quiet else warnings), key=sort_key):
        print(problem.format(), file=sys.stderr)
    if errors:
        print(f"{plural(len(errors), 'error')} in {plural(len({e.path for e in errors}), 'file')}", file=sys.stderr)
        return 1
    if not args.quiet:
        warn = f", {plural(len(warnings), 'warning')}" if warnings else ""
        verb = "passes" if len(result.specs) == 1 else "pass"
        print(f"{plural(len(result.specs), 'spec')} {verb} {plural(len(policies.files), 'policy', 'policies')}{warn}")
    return 0
