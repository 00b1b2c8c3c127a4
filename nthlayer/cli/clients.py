"""What the commands that call a vendor's API share: the retry options, and the client's retry reports
shown as one plain line each on stderr."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any


def add_retry_arguments(parser: argparse.ArgumentParser, env_prefix: str, retries_help: str,
                        backoff_help: str) -> None:
    """--retries, --backoff (defaults from $<env_prefix>_RETRIES / _BACKOFF) and --timeout."""
    parser.add_argument("--retries", type=int, default=int(os.environ.get(f"{env_prefix}_RETRIES", "5")),
                        help=retries_help)
    parser.add_argument("--backoff", type=float, default=float(os.environ.get(f"{env_prefix}_BACKOFF", "1")),
                        help=backoff_help)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one response (default 30)")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (tests swap it per run)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def log_retries(logger_name: str, prefix: str) -> None:
    """Show the client's retry reports (one plain line each) on stderr, as ``prefix: …``."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
