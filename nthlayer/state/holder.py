"""Who holds the state database: ``nthlayer serve`` says so in a file beside it (``<database>.serve``).

DuckDB lets one process open the file, and a server keeps it open while it runs (reopening it per request
would cost far more than the request: docs/api.md). A local command that finds the file locked reads the
mark: when the server that wrote it is alive, the command stops at once and names the server's URL
(``--api``), instead of waiting out the lock timeout for a server that will not let go.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Holder:
    pid: int
    url: str


def mark_path(database: str) -> str:
    return f"{database}.serve"


def mark_served(database: str, url: str) -> None:
    """Say that this process serves ``database`` at ``url`` (written atomically, 0600 like the database)."""
    from generators.render import write_if_changed

    write_if_changed(mark_path(database), json.dumps({"pid": os.getpid(), "url": url}, sort_keys=True).encode())
    os.chmod(mark_path(database), 0o600)


def unmark_served(database: str) -> None:
    """Remove this process's mark (a mark another process wrote stays)."""
    holder = _read(database)
    if holder is not None and holder.pid == os.getpid():
        try:
            os.remove(mark_path(database))
        except FileNotFoundError:
            pass


def serving(database: str) -> Holder | None:
    """The live server that marked ``database``; None without a mark, or when its process is gone."""
    holder = _read(database)
    if holder is None or holder.pid == os.getpid():
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return None  # a server killed without its shutdown: a stale mark
    except PermissionError:
        pass  # alive, another user's
    return holder


def _read(database: str) -> Holder | None:
    try:
        with open(mark_path(database), encoding="utf-8") as handle:
            data = json.load(handle)
        return Holder(int(data["pid"]), str(data["url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
