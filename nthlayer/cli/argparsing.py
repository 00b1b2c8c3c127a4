"""The argument parser every ``nthlayer`` command uses: usage errors exit 64, options are never
abbreviated, and a secret given on the command line is refused without being echoed.

Why not plain argparse: it exits 2 on a usage error — check-deploy's BLOCK code, so a typo in a CI
job would read as a blocked deploy — and it takes ``--api-key KEY`` for ``--api-key-file`` (prefix
matching), then prints KEY in its error message.
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Any, NoReturn, Sequence

from generators.errors import UserError
from nthlayer.exit_codes import EXIT_USAGE

# An option whose name says it carries a secret. nthlayer declares none (secrets come from the
# environment or from files), so such an option is always a mistake, and its value must not be shown.
_SECRET_NAME = re.compile(r"key|token|passw|secret|credential", re.IGNORECASE)
_OPTION = re.compile(r"^--?[A-Za-z][\w-]*$")


class UsageError(UserError):
    """Options that cannot go together, found after parsing (exit 64 with the usage line, like argparse's)."""


def _declared_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and of its sub-command parsers."""
    names = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names |= _declared_options(sub)
    return names


def _secret_option(parser: argparse.ArgumentParser, args: Sequence[str]) -> str | None:
    """The first undeclared secret-looking option in ``args`` (before ``--``), as the error shows it."""
    declared = _declared_options(parser)
    for arg in args:
        if arg == "--":
            return None
        name = arg.split("=", 1)[0]
        # What argparse takes for an option: a value such as "-- token expired" (a space) is not one.
        if _OPTION.match(name) and name not in declared and _SECRET_NAME.search(name):
            hint = f": put it in a file and pass {name}-file FILE" if f"{name}-file" in declared else \
                "; see --help for where this command reads its secrets"
            return f"unrecognized argument {name} (its value is not shown); a secret is never taken on the " \
                   f"command line, where ps and shell history keep it{hint}"
    return None


class Parser(argparse.ArgumentParser):
    """argparse with ``allow_abbrev=False``, exit 64 on usage errors and secret-looking options refused."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        problem = _secret_option(self, argv)
        if problem:
            self.error(problem)
        return super().parse_known_args(argv, namespace)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """``--service NAME`` (repeatable) or ``--all``, and ``--services DIR``: which specs a command reads."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--service", action="append", metavar="NAME", help="this service (repeatable)")
    which.add_argument("--all", action="store_true", help="every service under --services")
    parser.add_argument("--services", metavar="DIR", default="services", help="spec folder (default: services/)")
