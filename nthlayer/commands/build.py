"""``nthlayer build [DOIT ARGS]``: run the doit build (dodo.py) from anywhere, in the current folder.

Uses ./dodo.py when there is one, else the dodo.py shipped next to the nthlayer package,
so a monorepo with only services/ can build without copying it.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from generators.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--services", default=None, help="folder of specs (default: services/)")
    parser.add_argument("--out", default=None, help="output folder (default: out/)")
    parser.add_argument("--secrets-dir", default=None, metavar="DIR",
                        help="folder Alertmanager reads routing keys from, written into alertmanager.yml as "
                             "routing_key_file DIR/<service>.key; absolute for a deployment, e.g. "
                             "/etc/alertmanager/secrets (default: $NTHLAYER_SECRETS_DIR or state/secrets)")
    parser.add_argument("--strict", action="store_true",
                        help="treat every spec warning as an error: that service is not built (env NTHLAYER_STRICT=1)")
    parser.add_argument("doit_args", nargs=argparse.REMAINDER,
                        help="passed to doit, e.g. 'list', 'clean', 'openslo', '-n 2'")


def dodo_path() -> str:
    local = Path("dodo.py")
    if local.is_file():
        return str(local.resolve())
    shipped = Path(__file__).resolve().parent.parent.parent / "dodo.py"
    if shipped.is_file():
        return str(shipped)
    raise UserError("no dodo.py here or next to the nthlayer package")


def run(args: argparse.Namespace) -> int:
    from doit.doit_cmd import DoitMain

    if args.services:
        os.environ["NTHLAYER_SERVICES"] = args.services
    if args.out:
        os.environ["NTHLAYER_OUT"] = args.out
    if args.secrets_dir:
        os.environ["NTHLAYER_SECRETS_DIR"] = args.secrets_dir
    if args.strict:
        os.environ["NTHLAYER_STRICT"] = "1"
    rest = list(args.doit_args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    command, options = (rest[:1], rest[1:]) if rest and not rest[0].startswith("-") and rest[0] in {
        "run", "list", "clean", "info", "forget", "ignore", "dumpdb", "strace", "reset-dep", "tabcompletion",
        "help"} else (["run"], rest)
    code = int(DoitMain().run([*command, "-f", dodo_path(), "-d", os.getcwd(), *options]))
    if command == ["run"]:
        from nthlayer.state import record_audit

        record_audit("build", None, "ok" if code == 0 else "failed",
                     {"exit": code, "doit_args": options, "services": os.environ.get("NTHLAYER_SERVICES", "services")})
    return code
