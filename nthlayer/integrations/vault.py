"""Reading secrets from HashiCorp Vault's KV version 2 engine, with the maintained ``hvac`` client.

A reference is ``vault://MOUNT/PATH[?version=N][#field]``: the first path segment is the KV v2 mount
(``secret`` in ``vault://secret/pd#token``), the rest the secret's path, ``field`` the key inside it and
``version`` pins a version (else the latest). Without ``#field`` the field is the credential's own last
name part (``api_key`` for ``pagerduty.api_key``), or the secret's only field when it has just one.

The connection comes from Vault's own environment variables: ``VAULT_ADDR`` (https; http only to a
loopback address, as a dev server), ``VAULT_TOKEN``, or AppRole ``VAULT_ROLE_ID`` + ``VAULT_SECRET_ID``
(``VAULT_APPROLE_MOUNT``, default ``approle``), ``VAULT_NAMESPACE``, ``VAULT_CACERT``. Values stay in memory;
errors name the reference and what Vault said, never a value or a token.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import parse_qs, urlsplit

from nthlayer.integrations.credentials import CredentialError

DEFAULT_TIMEOUT = 10.0
_SEGMENT = re.compile(r"^[A-Za-z0-9_.@-]+$")


@dataclass(frozen=True)
class VaultReference:
    """A parsed ``vault://`` reference."""

    mount: str
    path: str
    field: str | None
    version: int | None
    text: str


def parse_vault_reference(text: str) -> VaultReference:
    """Parse ``vault://MOUNT/PATH[?version=N][#field]``; ValueError saying what is wrong."""
    parts = urlsplit(text)
    if parts.scheme != "vault":
        raise ValueError(f"{text!r} does not start with vault://")
    segments = [s for s in (parts.netloc + parts.path).split("/")]
    if len(segments) < 2 or not all(segments):
        raise ValueError(f"{text}: needs a mount and a path, e.g. vault://secret/pagerduty#api_key")
    bad = [s for s in segments if not _SEGMENT.match(s) or s in (".", "..")]
    if bad:
        raise ValueError(f"{text}: path segment {bad[0]!r} has characters Vault paths here do not use")
    version = None
    if parts.query:
        query = parse_qs(parts.query, keep_blank_values=True)
        if set(query) != {"version"} or len(query["version"]) != 1 or not query["version"][0].isdigit() \
                or int(query["version"][0]) < 1:
            raise ValueError(f"{text}: the only query is ?version=N with N >= 1")
        version = int(query["version"][0])
    field = parts.fragment or None
    if "#" in text and not field:
        raise ValueError(f"{text}: empty #field")
    return VaultReference(segments[0], "/".join(segments[1:]), field, version, text)


