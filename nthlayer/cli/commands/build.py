"""``nthlayer build [--check] [DOIT ARGS]``: run the doit build in the current folder, from anywhere.

The tasks come from the installed package (nthlayer/buildsys/dodo.py, the definition the checkout's dodo.py
re-exports), so a monorepo with only services/ builds without a copy of dodo.py or of the catalog.
``--check`` builds nothing: it lists the files of out/ that differ from what the specs produce.
"""
from __future__ import annotations

import argparse
import os
import sys

from generators.errors import UserError
from nthlayer.buildsys.project import build_setting, is_on, require_services_dir
from nthlayer.buildsys.shards import SHARD_BY
from nthlayer.cli.argparsing import UsageError
from nthlayer.ops.build import check_build, run_build

DOIT_COMMANDS = {"run", "list", "clean", "info", "forget", "ignore", "dumpdb", "strace", "reset-dep",
                 "tabcompletion", "help"}

EXAMPLES = """\
examples:
  nthlayer build                        build every services/*.yaml into out/ (only what changed)
  nthlayer build service:payment-api    build one service
  nthlayer build list --all             list the tasks, one per service included
  nthlayer build --check                write nothing; list out/ files that differ from what the specs produce
  nthlayer build clean                  remove the outputs
  nthlayer build -- -n 0                doit options go after '--' (here: one process)
  nthlayer build --services services --out out
  nthlayer build --shard 1/2            shard 1 of 2: its services and its fragment out/.shards/shard-1-of-2.json
  nthlayer build --shard 2/2            shard 2 of 2 (in CI: another runner; each uploads its out/)
  nthlayer build --assemble 2           the shared files from both fragments, in one out/ (docs/build.md)
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("--services", metavar="DIR", default=None, help="folder of specs (default: services/)")
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default: out/)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; list each file of out/ that is missing, extra or edited compared "
                             "with what the specs produce, and exit 1 if there is any (a CI step)")
    parser.add_argument("--secrets-dir", default=None, metavar="DIR",
                        help="folder Alertmanager reads routing keys from, written into alertmanager.yml as "
                             "routing_key_file DIR/<service>.key; absolute for a deployment, e.g. "
                             "/etc/alertmanager/secrets (default: $NTHLAYER_SECRETS_DIR or state/secrets)")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="load the plugins of a Python file (repeatable; besides nthlayer.toml's [build] "
                             "plugins and installed ones; env NTHLAYER_PLUGINS; docs/plugins.md)")
    parser.add_argument("--strict", action="store_true",
                        help="treat every spec warning as an error: that service is not built (env NTHLAYER_STRICT=1)")
    parser.add_argument("--shard", metavar="K/N", default=None,
                        help="build only shard K of N (services by a stable hash of their name) and write its "
                             "fragment out/.shards/shard-K-of-N.json instead of the shared files (env NTHLAYER_SHARD)")
    parser.add_argument("--shard-by", choices=SHARD_BY, default=None,
                        help="what places a service in a shard: its name (default) or its team")
    parser.add_argument("--assemble", metavar="N", default=None,
                        help="write the shared files (Alertmanager, overview, kustomization, composites, reports) "
                             "from the fragments of N shards in out/.shards/, then remove them (env NTHLAYER_ASSEMBLE)")
    parser.add_argument("doit_args", nargs=argparse.REMAINDER, metavar="DOIT ARGS",
                        help="a doit command and its arguments (list, clean, info TASK, a task name such as "
                             "service:NAME), or doit options after '--'")


def run(args: argparse.Namespace) -> int:
    if args.services:
        os.environ["NTHLAYER_SERVICES"] = args.services
    if args.out:
        os.environ["NTHLAYER_OUT"] = args.out
    if args.secrets_dir:
        os.environ["NTHLAYER_SECRETS_DIR"] = args.secrets_dir
    if args.strict:
        os.environ["NTHLAYER_STRICT"] = "1"
    _sharding(args)
    if args.plugin:  # the build (and its --check) reads them from there, as it reads its other settings
        os.environ["NTHLAYER_PLUGINS"] = os.pathsep.join(args.plugin)
    rest = list(args.doit_args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    given = dict(arg.split("=", 1) for arg in rest if "=" in arg and not arg.startswith("-"))  # doit variables
    services = build_setting(given, "services", "NTHLAYER_SERVICES", "services")
    out = build_setting(given, "out", "NTHLAYER_OUT", "out")
    require_services_dir(services, "pass --services DIR")
    if args.check:
        return _check(services, out, build_setting(given, "state", "NTHLAYER_STATE_DIR", "state"),
                      given.get("catalog"), build_setting(given, "secrets_dir", "NTHLAYER_SECRETS_DIR") or None,
                      is_on(build_setting(given, "strict", "NTHLAYER_STRICT")))
    command, options = (rest[:1], rest[1:]) if rest and rest[0] in DOIT_COMMANDS else (["run"], rest)
    return run_build(command, options, services)


def _sharding(args: argparse.Namespace) -> None:
    """--shard/--shard-by/--assemble, checked here (a usage error) and handed to the build as its variables."""
    from nthlayer.buildsys.shards import parse_count, parse_shard

    try:
        if args.shard is not None and args.assemble is not None:
            raise UserError("--shard and --assemble: a run builds one shard or assembles them, not both")
        if args.shard_by is not None and args.shard is None:
            raise UserError("--shard-by needs --shard K/N")
        if args.check and (args.shard is not None or args.assemble is not None):
            raise UserError("--check judges a whole out/: run it after the assembly, without --shard/--assemble")
        if args.shard is not None:
            os.environ["NTHLAYER_SHARD"] = str(parse_shard(args.shard, args.shard_by or "name", "--shard "))
            os.environ["NTHLAYER_SHARD_BY"] = args.shard_by or "name"
        if args.assemble is not None:
            os.environ["NTHLAYER_ASSEMBLE"] = str(parse_count(args.assemble, "--assemble "))
    except UserError as exc:
        raise UsageError(str(exc)) from None


def _check(services: str, out: str, state: str, catalog: str | None, secrets_dir: str | None, strict: bool) -> int:
    differences, errors = check_build(services, out, state, catalog, secrets_dir, strict)
    for line in errors:
        print(line, file=sys.stderr)
    for path, problem in differences:
        print(f"{path}: {problem}")
    if errors:
        print(f"nthlayer build --check: invalid inputs: {out}/ cannot match what they produce", file=sys.stderr)
    if differences:
        count = len(differences)
        files, differ = ("file", "differs") if count == 1 else ("files", "differ")
        # A build restores missing and edited files but keeps files it did not write (docs/build.md).
        extra = sum(problem == "extra" for _, problem in differences)
        remove = ("remove the extra file (a build leaves it)" if extra == 1
                  else "remove the extra files (a build leaves them)")
        todo = " and ".join(["run 'nthlayer build'"] * (count > extra) + [remove] * (extra > 0))
        print(f"nthlayer build --check: {count} {files} of {out}/ {differ} from what {services}/ produces; {todo}",
              file=sys.stderr)
    return 1 if differences or errors else 0
