"""``nthlayer validate PATH...``: schema + cross-file checks on specs; optionally the generated OpenSLO too."""
from __future__ import annotations

import argparse
import sys

from generators.errors import sort_key
from generators.schema_messages import plural
from generators.policy import PolicyError
from generators.yamlload import allow_external_links
from nthlayer.config import ConfigError
from nthlayer.buildsys.project import require_services_dir
from nthlayer.ops.validate import validate_paths

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


def run(args: argparse.Namespace) -> int:
    if args.paths == [DEFAULT_PATH]:
        require_services_dir(DEFAULT_PATH, "name the spec files or folders to validate")
    if args.allow_external_links:
        allow_external_links(True)
    try:
        found = validate_paths(args.paths, services_dir=args.services_dir, catalog=args.catalog,
                               strict=args.strict, output=args.output)
    except (ConfigError, PolicyError) as exc:  # lines of their own: file:line:col: message
        print(str(exc), file=sys.stderr)
        return 1
    if not found.files and not found.composites:
        print(f"nthlayer validate: no spec files (*.yaml) in {', '.join(args.paths)}", file=sys.stderr)
        return 1
    errors, warnings = found.errors, found.warnings
    problems = sorted(errors + ([] if args.quiet else warnings), key=sort_key)
    for problem in problems:
        print(problem.format(), file=sys.stderr)
    if errors:
        bad_files = len({e.path for e in errors})
        print(f"{plural(len(errors), 'error')} in {plural(bad_files, 'file')}", file=sys.stderr)
        return 1
    if not args.quiet:
        warn = f", {plural(len(warnings), 'warning')}" if warnings else ""
        valid = plural(found.services, "service") + \
            (f", {plural(len(found.composites), 'composite')}" if found.composites else "")
        print(f"{plural(len(found.files) + len(found.composites), 'spec')} valid ({valid}{warn})")
    return 0
