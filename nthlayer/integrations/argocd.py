"""A small client of ArgoCD's REST API for the one thing nthlayer asks of it: roll an application back.

Two endpoints (ArgoCD's swagger, ``ApplicationService``): ``GET /api/v1/applications/{name}`` for the
application's sync history, and ``POST /api/v1/applications/{name}/rollback`` with ``{"id": <history id>}``.
The token (``argocd.token`` from the credential resolver) needs only ``applications, sync`` and ``get`` on the
application: a rollback is a sync to an earlier revision.

ArgoCD's errors come back as one line each, without the token: a sync already in progress, auto-sync
enabled (ArgoCD refuses to roll back then: the next auto-sync would undo it), an unknown history id,
permission denied (also what ArgoCD says for an application that does not exist).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from generators.errors import UserError

DEFAULT_TIMEOUT = 30.0


class ArgoCDError(UserError):
    """ArgoCD refused or could not be reached; the message says why in one line, never with the token."""


class ReadOnlyViolation(RuntimeError):
    """A dry run tried to write: a bug in nthlayer, never the user's doing."""


@dataclass(frozen=True)
class HistoryEntry:
    """One past sync of the application (``status.history[]``)."""

    id: int
    revision: str
    deployed_at: str | None


@dataclass(frozen=True)
class Application:
    """What nthlayer reads of an ArgoCD application."""

    name: str
    revision: str | None  # the revision it is synced to now (status.sync.revision)
    history: tuple[HistoryEntry, ...]  # oldest first, as ArgoCD keeps it
    operation_running: bool  # a sync (or rollback) is under way
    operation_revision: str | None  # what that operation syncs to
    auto_sync: bool
    health: str | None

    def previous(self, avoid: set[str]) -> HistoryEntry | None:
        """The newest history entry to go back to: not the revision running now, nor one in ``avoid``
        (revisions already rolled back from as unhealthy)."""
        current = self.revision or (self.history[-1].revision if self.history else None)
        for entry in sorted(self.history, key=lambda h: h.id, reverse=True):
            if entry.revision != current and entry.revision not in avoid:
                return entry
        return None


def parse_application(name: str, body: Any) -> Application:
    """The fields nthlayer uses from ArgoCD's ``v1alpha1Application`` JSON."""
    if not isinstance(body, dict):
        raise ArgoCDError(f"ArgoCD answered GET /api/v1/applications/{name} with something that is not an application")
    status = body.get("status") or {}
    spec = body.get("spec") or {}
    history = []
    for item in status.get("history") or []:
        try:
            history.append(HistoryEntry(int(item["id"]), str(item.get("revision") or ""), item.get("deployedAt")))
        except (KeyError, TypeError, ValueError):
            raise ArgoCDError(f"ArgoCD application {name}: a status.history entry has no numeric id") from None
    operation = body.get("operation") or {}
    state = status.get("operationState") or {}
    running = bool(operation) or state.get("phase") in ("Running", "Terminating")
    target = ((operation.get("sync") or {}).get("revision") or
              ((state.get("operation") or {}).get("sync") or {}).get("revision")) if running else None
    automated = (spec.get("syncPolicy") or {}).get("automated")
    auto_sync = bool(automated) and automated.get("enabled", True) is not False
    return Application(name, (status.get("sync") or {}).get("revision"), tuple(history), running, target,
                       auto_sync, (status.get("health") or {}).get("status"))


class ArgoCDClient:
    """GET an application, POST its rollback; counts write requests (``writes``) for idempotency checks."""

    def __init__(self, url: str, token: str | None, *, timeout: float = DEFAULT_TIMEOUT, read_only: bool = False,
                 token_source: str = "argocd.token") -> None:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise ArgoCDError("--argocd-url must not carry credentials (user:password@): the token is argocd.token")
        if parts.scheme != "https" or not parts.hostname:
            raise ArgoCDError(f"--argocd-url must be an https:// URL (got {url!r})")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.read_only = read_only
        self.token_source = token_source
        self.writes = 0
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["Accept"] = "application/json"
        # The CA that signed ArgoCD's certificate: SSL_CERT_FILE, as for PagerDuty. Given with each request,
        # or requests would prefer $REQUESTS_CA_BUNDLE to it.
        self.verify: str | bool = os.environ.get("SSL_CERT_FILE") or True

    def close(self) -> None:
        self.session.close()

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        try:
            answer = self.session.request(method, self.url + path, timeout=self.timeout, verify=self.verify,
                                          **kwargs)
        except requests.exceptions.SSLError:
            raise ArgoCDError(f"ArgoCD at {self.url}: TLS verification failed (set SSL_CERT_FILE to the CA file "
                              "that signed its certificate)") from None
        except requests.exceptions.RequestException as exc:
            raise ArgoCDError(f"could not reach ArgoCD at {self.url} for {what} ({type(exc).__name__})") from None
        if answer.status_code == 200:
            try:
                return answer.json()
            except ValueError:
                raise ArgoCDError(f"ArgoCD answered {what} with HTTP 200 and a body that is not JSON") from None
        raise ArgoCDError(self._explain(answer, what))

    def _explain(self, answer: requests.Response, what: str) -> str:
        try:
            body = answer.json()
            said = str(body.get("message") or body.get("error") or "").strip()
        except (ValueError, AttributeError):
            said = ""
        status = answer.status_code
        if status == 401:
            return f"ArgoCD rejected the token from {self.token_source} for {what} (HTTP 401: {said or 'unauthenticated'})"
        if status == 403:
            return (f"ArgoCD refused {what} (HTTP 403: {said or 'permission denied'}): the token's account needs "
                    "'get' and 'sync' on the application, or no such application exists (ArgoCD does not say which)")
        if "another operation is already in progress" in said:
            return f"ArgoCD refused {what}: a sync is already in progress; run the rollback again when it has finished"
        if "auto-sync is enabled" in said:
            return (f"ArgoCD refused {what}: auto-sync is enabled on the application, and it would sync straight back "
                    "to the bad revision; turn automated sync off first")
        return f"ArgoCD answered {what} with HTTP {status}" + (f": {said}" if said else "")

    def application(self, name: str) -> Application:
        """The application ``name`` (its sync history and whether an operation runs)."""
        return parse_application(name, self._call("GET", f"/api/v1/applications/{quote(name, safe='')}",
                                                  f"reading application {name}"))

    def rollback(self, name: str, history_id: int) -> Application:
        """Ask ArgoCD to sync ``name`` back to history entry ``history_id``; returns the application it answers."""
        if self.read_only:
            raise ReadOnlyViolation(f"dry run tried to roll back {name}")
        self.writes += 1
        body = {"name": name, "id": history_id, "prune": False, "dryRun": False}
        return parse_application(name, self._call("POST", f"/api/v1/applications/{quote(name, safe='')}/rollback",
                                                  f"the rollback of {name} to history id {history_id}", json=body))
