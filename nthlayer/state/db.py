"""The run-time state database (DuckDB): error budget samples, deploys, incidents, correlations, audit.

One file, default ``state/nthlayer.duckdb`` (``--state`` or ``$NTHLAYER_STATE`` override it).

DuckDB lets one process hold a database file at a time, so every command opens
the file for as short a time as it can through :func:`connect`, and a process
that finds the file locked waits with backoff instead of failing at once.

Timestamps: every TIMESTAMP column holds UTC wall-clock time without a zone.
Python code hands this module timezone-aware datetimes only; :func:`to_db`
converts them to naive UTC and refuses naive input (an ambiguous local time is
a bug, not something to guess at). :func:`from_db` turns a stored value back
into an aware UTC datetime.

Schema changes are ordered migrations in :data:`nthlayer.state.schema.MIGRATIONS`,
applied on open and recorded in ``schema_version``. Never edit a released migration: append one.
No foreign keys and no cascades: history rows outlive what they point at.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, NoReturn

from generators.errors import UserError
from nthlayer.state.schema import MIGRATIONS

if TYPE_CHECKING:  # duckdb is imported where it is used: a build with no state never loads it
    import duckdb

# What an operation is given to reach the state: opens a connection for one unit of work (the CLI's
# connect(path), the server's shared StateStore).
Opener = Callable[[], AbstractContextManager["duckdb.DuckDBPyConnection"]]
# Runs a write (a function of a connection) in a transaction and returns its result: in a short connection
# of its own (:func:`writer`), or batched with other writes into one commit (nthlayer serve's state store).
Writer = Callable[[Callable[["duckdb.DuckDBPyConnection"], Any]], Any]
DEFAULT_STATE_PATH = os.path.join("state", "nthlayer.duckdb")
STATE_ENV = "NTHLAYER_STATE"
LOCK_TIMEOUT_ENV = "NTHLAYER_STATE_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_SECONDS = 30.0

class StateUnavailable(UserError):
    """The state database cannot be used: locked too long, unreadable, or damaged (one clear line, exit 1;
    check-deploy treats it as "cannot decide")."""


class StateLocked(StateUnavailable):
    """Another process held the state database for longer than we were willing to wait."""


class StateDamaged(StateUnavailable):
    """The file is not a DuckDB database, or DuckDB found it truncated or failing its checksums."""


RECOVERY_HINT = ("restore it from a backup ('nthlayer state restore DIR', see docs/state.md) "
                 "or point --state / $NTHLAYER_STATE at another file")


def state_path(path: str | None = None) -> str:
    """The database file: the explicit path, else $NTHLAYER_STATE, else state/nthlayer.duckdb."""
    return path or os.environ.get(STATE_ENV) or DEFAULT_STATE_PATH


def crash_log_path(path: str | None = None) -> str:
    """Where a crash's traceback goes: beside the state database in use (``--state`` or the default)."""
    resolved = state_path(path)
    folder = os.path.dirname(resolved) if resolved != ":memory:" else DEFAULT_STATE_PATH.rsplit(os.sep, 1)[0]
    return os.path.join(folder, "nthlayer-crash.log")


def lock_timeout() -> float:
    """Seconds to wait for a locked database: $NTHLAYER_STATE_LOCK_TIMEOUT, default 30."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    if not raw:
        return DEFAULT_LOCK_TIMEOUT_SECONDS
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise UserError(f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def damage(exc: BaseException) -> str | None:
    """What is wrong with the file, when ``exc`` is DuckDB failing to read it (else None: a bug of ours).

    DuckDB raises a plain ``duckdb.Error`` for a checksum mismatch, an IOException for a truncated or
    foreign file, and Internal/Fatal errors when its own structures do not add up."""
    import duckdb

    text = _first_line(exc)
    if "not a valid DuckDB database" in text:
        return "not a DuckDB database file"
    if "Could not read enough bytes" in text:
        return "truncated (DuckDB could not read a block it expects)"
    if "Corrupt database file" in text or "checksum" in text:
        return f"damaged ({text.removeprefix('Corrupt database file: ')})"
    if isinstance(exc, (duckdb.IOException, duckdb.InternalException, duckdb.FatalException,
                        duckdb.SerializationException)) or type(exc) is duckdb.Error:
        return f"unreadable ({text})"
    return None


def _open(path: str, timeout: float, first_delay: float = 0.02, max_delay: float = 0.5) -> duckdb.DuckDBPyConnection:
    import duckdb

    deadline = time.monotonic() + timeout
    delay = first_delay
    told = False
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.IOException as exc:
            if _is_lock_conflict(exc):
                _refuse_if_served(path)
            if not _is_lock_conflict(exc):
                problem = damage(exc)
                if problem is not None and not problem.startswith("unreadable"):
                    raise StateDamaged(f"state database {path} is {problem}; {RECOVERY_HINT}") from None
                raise StateUnavailable(f"cannot open state database {path}: {_first_line(exc)}; check the path "
                                       "and its permissions, or pass --state / set $NTHLAYER_STATE") from None
            if time.monotonic() + delay > deadline:
                raise StateLocked(
                    f"state database {path} is still locked by another nthlayer process after "
                    f"{timeout:g} s; wait for it to finish (or raise ${LOCK_TIMEOUT_ENV})") from None
            if not told:
                print("state database is locked by another nthlayer process; retrying…", file=sys.stderr)
                told = True
            time.sleep(delay)
            delay = min(delay * 2, max_delay)


def _refuse_if_served(path: str) -> None:
    """A server holds the file until it stops: say so now, and how to reach it, rather than wait for it."""
    from nthlayer.state.holder import serving

    holder = serving(path)
    if holder is not None:
        raise StateLocked(f"state database {path} is held by 'nthlayer serve' (pid {holder.pid}) at {holder.url}: "
                          f"send the command there with --api {holder.url} (record-deploy, check-deploy, "
                          "correlate-deploy), or stop the server to use the file directly")


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every migration newer than the database's version; return the resulting version."""
    return _migrate(con)[0]


