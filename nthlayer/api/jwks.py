"""Where the OIDC signing keys come from: a JWKS file, or the identity provider's JWKS URL.

A URL is fetched when the server starts (a server that cannot check tokens refuses to start, naming the
URL and why) and kept in memory. It is fetched again when a token names a key id (``kid``) the set does
not hold — the provider rotated its keys — at most once per :data:`REFETCH_SECONDS`, so tokens with
made-up ids cannot make the server hammer the provider; and when the set is older than
:data:`MAX_AGE_SECONDS`, so a revoked key does not stay trusted forever. A failed refetch keeps the keys
it had. Only https is accepted, or http to 127.0.0.1 (a provider on the same machine, and the tests).
"""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from generators.errors import UserError

FETCH_TIMEOUT_SECONDS = 5.0
REFETCH_SECONDS = 30.0  # the least time between two fetches prompted by unknown key ids
MAX_AGE_SECONDS = 3600.0
MAX_JWKS_BYTES = 1 << 20


def is_url(location: str) -> bool:
    return location.startswith(("https://", "http://"))


def check_url(url: str) -> None:
    """Refuse a JWKS URL that could be intercepted: anything but https, or http to 127.0.0.1."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname == "127.0.0.1":
        return
    raise UserError(f"--oidc-jwks {url}: use an https URL (plain http only to 127.0.0.1), or a file")


class JwksSource:
    """The current key set of a file or URL, refreshed as the module docstring says."""

    def __init__(self, location: str, timeout: float = FETCH_TIMEOUT_SECONDS) -> None:
        self.location = location
        self.timeout = timeout
        self.remote = is_url(location)
        if self.remote:
            check_url(location)
        self._lock = threading.Lock()
        self._keys = self._load()  # UserError, naming the file or URL, when it cannot be used
        self._fetched = time.monotonic()
        self._missed = float("-inf")  # when an unknown key id last made us fetch

    def _load(self) -> Any:
        import jwt

        what = f"the JWKS URL {self.location}" if self.remote else f"the JWKS file {self.location}"
        try:
            document = self._fetch() if self.remote else self._read()
            return jwt.PyJWKSet.from_dict(document)
        except (OSError, ValueError, jwt.exceptions.PyJWKSetError) as exc:
            raise UserError(f"cannot use {what}: {exc}") from None

    def _read(self) -> Any:
        with open(self.location, encoding="utf-8") as handle:
            return json.load(handle)

    def _fetch(self) -> Any:
        import requests

        try:
            with requests.get(self.location, timeout=self.timeout, stream=True, allow_redirects=False,
                              headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise ValueError(f"HTTP {response.status_code}")
                body = response.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise OSError(_reason(exc)) from None
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
        return json.loads(body)

    def keys(self, kid: str | None) -> list[Any]:
        """The keys a token naming ``kid`` may be signed with (all, without a kid); fetched again first
        when the set is old, or when it lacks ``kid`` and was not fetched in the last REFETCH_SECONDS."""
        now = time.monotonic()
        current = self._matching(kid)
        if not self.remote:
            return current
        if not current and now - self._missed >= REFETCH_SECONDS:
            self._missed = now
            self._refresh()
        elif now - self._fetched >= MAX_AGE_SECONDS:
            self._refresh()
        else:
            return current
        return self._matching(kid)

    def _matching(self, kid: str | None) -> list[Any]:
        return [k for k in self._keys.keys if kid is None or k.key_id == kid]

    def _refresh(self) -> None:
        if not self._lock.acquire(blocking=False):  # another request is fetching: use what there is
            return
        try:
            self._fetched = time.monotonic()  # a failure too: not retried on every request
            self._keys = self._load()
        except UserError as exc:
            print(f"nthlayer serve: warning: {exc}; keeping the keys fetched before", file=sys.stderr, flush=True)
        finally:
            self._lock.release()


def _reason(exc: Exception) -> str:
    """A network error in one line (requests' messages nest the whole chain)."""
    import requests

    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    return type(exc).__name__
