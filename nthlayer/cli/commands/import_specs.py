"""``nthlayer import sloth|openslo FILE... --into DIR``: SLO definitions from other tools → service specs.

The conversion is pure (generators.importers); this module reads the files, proves every spec it is about to
write loads as a valid spec, refuses to overwrite one (unless ``--force``), and writes each atomically.
Fields that could not be carried over are printed, one warning line each; they never vanish silently.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from generators.errors import SpecError, SpecErrors, sort_key
from generators.importers.common import DEFAULT_TIER, Defaults, Imported, spec_bytes
from generators.tiers import TIER_ALIASES, TIERS
from generators.yamlload import Located

IMPORT_MAX_BYTES = 4 * 1024 * 1024
_TIERS = [str(n) for n in TIERS] + list(TIER_ALIASES)
_FORMATS = {
    "sloth": "a Sloth prometheus/v1 spec (version, service, labels, slos); one service file per Sloth service",
    "openslo": "OpenSLO v1 documents (Service, SLI, SLO, AlertPolicy, AlertCondition …), "
               "nthlayer's own output included",
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="source", metavar="FORMAT", required=True)
    for name, text in _FORMATS.items():
        command = sub.add_parser(name, help=text, description=f"write services/<name>.yaml from {text}")
        command.add_argument("files", nargs="+", metavar="FILE", help="YAML files (several documents each allowed)")
        command.add_argument("--into", metavar="DIR", required=True, help="folder to write <service>.yaml files into")
        command.add_argument("--team", help="team of services whose source names none (a 'team' or 'owner' "
                                            "label wins)")
        command.add_argument("--tier", choices=_TIERS, default=str(DEFAULT_TIER),
                             help=f"tier of services whose source has none (a 'tier' label wins; default "
                                  f"{DEFAULT_TIER})")
        command.add_argument("--force", action="store_true", help="overwrite existing service files")


def _importer(source: str) -> Callable[[list[Located], Defaults], Imported]:
    if source == "sloth":
        from generators.importers.sloth import import_sloth

        return import_sloth
    from generators.importers.openslo import import_openslo

    return import_openslo


def _load(files: list[str]) -> list[Located]:
    from generators.yamlload import load_yaml_documents

    documents: list[Located] = []
    errors: list[SpecError] = []
    for path in files:
        try:
            documents.extend(load_yaml_documents(path, max_bytes=IMPORT_MAX_BYTES))
        except SpecErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise SpecErrors(errors)
    return documents


def _check(path: str, data: bytes) -> list[SpecError]:
    """Errors of the spec about to be written (an importer bug, or an SLO the spec cannot hold)."""
    from generators.spec import load_spec

    try:
        load_spec(path, data)
    except SpecErrors as exc:
        return exc.errors
    return []


def run(args: argparse.Namespace) -> int:
    tier: int | str = int(args.tier) if args.tier.isdigit() else args.tier
    result = _importer(args.source)(_load(args.files), Defaults(args.team, tier))
    errors = list(result.errors)
    planned: dict[str, bytes] = {}
    for name, spec in sorted(result.specs.items()):
        path = os.path.join(args.into, f"{name}.yaml")
        data = spec_bytes(spec, args.source, result.sources[name])
        problems = _check(path, data)
        if problems:
            errors.extend(problems)
        elif os.path.exists(path) and not args.force:
            errors.append(SpecError(path, 1, 1, "", "exists; not overwritten (use --force to replace it)"))
        else:
            planned[path] = data
    for problem in sorted(set(result.warnings), key=sort_key) + sorted(set(errors), key=sort_key):
        print(problem.format(), file=sys.stderr)
    from generators.render import write_if_changed

    if planned:
        os.makedirs(args.into, exist_ok=True)
    for path, data in sorted(planned.items()):
        write_if_changed(path, data)
        print(f"wrote {path}")
    warned = len(set(result.warnings))
    summary = f"imported {len(planned)} service(s) from {len(args.files)} file(s); {warned} warning(s)"
    print(summary + (f", {len(set(errors))} error(s)" if errors else ""), file=sys.stderr if errors else sys.stdout)
    return 1 if errors else 0
