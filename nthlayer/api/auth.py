"""Who is calling, may they, and how often: API keys, OIDC bearer tokens, scopes, rate limits."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nthlayer.ops.api_keys import ApiKey, key_id_of, list_keys, matches, touch_keys
from nthlayer.state.db import utc_now

LAST_USED_FLUSH_SECONDS = 60.0


@dataclass(frozen=True)
class Principal:
    id: str  # what the rate limit counts by: "key:<id>" or "oidc:<subject>"
    name: str  # what the audit trail says did it
    scopes: frozenset[str]


class KeyRing:
    """The API keys, held in memory (the server owns the state file, so only it changes them).

    Last-used times are kept here and written at most once a minute per key, not on every request."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._keys: dict[str, ApiKey] = {}
        self._used: dict[str, datetime] = {}
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._flushed = time.monotonic()

    def reload(self) -> None:
        with self.store.connection() as con:
            keys = {k.id: k for k in list_keys(con)}
        with self._lock:
            self._keys = keys

    def authenticate(self, text: str) -> Principal | None:
        key_id = key_id_of(text)
        key = self._keys.get(key_id) if key_id else None
        if key is None or key.revoked_at is not None or not matches(key, text):
            return None
        with self._lock:
            self._used[key.id] = utc_now().replace(microsecond=0)
            self._dirty.add(key.id)
        return Principal(f"key:{key.id}", f"api-key:{key.name}", frozenset(key.scopes))

    def last_used(self, key: ApiKey) -> ApiKey:
        from dataclasses import replace

        used = self._used.get(key.id)
        return replace(key, last_used_at=used) if used else key

    def due(self) -> bool:
        return bool(self._dirty) and time.monotonic() - self._flushed >= LAST_USED_FLUSH_SECONDS

    def flush(self) -> None:
        """Write the pending last-used times (called off the event loop, and at shutdown)."""
        with self._lock:
            pending = {k: self._used[k] for k in self._dirty}
            self._dirty.clear()
            self._flushed = time.monotonic()
        if pending:
            with self.store.connection() as con:
                touch_keys(con, pending)


class OidcVerifier:
    """OAuth2/OIDC access tokens (JWTs) checked against a JWKS file or URL (nthlayer.api.jwks): signature,
    issuer, audience, expiry. Scopes come from the ``scope`` claim (space-separated) or ``scp`` (a list)."""

    ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]

    def __init__(self, jwks: str, issuer: str | None, audience: str | None) -> None:
        from nthlayer.api.jwks import JwksSource

        self.source = JwksSource(jwks)
        self.issuer = issuer
        self.audience = audience

    def verify(self, token: str) -> Principal | None:
        import jwt

        try:
            kid = jwt.get_unverified_header(token).get("kid")
            candidates = self.source.keys(kid if isinstance(kid, str) else None)
            if not candidates:
                return None
            claims = jwt.decode(token, key=candidates[0].key, algorithms=self.ALGORITHMS,
                                audience=self.audience, issuer=self.issuer,
                                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None})
        except jwt.PyJWTError:
            return None
        raw = claims.get("scope", claims.get("scp", []))
        scopes = raw.split() if isinstance(raw, str) else [s for s in raw if isinstance(s, str)]
        return Principal(f"oidc:{claims['sub']}", f"oidc:{claims['sub']}", frozenset(scopes))


class RateLimiter:
    """A fixed window per principal: ``limit`` requests per ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._counts: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, who: str) -> tuple[bool, int, int]:
        """(allowed, remaining, seconds until the window resets)."""
        now = time.monotonic()
        with self._lock:
            start, count = self._counts.get(who, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            count += 1
            self._counts[who] = (start, count)
            if len(self._counts) > 100_000:  # forget idle principals rather than grow without bound
                self._counts = {k: v for k, v in self._counts.items() if now - v[0] < self.window}
        return count <= self.limit, max(0, self.limit - count), self._reset(start, now)

    def _reset(self, start: float, now: float) -> int:
        return max(1, int(round(start + self.window - now + 0.4999)))

    def blocked(self, who: str) -> int | None:
        """Seconds until ``who`` may try again, when over the limit in the current window; else None."""
        now = time.monotonic()
        with self._lock:
            start, count = self._counts.get(who, (now, 0))
        if now - start >= self.window or count < self.limit:
            return None
        return self._reset(start, now)
