"""The ``nthlayer`` command line. Keeps start-up cheap: a command's module is imported only when it runs."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Sequence

from nthlayer.cli.argparsing import Parser, UsageError
from nthlayer.cli.commands import COMMANDS
# The exit codes, one table (README "Exit codes"); check-deploy's 0/2/3 live in nthlayer.ops.gate.
from nthlayer.exit_codes import EXIT_CRASH, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EXIT_USER_ERROR

# What each code means to a user: `nthlayer --help` prints it, tests/test_cli_usage.py holds the
# README's table to it.
EXIT_CODE_MEANINGS = (
    (EXIT_OK, "success; check-deploy, correlate-deploy: approve"),
    (EXIT_USER_ERROR, "invalid input or another user error (a broken spec, a failed check or build)"),
    (2, "deploy blocked (check-deploy, correlate-deploy)"),
    (3, "cannot decide (check-deploy: Prometheus unreachable, no data)"),
    (EXIT_CRASH, "internal error (a bug; the traceback goes to the crash log)"),
    (EXIT_USAGE, "usage error: unknown command or option, missing or conflicting arguments"),
    (EXIT_INTERRUPTED, "interrupted"),
)


def _top_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="nthlayer",
        description="Reliability as code: SLOs, burn-rate alerts, technology alerts, PagerDuty and "
                    "Alertmanager routing from one YAML file per service.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'nthlayer COMMAND --help' for a command's options.\n\nexit codes:\n"
               + "".join(f"  {code:<4} {meaning}\n" for code, meaning in EXIT_CODE_MEANINGS),
    )
    from nthlayer import __version__

    parser.add_argument("--version", action="version", version=f"nthlayer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def command_parser(name: str) -> argparse.ArgumentParser:
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(f"nthlayer.cli.commands.{module_name}")
    parser = Parser(prog=f"nthlayer {name}", description=help_text)
    module.configure(parser)
    parser.set_defaults(_run=module.run)
    return parser


def _parse(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code when argparse has answered (help, version: 0; usage: 64)."""
    try:
        return parser.parse_args(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        parser = _top_parser()
        parsed = _parse(parser, args) if args else None  # help, version, or a usage error
        if isinstance(parsed, int):
            return parsed
        parser.print_help(sys.stderr)  # no command given (e.g. `nthlayer` alone)
        return EXIT_USAGE
    name, rest = args[0], args[1:]
    from generators.errors import SpecErrors, UserError

    parsed = None
    try:
        parser = command_parser(name)
        parsed = _parse(parser, rest)
        if isinstance(parsed, int):
            return parsed
        return int(parsed._run(parsed))
    except SpecErrors as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_USER_ERROR
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"nthlayer {name}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UserError as exc:
        print(f"nthlayer {name}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"nthlayer {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: say so plainly, keep the traceback for the report
        from nthlayer.state.db import crash_log_path  # beside the state database this run used

        log = os.environ.get("NTHLAYER_CRASH_LOG") or crash_log_path(getattr(parsed, "state", None))
        try:
            os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"nthlayer {name}\n{traceback.format_exc()}\n")
            where = f"; details in {log}"
        except OSError:
            where = ""
        print(f"nthlayer {name}: internal error ({type(exc).__name__}: {exc}){where}", file=sys.stderr)
        return EXIT_CRASH
