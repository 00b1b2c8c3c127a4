"""The one user-facing error type: a problem at a place in an input file."""
from __future__ import annotations

from typing import NamedTuple


class SpecError(NamedTuple):
    path: str
    line: int
    col: int
    pointer: str
    message: str
    warning: bool = False

    def format(self) -> str:
        prefix = "warning: " if self.warning else ""
        if self.col == 0:  # a line of code, not a place in a document (a plugin's: `plugin FILE:LINE: message`)
            return _one_line(f"{self.path}:{self.line}: {prefix}{self.message}")
        pointer = self.pointer or "/"
        return _one_line(f"{self.path}:{self.line}:{self.col}: {pointer}: {prefix}{self.message}")


_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}
_CONTROL.update({ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})


def _one_line(text: str) -> str:
    """Escape control characters (from user-supplied keys and values) so an error stays one line."""
    return text.translate(_CONTROL)


MAX_QUOTED = 200  # characters of a user's value an error line quotes; a file's whole content never


def clip(value: object, limit: int = MAX_QUOTED) -> str:
    """``value`` as text, cut to ``limit`` characters with a note of how long it was: an error line must
    not carry a whole file (a spec that is a symlink to /etc/passwd is one long string) into a CI log."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def excerpt(value: object, limit: int = MAX_QUOTED) -> str:
    """``value`` quoted for an error message: ``'text'``, clipped as :func:`clip` does."""
    return f"'{clip(value, limit)}'"


def sort_key(error: SpecError) -> tuple[str, int, int, str, str]:
    return (error.path, error.line, error.col, error.pointer, error.message)


class SpecErrors(Exception):
    """Raised with every problem found in one or more input files."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = sorted(set(errors), key=sort_key)
        super().__init__("\n".join(e.format() for e in self.errors))

    def lines(self) -> list[str]:
        return [e.format() for e in self.errors]


class UserError(Exception):
    """A problem the user can fix that is not tied to a place in a file (exit 1)."""


def as_errors(warnings: list[SpecError]) -> list[SpecError]:
    """Warnings promoted to errors (``--strict``): the same lines, without the ``warning:`` prefix."""
    return [w._replace(warning=False) for w in warnings]
