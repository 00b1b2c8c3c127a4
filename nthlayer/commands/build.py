"""``nthlayer build [--check] [DOIT ARGS]``: run the doit build in the current folder, from anywhere.

The tasks come from the installed package (nthlayer/dodo.py, the definition the checkout's dodo.py
re-exports), so a monorepo with only services/ builds without a copy of dodo.py or of the catalog.
``--check`` builds nothing: it lists the files of out/ that differ from what the specs produce.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from nthlayer.project import require_services_dir

DOIT_COMMANDS = {"run", "list", "clean", "info", "forget", "ignore", "dumpdb", "strace", "reset-dep",
                 "tabcompletion", "help"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--services", default=None, help="folder of specs (default: services/)")
    parser.add_argument("--out", default=None, help="output folder (default: out/)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; list each file of out/ that is missing, extra or edited compared "
                             "with what the specs produce, and exit 1 if there is any (a CI step)")
    parser.add_argument("doit_args", nargs=argparse.REMAINDER,
                        help="passed to doit, e.g. 'list', 'clean', 'openslo', '-n 2'")


def _task_loader() -> Any:
    """doit's loader for the packaged task definitions, made when doit loads them (after it has read
    ``name=value`` variables), as its own loader imports dodo.py then."""
    from doit.cmd_base import NamespaceTaskLoader

    class PackagedTasks(NamespaceTaskLoader):
        def setup(self, opt_values: dict[str, Any]) -> None:
            from nthlayer.dodo import namespace

            self.namespace = namespace()

    return PackagedTasks()


def run(args: argparse.Namespace) -> int:
    from doit.doit_cmd import DoitMain

    if args.services:
        os.environ["NTHLAYER_SERVICES"] = args.services
    if args.out:
        os.environ["NTHLAYER_OUT"] = args.out
    rest = list(args.doit_args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    given = dict(arg.split("=", 1) for arg in rest if "=" in arg and not arg.startswith("-"))  # doit variables
    services = given.get("services", os.environ.get("NTHLAYER_SERVICES", "services"))
    out = given.get("out", os.environ.get("NTHLAYER_OUT", "out"))
    require_services_dir(services, "pass --services DIR")
    if args.check:
        return _check(services, out, given.get("state", os.environ.get("NTHLAYER_STATE_DIR", "state")),
                      given.get("catalog"))
    command, options = (rest[:1], rest[1:]) if rest and rest[0] in DOIT_COMMANDS else (["run"], rest)
    code = int(DoitMain(_task_loader()).run([*command, *options]))
    if command == ["run"]:
        from nthlayer.state import record_audit

        record_audit("build", None, "ok" if code == 0 else "failed",
                     {"exit": code, "doit_args": options, "services": services})
    return code


def _check(services: str, out: str, state: str, catalog: str | None) -> int:
    from nthlayer.outputs import check_out

    state_db = os.environ.get("NTHLAYER_STATE", os.path.join(state, "nthlayer.duckdb"))
    differences, errors = check_out(services, out, state_db, os.path.join(state, "spec-index.json"), catalog)
    for line in errors:
        print(line, file=sys.stderr)
    for path, problem in differences:
        print(f"{path}: {problem}")
    if errors:
        print(f"nthlayer build --check: invalid inputs: {out}/ cannot match what they produce", file=sys.stderr)
    if differences:
        count = len(differences)
        files, differ = ("file", "differs") if count == 1 else ("files", "differ")
        print(f"nthlayer build --check: {count} {files} of {out}/ {differ} from what {services}/ produces; "
              "run 'nthlayer build'", file=sys.stderr)
    return 1 if differences or errors else 0
