"""``nthlayer generate-slo SPEC --output DIR --format openslo|prometheus [--dry-run]``."""
from __future__ import annotations

import argparse
import os
import sys

from generators.render import file_holds
from generators.spec import load_spec
from nthlayer.cli.argparsing import UsageError
from nthlayer.ops.generate import slo_files, write_generated
from nthlayer.state.db import add_state_argument

FORMATS = ("openslo", "prometheus")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the service spec (services/NAME.yaml)")
    parser.add_argument("--output", metavar="DIR",
                        help="where to write (default: out/SERVICE/openslo or out/SERVICE/prometheus); "
                             "'-' prints the files to stdout as one YAML stream instead")
    parser.add_argument("--format", choices=FORMATS, default="openslo",
                        help="openslo: OpenSLO v1 documents; prometheus: SLO recording and alerting rules, "
                             "their promtool test and a scrape config (default: openslo)")
    parser.add_argument("--dry-run", action="store_true",
                        help="write nothing; list each file as it would be created, changed or left unchanged, "
                             "with its size")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="apply the SLO generators of a Python file (repeatable; besides nthlayer.toml's "
                             "[build] plugins and installed ones; docs/plugins.md)")
    add_state_argument(parser)


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def yaml_stream(files: dict[str, bytes]) -> str:
    """The files as one YAML stream, in name order: each preceded by a ``# NAME`` comment, and by a
    document start unless its first document already opens with one (no empty documents)."""
    parts: list[str] = []
    for path, data in sorted(files.items()):
        text = data.decode("utf-8")
        first = next((line for line in text.splitlines() if line.strip() and not line.startswith("#")), "")
        parts.append(f"# {os.path.basename(path)}\n" + ("" if first.startswith("---") else "---\n") + text)
    return "".join(parts)


def run(args: argparse.Namespace) -> int:
    to_stdout = args.output == "-"
    if to_stdout and args.dry_run:
        raise UsageError("--dry-run lists files it would write; with --output - nothing is written anyway")
    files = slo_files(args.spec, args.format, "." if to_stdout else args.output, args.plugin, _warn)
    if to_stdout:
        sys.stdout.write(yaml_stream(files))
        return 0
    if args.dry_run:
        for path, data in sorted(files.items()):
            verdict = "unchanged" if file_holds(path, data) else "would change" if os.path.exists(path) else "would create"
            print(f"{verdict} {path} ({len(data)} bytes)")
        return 0

    def report(changed: set[str]) -> None:
        for path, data in sorted(files.items()):
            print(f"{'wrote' if path in changed else 'unchanged'} {path} ({len(data)} bytes)")

    write_generated("generate-slo", load_spec(args.spec).service.name, files, {"format": args.format}, args.state,
                    report)
    return 0
