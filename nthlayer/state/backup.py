"""Back up and restore the state database with DuckDB's ``EXPORT DATABASE`` / ``IMPORT DATABASE``.

A backup is a folder: ``schema.sql``, ``load.sql`` and one Parquet file per table, readable by
any DuckDB (or anything that reads Parquet) even when the live file is damaged. Restoring builds a
new database from such a folder beside the live one, then swaps it in; the file it replaces is kept
as ``<database>.before-restore``. Recovery steps: docs/state.md.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import NamedTuple

from generators.errors import UserError
from nthlayer.state.db import StateLocked, connect, damage, lock_timeout, state_path

BACKUP_FILES = ("schema.sql", "load.sql")
KEPT_SUFFIX = ".before-restore"


class Counts(NamedTuple):
    deploys: int
    incidents: int
    audit: int

    def text(self) -> str:
        return f"{self.deploys} deploys, {self.incidents} incidents, {self.audit} audit records"


def _quoted(path: str) -> str:
    """A path as a SQL string literal (EXPORT/IMPORT take no parameters)."""
    return "'" + path.replace("'", "''") + "'"


def _counts(con: object) -> Counts:
    rows = con.execute("SELECT (SELECT count(*) FROM deploys), (SELECT count(*) FROM incidents), "  # type: ignore[attr-defined]
                       "(SELECT count(*) FROM audit)").fetchall()
    return Counts(*(int(v) for v in rows[0]))


def backup(directory: str, path: str | None = None) -> Counts:
    """Export the state database into ``directory`` (new or empty), completely or not at all."""
    database = state_path(path)
    if not os.path.isfile(database):
        raise UserError(f"no state database at {database}: nothing to back up")
    if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
        raise UserError(f"backup folder {directory} already exists and is not empty; name a new folder")
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=".nthlayer-backup-", dir=parent)  # 0700: the audit trail is private
    try:
        with connect(database) as con:
            counts = _counts(con)
            con.execute(f"EXPORT DATABASE {_quoted(partial)} (FORMAT parquet)")
        os.replace(partial, directory)  # an empty folder of that name is replaced, a full one refused above
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return counts


def _ensure_not_in_use(database: str) -> None:
    """Refuse to swap a database another process holds; a damaged one is exactly what gets replaced."""
    import duckdb

    if not os.path.exists(database):
        return
    try:
        duckdb.connect(database).close()
    except duckdb.Error as exc:
        if "Could not set lock" in str(exc) or "Conflicting lock" in str(exc):
            raise StateLocked(f"state database {database} is in use by another nthlayer process; "
                              "stop it before restoring") from None


def _remove(database: str) -> None:
    """Delete a database file we made and its write-ahead log, if there."""
    for path in (database, f"{database}.wal"):
        if os.path.exists(path):
            os.remove(path)


def restore(directory: str, path: str | None = None) -> tuple[Counts, str | None]:
    """Replace the state database with the backup in ``directory``; return its counts and where the
    replaced file was kept (None when there was none)."""
    import duckdb

    database = state_path(path)
    missing = [name for name in BACKUP_FILES if not os.path.isfile(os.path.join(directory, name))]
    if missing:
        raise UserError(f"{directory} is not a state backup (no {' or '.join(missing)}); "
                        "make one with 'nthlayer state backup DIR'")
    folder = os.path.dirname(os.path.abspath(database))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    staging = f"{database}.restoring"
    _remove(staging)
    umask = os.umask(0o077)
    try:
        con = duckdb.connect(staging)
        try:
            con.execute(f"IMPORT DATABASE {_quoted(directory)}")
        finally:
            con.close()
    except duckdb.Error as exc:
        _remove(staging)
        problem = damage(exc) or str(exc).strip().splitlines()[0]
        raise UserError(f"cannot restore from {directory}: {problem}") from None
    finally:
        os.umask(umask)
    try:
        _ensure_not_in_use(database)
    except StateLocked:
        _remove(staging)
        raise
    kept = None
    if os.path.exists(database):
        kept = database + KEPT_SUFFIX
        os.replace(database, kept)
    if os.path.exists(f"{database}.wal"):  # the old file's log must never be replayed into the new one
        os.replace(f"{database}.wal", f"{kept or database + KEPT_SUFFIX}.wal")
    os.replace(staging, database)
    with connect(database, timeout=lock_timeout()) as con:  # migrates a backup made by an older version
        counts = _counts(con)
    return counts, kept
