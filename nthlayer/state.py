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

Schema changes are ordered migrations in :data:`MIGRATIONS`, applied on open and
recorded in ``schema_version``. Never edit a released migration: append one.
No foreign keys and no cascades: history rows outlive what they point at.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from generators.errors import UserError

if TYPE_CHECKING:  # duckdb is imported where it is used: a build with no state never loads it
    import duckdb

DEFAULT_STATE_PATH = os.path.join("state", "nthlayer.duckdb")
STATE_ENV = "NTHLAYER_STATE"
LOCK_TIMEOUT_ENV = "NTHLAYER_STATE_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_SECONDS = 30.0

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
        CREATE TABLE slos (
            service VARCHAR NOT NULL,
            slo VARCHAR NOT NULL,
            objective DECIMAL(12, 9) NOT NULL,
            window_days INTEGER NOT NULL,
            tier INTEGER NOT NULL,
            PRIMARY KEY (service, slo)
        );
        CREATE INDEX slos_service ON slos (service);

        CREATE SEQUENCE error_budget_ids;
        CREATE TABLE error_budgets (
            id BIGINT PRIMARY KEY DEFAULT nextval('error_budget_ids'),
            service VARCHAR NOT NULL,
            slo VARCHAR NOT NULL,
            evaluated_at TIMESTAMP NOT NULL,
            objective DECIMAL(12, 9) NOT NULL,
            window_days INTEGER NOT NULL,
            budget_minutes DECIMAL(18, 6) NOT NULL,
            consumed_minutes DECIMAL(18, 6),
            remaining_minutes DECIMAL(18, 6),
            remaining_percent DECIMAL(12, 4),
            burn_rate_1h DOUBLE,
            status VARCHAR NOT NULL
        );
        CREATE INDEX error_budgets_service ON error_budgets (service);

        CREATE SEQUENCE deploy_ids;
        CREATE TABLE deploys (
            id BIGINT PRIMARY KEY DEFAULT nextval('deploy_ids'),
            service VARCHAR NOT NULL,
            version VARCHAR NOT NULL,
            commit_sha VARCHAR,
            deployed_at TIMESTAMP NOT NULL,
            source VARCHAR NOT NULL,
            UNIQUE (service, version, deployed_at)
        );
        CREATE INDEX deploys_service ON deploys (service);

        CREATE SEQUENCE incident_ids;
        CREATE TABLE incidents (
            id BIGINT PRIMARY KEY DEFAULT nextval('incident_ids'),
            incident_key VARCHAR NOT NULL UNIQUE,
            service VARCHAR NOT NULL,
            title VARCHAR,
            severity VARCHAR NOT NULL,
            started_at TIMESTAMP NOT NULL,
            resolved_at TIMESTAMP,
            source VARCHAR NOT NULL
        );
        CREATE INDEX incidents_service ON incidents (service);

        -- One row per (deploy_id, incident_id): correlation.score() deletes a deploy's rows before
        -- inserting, in one transaction. No primary key: its index doubled the benchmark's write time.
        CREATE TABLE correlations (
            deploy_id BIGINT NOT NULL,
            incident_id BIGINT NOT NULL,
            service VARCHAR NOT NULL,
            incident_service VARCHAR NOT NULL,
            window_hours DOUBLE NOT NULL,
            confidence DECIMAL(6, 4) NOT NULL,
            factors JSON NOT NULL
        );
        CREATE INDEX correlations_service ON correlations (service);

        CREATE SEQUENCE audit_ids;
        CREATE TABLE audit (
            id BIGINT PRIMARY KEY DEFAULT nextval('audit_ids'),
            recorded_at TIMESTAMP NOT NULL,
            actor VARCHAR NOT NULL,
            action VARCHAR NOT NULL,
            service VARCHAR,
            result VARCHAR NOT NULL,
            details JSON NOT NULL
        );
        CREATE INDEX audit_service ON audit (service);
    """),
]


class StateLocked(UserError):
    """Another process held the state database for longer than we were willing to wait."""


def state_path(path: str | None = None) -> str:
    """The database file: the explicit path, else $NTHLAYER_STATE, else state/nthlayer.duckdb."""
    return path or os.environ.get(STATE_ENV) or DEFAULT_STATE_PATH


def _lock_timeout() -> float:
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


def _open(path: str, timeout: float, first_delay: float = 0.02, max_delay: float = 0.5) -> duckdb.DuckDBPyConnection:
    import duckdb

    deadline = time.monotonic() + timeout
    delay = first_delay
    told = False
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise UserError(f"cannot open state database {path}: {exc}") from None
            if time.monotonic() + delay > deadline:
                raise StateLocked(
                    f"state database {path} is still locked by another nthlayer process after "
                    f"{timeout:g} s; wait for it to finish (or raise ${LOCK_TIMEOUT_ENV})") from None
            if not told:
                print("state database is locked by another nthlayer process; retrying…", file=sys.stderr)
                told = True
            time.sleep(delay)
            delay = min(delay * 2, max_delay)


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every migration newer than the database's version; return the resulting version."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
    rows = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()
    current = int(rows[0][0])
    for version, sql in sorted(MIGRATIONS):
        if version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_version VALUES (?, ?)", [version, to_db(utc_now())])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        current = version
    return current


@contextmanager
def connect(path: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open (creating and migrating if needed) the state database for one short unit of work.

    The body runs in one transaction: committed when it returns, rolled back if it raises.
    Waits with backoff while another process holds the file (up to $NTHLAYER_STATE_LOCK_TIMEOUT s).
    """
    resolved = state_path(path)
    if resolved != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(resolved)), exist_ok=True)
    con = _open(resolved, _lock_timeout())
    try:
        con.execute("SET TimeZone = 'UTC'")
        migrate(con)
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    finally:
        con.close()


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
