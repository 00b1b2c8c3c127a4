"""A stateful fake of ArgoCD's two application endpoints nthlayer uses, over TLS on 127.0.0.1.

``GET /api/v1/applications/{name}`` and ``POST /api/v1/applications/{name}/rollback``. Rollback bodies are
checked against ArgoCD's published swagger (tests/fixtures/argocd/swagger.json, v3.5.1), and every
application it answers with is too. Errors are ArgoCD's own, as its server code of that release words them
and grpc-gateway maps them to HTTP (tests/fixtures/argocd/README.md).
"""
from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema

from tls_fake import TlsFake

SWAGGER = json.loads((Path(__file__).parent / "fixtures" / "argocd" / "swagger.json").read_text())


def _schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/definitions/{name}", "definitions": SWAGGER["definitions"]}


ROLLBACK = jsonschema.Draft4Validator(_schema("applicationApplicationRollbackRequest"))
APPLICATION = jsonschema.Draft4Validator(_schema("v1alpha1Application"))
PREFIX = "/api/v1/applications/"


def _error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": message, "code": code, "message": message, "details": []}


@dataclass
class FakeArgoCD(TlsFake):
    cert_dir: str
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, set[str]] = field(default_factory=dict)  # token → apps it may get and sync
    finish_operations: bool = True  # the controller completes a rollback at once (else it stays Running)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)  # every accepted rollback body

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.serve(self.cert_dir, "nthlayer test ArgoCD")


    # -- seeding
    def add_token(self, apps: set[str]) -> str:
        token = "argocd." + secrets.token_urlsafe(24)
        self.tokens[token] = set(apps)
        return token

    def add_app(self, name: str, revisions: list[str], auto_sync: bool = False) -> None:
        """An application deployed at each of ``revisions`` in turn (history ids 1, 2, …), now at the last."""
        history = [{"id": i, "revision": rev, "deployedAt": f"2026-01-0{min(i, 9)}T10:00:00Z",
                    "deployStartedAt": f"2026-01-0{min(i, 9)}T09:59:00Z",
                    "source": {"repoURL": "https://git.example.com/deploy.git", "path": name, "targetRevision": rev}}
                   for i, rev in enumerate(revisions, start=1)]
        spec: dict[str, Any] = {"project": "default", "source": {"repoURL": "https://git.example.com/deploy.git",
                                                                 "path": name, "targetRevision": "HEAD"},
                                "destination": {"server": "https://kubernetes.default.svc", "namespace": name}}
        if auto_sync:
            spec["syncPolicy"] = {"automated": {"prune": True, "selfHeal": True}}
        self.apps[name] = {
            "metadata": {"name": name, "namespace": "argocd", "resourceVersion": "1"},
            "spec": spec,
            "status": {"sync": {"status": "Synced", "revision": revisions[-1] if revisions else ""},
                       "health": {"status": "Healthy"}, "history": history},
        }

    def start_sync(self, name: str, revision: str) -> None:
        """An operation under way on ``name`` (someone else's sync)."""
        app = self.apps[name]
        app["operation"] = {"sync": {"revision": revision}, "initiatedBy": {"username": "someone"}}
        app["status"]["operationState"] = {"phase": "Running", "operation": app["operation"],
                                           "startedAt": "2026-01-09T10:00:00Z"}

    def finish(self, name: str) -> None:
        """The controller finishes the operation on ``name``: synced to its revision, one more history entry."""
        app = self.apps[name]
        op = app.pop("operation")
        revision = op["sync"]["revision"]
        history = app["status"]["history"]
        history.append({"id": max((h["id"] for h in history), default=0) + 1, "revision": revision,
                        "deployedAt": "2026-01-09T10:01:00Z", "deployStartedAt": "2026-01-09T10:00:00Z",
                        "source": op["sync"].get("source") or app["spec"]["source"]})
        app["status"]["sync"] = {"status": "Synced", "revision": revision}
        app["status"]["operationState"] = {"phase": "Succeeded", "operation": op, "message": "successfully synced",
                                           "startedAt": "2026-01-09T10:00:00Z", "finishedAt": "2026-01-09T10:01:00Z"}

    # -- requests
    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> tuple[int, Any]:
        auth = headers.get("Authorization") or ""
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        if token not in self.tokens:
            return _error(401, 16, "invalid session: token signature is invalid")
        if not path.startswith(PREFIX):
            return _error(404, 5, "Not Found")
        rest = path[len(PREFIX):].split("/")
        name = unquote(rest[0])
        with self.lock:
            if name not in self.tokens[token] or name not in self.apps:
                return _error(403, 7, "permission denied")  # ArgoCD does not reveal whether the app exists
            if method == "GET" and len(rest) == 1:
                return 200, self._view(name)
            if method == "POST" and rest[1:] == ["rollback"]:
                return self._rollback(name, body)
        return _error(404, 5, "Not Found")

    def _view(self, name: str) -> dict[str, Any]:
        view = json.loads(json.dumps(self.apps[name]))
        APPLICATION.validate(view)  # the fake holds itself to the published shape
        return view

    def _rollback(self, name: str, body: bytes) -> tuple[int, Any]:
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, 3, "invalid character in request body")
        try:
            ROLLBACK.validate(payload)
        except jsonschema.ValidationError as exc:
            return _error(400, 3, f"body does not match applicationApplicationRollbackRequest: {exc.message}")
        known = set(SWAGGER["definitions"]["applicationApplicationRollbackRequest"]["properties"])
        if not isinstance(payload, dict) or set(payload) - known:
            return _error(400, 3, f"unknown field {sorted(set(payload) - known)[0]!r}")
        if payload.get("name", name) != name:
            return _error(400, 3, "body name differs from the path's")
        app = self.apps[name]
        if app["spec"].get("syncPolicy", {}).get("automated"):
            return _error(400, 9, "rollback cannot be initiated when auto-sync is enabled")
        entry = next((h for h in app["status"]["history"] if h["id"] == payload.get("id", 0)), None)
        if entry is None:
            return _error(400, 3, f"application {name} does not have deployment with id {payload.get('id', 0)}")
        if app.get("operation"):
            return _error(400, 9, "another operation is already in progress")
        self.rollbacks.append(payload)
        app["operation"] = {"sync": {"revision": entry["revision"], "source": entry["source"],
                                     "prune": bool(payload.get("prune")), "dryRun": bool(payload.get("dryRun"))},
                            "initiatedBy": {"username": "nthlayer"}}
        app["status"]["operationState"] = {"phase": "Running", "operation": app["operation"],
                                           "startedAt": "2026-01-09T10:00:00Z"}
        answer = self._view(name)
        if self.finish_operations:
            self.finish(name)
        return 200, answer
