"""API keys for ``nthlayer serve``: created (the secret shown once), listed, revoked, checked.

A key reads ``nthk_<id>_<secret>``. Only the SHA-256 of the secret is stored: the secret is 32 random
bytes, so a fast hash is enough (there is nothing to brute-force, unlike a password) and checking a key
costs microseconds on every request. The id lets a request find its row without scanning.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Iterable

from generators.errors import UserError
from generators.spec import load_schema
from nthlayer.ops.services import NotFound
from nthlayer.state.db import Opener, from_db, insert_audit, to_db, utc_now

if TYPE_CHECKING:
    import duckdb

# Endpoint groups; a key carries the ones it may use. Named once, in the request schema the API serves.
SCOPES: dict[str, str] = load_schema("api-key.schema.json")["properties"]["scopes"]["items"]["x-descriptions"]
_KEY = re.compile(r"^nthk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    secret_sha256: str = ""

    def as_dict(self) -> dict[str, object]:
        from nthlayer.state.db import format_time

        return {"id": self.id, "name": self.name, "scopes": list(self.scopes),
                "created_at": format_time(self.created_at),
                "last_used_at": format_time(self.last_used_at) if self.last_used_at else None,
                "revoked_at": format_time(self.revoked_at) if self.revoked_at else None}


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    """``deploys:write,budgets:read`` (or a list) → sorted known scopes; an unknown one is a UserError."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = [s for s in items if s not in SCOPES]
    if unknown or not items:
        problem = f"unknown scope {', '.join(repr(s) for s in unknown)}" if unknown else "no scope given"
        raise UserError(f"{problem}; choose from {', '.join(SCOPES)}")
    return tuple(sorted(set(items)))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(con: duckdb.DuckDBPyConnection, name: str, scopes: Iterable[str], actor: str | None = None
               ) -> tuple[ApiKey, str]:
    """A new key and its full text (shown once: only its hash is stored)."""
    if not _NAME.fullmatch(name):
        raise UserError(f"key name {name!r}: use letters, digits, '.', '_' and '-', at most 63 characters")
    chosen = parse_scopes(list(scopes))
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    now = utc_now().replace(microsecond=0)
    con.execute("INSERT INTO api_keys (id, name, secret_sha256, scopes, created_at) VALUES (?, ?, ?, ?, ?)",
                [key_id, name, _digest(secret), ",".join(chosen), to_db(now)])
    insert_audit(con, "api-key create", None, "ok", {"id": key_id, "name": name, "scopes": list(chosen)}, actor=actor)
    return ApiKey(key_id, name, chosen, now, None, None, _digest(secret)), f"nthk_{key_id}_{secret}"


def list_keys(con: duckdb.DuckDBPyConnection) -> list[ApiKey]:
    rows = con.execute("SELECT id, name, scopes, created_at, last_used_at, revoked_at, secret_sha256 "
                       "FROM api_keys ORDER BY created_at, id").fetchall()
    return [ApiKey(r[0], r[1], tuple(r[2].split(",")), from_db(r[3]), from_db(r[4]), from_db(r[5]), r[6])
            for r in rows]


def revoke_key(con: duckdb.DuckDBPyConnection, key_id: str, actor: str | None = None) -> ApiKey:
    """Revoke a key by id (or by name when one key has that name); revoking twice keeps the first time."""
    matches = [k for k in list_keys(con) if k.id == key_id] or [k for k in list_keys(con) if k.name == key_id]
    if not matches:
        raise UserError(f"no API key {key_id!r}; 'nthlayer api-key list' shows them")
    if len(matches) > 1:
        raise UserError(f"{len(matches)} API keys are named {key_id!r}; revoke one by its id")
    key = matches[0]
    if key.revoked_at is None:
        con.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", [to_db(utc_now()), key.id])
        insert_audit(con, "api-key revoke", None, "ok", {"id": key.id, "name": key.name}, actor=actor)
    return next(k for k in list_keys(con) if k.id == key.id)


def create(opener: Opener, name: str, scopes: Iterable[str], actor: str | None = None) -> tuple[ApiKey, str]:
    """:func:`create_key` in its own short connection."""
    with opener() as con:
        return create_key(con, name, scopes, actor=actor)


def keys(opener: Opener) -> list[ApiKey]:
    """Every key, oldest first, in its own short connection."""
    with opener() as con:
        return list_keys(con)


def revoke(opener: Opener, key_ref: str, actor: str | None = None, *, by_name: bool = True) -> ApiKey:
    """:func:`revoke_key` in its own short connection; ``by_name`` False: ``key_ref`` is an id, and an
    unknown one is :class:`NotFound` (the API's DELETE /api-keys/{id})."""
    with opener() as con:
        if not by_name and key_ref not in {k.id for k in list_keys(con)}:
            raise NotFound(f"no API key {key_ref!r}")
        return revoke_key(con, key_ref, actor=actor)


def touch_keys(con: duckdb.DuckDBPyConnection, used: dict[str, datetime]) -> None:
    """Record when keys were last used (the server batches these: one write per key and minute at most)."""
    for key_id, at in used.items():
        con.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [to_db(at), key_id])


def key_id_of(text: str) -> str | None:
    """The id part of a key's text, or None when the text is not shaped like a key."""
    match = _KEY.fullmatch(text)
    return match.group(1) if match else None


def matches(key: ApiKey, text: str) -> bool:
    """Does ``text`` (a whole key) belong to ``key``? Constant-time in the secret."""
    match = _KEY.fullmatch(text)
    return bool(match) and match.group(1) == key.id and hmac.compare_digest(_digest(match.group(2)),
                                                                             key.secret_sha256)