def _migrate(con: duckdb.DuckDBPyConnection) -> tuple[int, bool]:
    """(resulting version, whether a migration asked for the file to be rewritten)."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
    rows = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()
    current = int(rows[0][0])
    rewrite = False
    for version, step in sorted(MIGRATIONS, key=lambda migration: migration[0]):
        if version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            if isinstance(step, str):
                con.execute(step)
            else:
                rewrite = bool(step(con)) or rewrite
            con.execute("INSERT INTO schema_version VALUES (?, ?)", [version, to_db(utc_now())])
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
        current = version
    return current, rewrite


def _rewrite_file(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Copy the database into a new file and put it in place: DuckDB does not clear freed blocks, so
    deleted secrets would otherwise stay readable in the file. ``con`` is closed."""
    fresh = f"{path}.rewrite"
    for leftover in (fresh, f"{fresh}.wal"):
        if os.path.exists(leftover):
            os.remove(leftover)
    name = con.execute("SELECT current_database()").fetchall()[0][0]
    con.execute(f"ATTACH '{fresh.replace(chr(39), chr(39) * 2)}' AS nthlayer_rewrite")
    con.execute(f'COPY FROM DATABASE "{name.replace(chr(34), chr(34) * 2)}" TO nthlayer_rewrite')
    con.execute("DETACH nthlayer_rewrite")
    con.close()
    os.replace(fresh, path)


