"""Secrets (API keys, tokens) come from the environment or files, and are never shown in full."""
from __future__ import annotations

from generators.errors import UserError


def read_secret_file(path: str, what: str) -> str:
    """The stripped contents of a secret file; UserError (never the contents) when unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.read().strip()
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not secret:
        raise UserError(f"{what} {path} is empty")
    return secret
