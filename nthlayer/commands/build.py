"""``nthlayer build [DOIT ARGS]``: run the doit build (dodo.py) from anywhere, in the current folder.

Uses ./dodo.py when there is one, else the dodo.py shipped next to the nthlayer package,
so a monorepo with only services/ can build without copying it.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from generators.errors import UserError


EXAMPLES = """\
examples:
  nthlayer build                        build every services/*.yaml into out/ (only what changed)
  nthlayer build service:payment-api    build one service
  nthlayer build list --all             list the tasks, one per service included
  nthlayer build clean                  remove the outputs
  nthlayer build -- -n 0                doit options go after '--' (here: one process)
  nthlayer build --services services --out out
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("--services", metavar="DIR", default=None, help="folder of specs (default: services/)")
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default: out/)")
    parser.add_argument("--secrets-dir", default=None, metavar="DIR",
                        help="folder Alertmanager reads routing keys from, written into alertmanager.yml as "
                             "routing_key_file DIR/<service>.key; absolute for a deployment, e.g. "
                             "/etc/alertmanager/secrets (default: $NTHLAYER_SECRETS_DIR or state/secrets)")
    parser.add_argument("--strict", action="store_true",
                        help="treat every spec warning as an error: that service is not built (env NTHLAYER_STRICT=1)")
    parser.add_argument("doit_args", nargs=argparse.REMAINDER, metavar="DOIT ARGS",
                        help="a doit command and its arguments (list, clean, info TASK, a task name such as "
                             "service:NAME), or doit options after '--'")


def dodo_path() -> str:
    local = Path("dodo.py")
    if local.is_file():
        return str(local.resolve())
    shipped = Path(__file__).resolve().parent.parent.parent / "dodo.py"
    if shipped.is_file():
        return str(shipped)
    raise UserError("no dodo.py here or next to the nthlayer package")


def doit_exit_code(code: int | None) -> int:
    """doit's exit status in nthlayer's table: 1 and 2 (a task failed, or could not run after one did)
    are a failed build (1); 3 (doit refused its command line: unknown task, bad option) is a usage error."""
    from nthlayer.argparsing import EXIT_USAGE

    if not code:  # doit's clean and some other commands return None on success
        return 0
    return EXIT_USAGE if code == 3 else 1


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
    doit = DoitMain()
    doit.BIN_NAME = "nthlayer build"  # doit's hints ("Type ... list") name the command the user typed
    code = doit_exit_code(doit.run([*command, "-f", dodo_path(), "-d", os.getcwd(), *options]))
    if command == ["run"]:
        from nthlayer.state import record_audit

        record_audit("build", None, "ok" if code == 0 else "failed",
                     {"exit": code, "doit_args": options, "services": os.environ.get("NTHLAYER_SERVICES", "services")})
    return code