@contextmanager
def connect(path: str | None = None, timeout: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open (creating and migrating if needed) the state database for one short unit of work.

    The body runs in one transaction: committed when it returns, rolled back if it raises.
    Waits with backoff while another process holds the file (``timeout`` s, default
    $NTHLAYER_STATE_LOCK_TIMEOUT). A file DuckDB cannot read raises :class:`StateDamaged`, one line
    saying what to do, wherever the damage shows (on open, or only when a damaged block is read).
    A new database and its folder are created private to the user (0600 / 0700): it holds audit history.
    """
    import duckdb

    resolved = state_path(path)
    private = _make_private(resolved)
    try:
        wait = lock_timeout() if timeout is None else timeout
        con = _open(resolved, wait)
        try:
            con.execute("SET TimeZone = 'UTC'")
            if _migrate(con)[1] and resolved != ":memory:":
                _rewrite_file(con, resolved)
                con = _open(resolved, wait)
                con.execute("SET TimeZone = 'UTC'")
            with transaction(con, resolved):
                yield con
        finally:
            con.close()
    except duckdb.Error as exc:
        _raise_damage(exc, resolved)
    finally:
        if private is not None:
            os.umask(private)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection, path: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction on an open connection (of the database at ``path``): committed when the body
    returns, rolled back if it raises; DuckDB failing to read the file raises :class:`StateDamaged`."""
    import duckdb

    try:
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            _rollback(con)
            raise
        con.execute("COMMIT")
    except duckdb.Error as exc:
        _raise_damage(exc, path)


def _raise_damage(exc: BaseException, path: str) -> NoReturn:
    """Re-raise ``exc``, as :class:`StateDamaged` when it is DuckDB failing to read the file."""
    problem = damage(exc)
    if problem is None:
        raise exc
    raise StateDamaged(f"state database {path} is {problem}; {RECOVERY_HINT}") from None


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    import duckdb

    try:
        con.execute("ROLLBACK")
    except duckdb.Error:  # a fatal error already ended the transaction; the original error is the news
        pass


def _make_private(path: str) -> int | None:
    """Create the database's folder 0700 and make sure the file is (or will be created) 0600.

    Returns the umask to restore: DuckDB creates the file and its write-ahead log itself, so the
    process umask is narrowed for the connection's life (commands are single-threaded)."""
    if path == ":memory:":
        return None
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError as exc:
        reason = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
        raise StateUnavailable(f"cannot create the state folder {os.path.dirname(path) or '.'}: "
                               f"{reason}; pass --state FILE or set $NTHLAYER_STATE to a writable "
                               "place") from None
    try:
        mode = os.stat(path).st_mode
        if mode & 0o077:
            os.chmod(path, mode & 0o700)  # an older database created 0644
    except OSError:
        pass  # missing (DuckDB creates it under the umask below) or not ours to change
    return os.umask(0o077)


# --- time ------------------------------------------------------------------------------------

def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def to_db(value: datetime) -> datetime:
    """An aware datetime as the naive UTC value a TIMESTAMP column stores. Naive input is refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no timezone; state stores UTC only")
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def from_db(value: datetime | None) -> datetime | None:
    """A stored TIMESTAMP back as an aware UTC datetime."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a Z, seconds precision unless there are sub-second digits."""
    utc = value.astimezone(timezone.utc)
    text = utc.isoformat()
    return text.replace("+00:00", "Z")


_UNIX = re.compile(r"^-?\d+(\.\d+)?$")


def writer(opener: Opener) -> Writer:
    """A :data:`Writer` that runs each write in its own connection from ``opener``."""
    def write(job: Callable[["duckdb.DuckDBPyConnection"], Any]) -> Any:
        with opener() as con:
            return job(con)
    return write


def instant(text: str | None, what: str = "time") -> datetime:
    """``text`` parsed as :func:`parse_time` does, or the present to the second when there is none."""
    return parse_time(text, what) if text else utc_now().replace(microsecond=0)


def parse_time(text: str, what: str = "time") -> datetime:
    """RFC 3339 (with Z or an offset) or unix seconds → aware UTC datetime; raise UserError otherwise."""
    value = text.strip()
    if _UNIX.fullmatch(value):
        return datetime.fromtimestamp(float(value), timezone.utc)
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value)
    except ValueError:
        raise UserError(f"{what} {text!r} is neither RFC 3339 (2024-05-01T12:00:00Z) nor unix seconds") from None
    if parsed.tzinfo is None:
        raise UserError(f"{what} {text!r} has no timezone; add Z for UTC or an offset such as +02:00")
    return parsed.astimezone(timezone.utc)


# --- audit -----------------------------------------------------------------------------------

# CI systems name the person behind a run in different variables; the first one set wins.
ACTOR_VARIABLES = ("GITHUB_ACTOR", "GITLAB_USER_LOGIN", "CI_COMMIT_AUTHOR", "BUILDKITE_BUILD_CREATOR",
                   "BUILD_REQUESTEDFOR", "USER", "LOGNAME", "USERNAME")
_SECRET_KEY = re.compile(r"token|password|passwd|secret|authorization|api[_-]?key|credential", re.IGNORECASE)


def current_actor(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    for name in ACTOR_VARIABLES:
        if env.get(name):
            return env[name]
    return "unknown"


def scrub(details: Any) -> Any:
    """Replace the value of any key that names a secret, at any depth, so audit rows never hold one."""
    if isinstance(details, Mapping):
        return {str(k): ("[redacted]" if _SECRET_KEY.search(str(k)) else scrub(v)) for k, v in details.items()}
    if isinstance(details, (list, tuple)):
        return [scrub(v) for v in details]
    return details


def audit_json(details: Mapping[str, Any]) -> str:
    return json.dumps(scrub(details), sort_keys=True, default=str, separators=(",", ":"))


def insert_audit(con: duckdb.DuckDBPyConnection, action: str, service: str | None, result: str,
                 details: Mapping[str, Any], actor: str | None = None, at: datetime | None = None) -> None:
    """Append one audit row inside an open connection."""
    con.execute(
        "INSERT INTO audit (recorded_at, actor, action, service, result, details) VALUES (?, ?, ?, ?, ?, ?)",
        [to_db(at or utc_now()), actor or current_actor(), action, service, result, audit_json(details)],
    )


def record_audit(action: str, service: str | None, result: str, details: Mapping[str, Any],
                 path: str | None = None, actor: str | None = None) -> None:
    """Append one audit record (who, what, when, result, details) in its own short connection."""
    with connect(path) as con:
        insert_audit(con, action, service, result, details, actor=actor)


# The name the build calls.
audit = record_audit


def add_state_argument(parser: Any) -> None:
    parser.add_argument("--state", metavar="FILE", default=None,
                        help=f"state database (default: ${STATE_ENV} or {DEFAULT_STATE_PATH})")