class VaultReader:
    """Reads KV v2 secrets for one command run: logs in at most once, reads each secret version once."""

    def __init__(self, environ: Mapping[str, str], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.environ = environ
        self.timeout = timeout
        self._client: Any = None
        self._cache: dict[tuple[str, str, int | None], dict[str, Any]] = {}

    def _setting(self, name: str) -> str:
        return self.environ.get(name, "").strip()

    def _connect(self, ref: str) -> Any:
        if self._client is not None:
            return self._client
        try:
            import hvac
        except ImportError:
            raise CredentialError(f"{ref}: reading Vault needs the hvac package: pip install 'nthlayer-slo[vault]'") \
                from None
        addr = self._setting("VAULT_ADDR")
        if not addr:
            raise CredentialError(f"{ref}: VAULT_ADDR is not set (the Vault server, https://HOST:8200)")
        url = urlsplit(addr)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise CredentialError(f"{ref}: VAULT_ADDR {addr!r} is not an http(s) URL")
        if url.scheme == "http" and url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise CredentialError(f"{ref}: VAULT_ADDR must be https (a token would cross the network in clear "
                                  "text); plain http is accepted for a loopback address only")
        cacert = self._setting("VAULT_CACERT")
        client = hvac.Client(url=addr.rstrip("/"), token=self._setting("VAULT_TOKEN") or None,
                             verify=cacert or True, namespace=self._setting("VAULT_NAMESPACE") or None,
                             timeout=self.timeout)
        if not self._setting("VAULT_TOKEN"):
            role_id, secret_id = self._setting("VAULT_ROLE_ID"), self._setting("VAULT_SECRET_ID")
            if not role_id:
                raise CredentialError(f"{ref}: no Vault credentials: set VAULT_TOKEN, or VAULT_ROLE_ID and "
                                      "VAULT_SECRET_ID for an AppRole login")
            mount = self._setting("VAULT_APPROLE_MOUNT") or "approle"
            self._call(ref, "AppRole login", lambda: client.auth.approle.login(
                role_id=role_id, secret_id=secret_id or None, mount_point=mount))
        self._client = client
        return client

    def _call(self, ref: str, doing: str, action: Any) -> Any:
        """Run one hvac call; turn its failures into one line naming the reference and Vault's status."""
        import hvac.exceptions as vault_errors
        import requests

        try:
            return action()
        except vault_errors.Forbidden as exc:
            what = "invalid or expired credentials" if doing == "AppRole login" else \
                "permission denied: the token's policy does not allow reading it"
            raise CredentialError(f"{ref}: {doing}: {what} (Vault 403{_said(exc)})") from None
        except vault_errors.Unauthorized as exc:
            raise CredentialError(f"{ref}: {doing}: not authorised (Vault 401{_said(exc)})") from None
        except vault_errors.InvalidPath:
            raise CredentialError(f"{ref}: {doing}: no such secret or version (Vault 404)") from None
        except vault_errors.VaultError as exc:
            raise CredentialError(f"{ref}: {doing}: Vault answered an error ({type(exc).__name__}{_said(exc)})") \
                from None
        except requests.exceptions.SSLError:
            raise CredentialError(f"{ref}: {doing}: TLS verification of {self._setting('VAULT_ADDR')} failed "
                                  "(set VAULT_CACERT to the CA file that signed its certificate)") from None
        except requests.exceptions.RequestException as exc:
            raise CredentialError(f"{ref}: {doing}: cannot reach Vault at {self._setting('VAULT_ADDR')} "
                                  f"({type(exc).__name__})") from None

    def read(self, text: str, default_field: str) -> str:
        """The value ``text`` (a ``vault://`` reference) points at."""
        try:
            ref = parse_vault_reference(text)
        except ValueError as exc:
            raise CredentialError(str(exc)) from None
        client = self._connect(text)
        key = (ref.mount, ref.path, ref.version)
        if key not in self._cache:
            answer = self._call(text, "reading", lambda: client.secrets.kv.v2.read_secret_version(
                path=ref.path, mount_point=ref.mount, version=ref.version, raise_on_deleted_version=True))
            data = (answer or {}).get("data") or {}
            if not isinstance(data.get("data"), dict):
                raise CredentialError(f"{text}: Vault's answer has no data.data (is {ref.mount} a KV version 2 "
                                      "mount?)")
            self._cache[key] = data["data"]
        fields = self._cache[key]
        name = ref.field or (default_field if default_field in fields else
                             (next(iter(fields)) if len(fields) == 1 else None))
        if name is None:
            raise CredentialError(f"{text}: the secret has fields {', '.join(sorted(fields))}: name one with #field")
        if name not in fields:
            raise CredentialError(f"{text}: the secret has no field {name!r} (it has: {', '.join(sorted(fields))})")
        value = fields[name]
        if not isinstance(value, str) or not value.strip():
            raise CredentialError(f"{text}: field {name!r} is empty or not a string")
        return value.strip()


def _said(exc: Exception) -> str:
    """Vault's own error words (``permission denied``), which never contain a secret value."""
    errors = getattr(exc, "errors", None)
    return f": {'; '.join(str(e) for e in errors)}" if errors else ""
