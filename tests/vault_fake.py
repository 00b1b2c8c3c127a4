"""A stateful fake of the HashiCorp Vault HTTP API subset nthlayer uses, over TLS on 127.0.0.1.

KV version 2 reads (``GET /v1/<mount>/data/<path>[?version=N]``) with version history, AppRole login
(``POST /v1/auth/approle/login``), tokens checked on every read (``X-Vault-Token``), policies that allow
reading some paths and not others (403 ``permission denied``), namespaces (``X-Vault-Namespace``: a token
and a secret live in one). Login bodies are checked against Vault's published OpenAPI
(tests/fixtures/vault/openapi-subset.json) and so are the read answers it gives.
"""
from __future__ import annotations

import fnmatch
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from tls_fake import TlsFake

OPENAPI = json.loads((Path(__file__).parent / "fixtures" / "vault" / "openapi-subset.json").read_text())


def _schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}", "components": OPENAPI["components"]}


LOGIN = jsonschema.Draft4Validator(_schema("AppRoleLoginRequest"))
READ = jsonschema.Draft4Validator(_schema("KvV2ReadResponse"))
CREATED = "2026-01-02T03:04:05.000000Z"


@dataclass
class Token:
    policies: list[str]  # glob patterns of readable API paths, such as "secret/data/pagerduty*"
    namespace: str = ""


@dataclass
class Role:
    secret_id: str
    policies: list[str]
    namespace: str = ""


@dataclass
class FakeVault(TlsFake):
    cert_dir: str
    secrets: dict[tuple[str, str, str], list[dict[str, Any] | None]] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    logins: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.serve(self.cert_dir, "nthlayer test Vault")


    # -- seeding
    def put(self, mount: str, path: str, data: dict[str, Any], namespace: str = "") -> int:
        """Write a new version of a secret; returns its version number."""
        versions = self.secrets.setdefault((namespace, mount, path), [])
        versions.append(dict(data))
        return len(versions)

    def destroy(self, mount: str, path: str, version: int, namespace: str = "") -> None:
        self.secrets[(namespace, mount, path)][version - 1] = None

    def add_token(self, policies: list[str], namespace: str = "") -> str:
        token = "hvs." + secrets.token_urlsafe(18)
        self.tokens[token] = Token(policies, namespace)
        return token

    def add_role(self, policies: list[str], namespace: str = "") -> tuple[str, str]:
        role_id, secret_id = str(uuid.uuid4()), str(uuid.uuid4())
        self.roles[role_id] = Role(secret_id, policies, namespace)
        return role_id, secret_id

    # -- requests
    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> tuple[int, Any]:
        namespace = (headers.get("X-Vault-Namespace") or "").strip("/")
        if not path.startswith("/v1/"):
            return 404, {"errors": []}
        api_path = path[len("/v1/"):]
        if method in ("POST", "PUT") and api_path == "auth/approle/login":
            return self._login(namespace, body)
        if method == "GET":
            return self._read(namespace, api_path, query, headers.get("X-Vault-Token"))
        return 405, {"errors": [f"unsupported operation {method} {api_path}"]}

    def _login(self, namespace: str, body: bytes) -> tuple[int, Any]:
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return 400, {"errors": ["failed to parse JSON input"]}
        try:
            LOGIN.validate(payload)
        except jsonschema.ValidationError as exc:
            return 400, {"errors": [f"request body does not match AppRoleLoginRequest: {exc.message}"]}
        unknown = set(payload) - set(OPENAPI["components"]["schemas"]["AppRoleLoginRequest"]["properties"])
        if unknown:
            return 400, {"errors": [f"unknown fields: {', '.join(sorted(unknown))}"]}
        role = self.roles.get(payload.get("role_id") or "")
        if not payload.get("role_id"):
            return 400, {"errors": ["missing role_id"]}
        if role is None or role.namespace != namespace or role.secret_id != payload.get("secret_id"):
            return 400, {"errors": ["invalid role or secret ID"]}
        with self.lock:
            self.logins += 1
        token = self.add_token(role.policies, namespace)
        return 200, {"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False, "lease_duration": 0,
                     "data": None, "wrap_info": None, "warnings": None,
                     "auth": {"client_token": token, "accessor": secrets.token_urlsafe(8), "policies": ["default"],
                              "token_policies": ["default"], "metadata": {"role_name": "nthlayer"},
                              "lease_duration": 3600, "renewable": True, "entity_id": "",
                              "token_type": "service", "orphan": True}}

    def _read(self, namespace: str, api_path: str, query: dict[str, list[str]], token: str | None) -> tuple[int, Any]:
        holder = self.tokens.get(token or "")
        if holder is None or holder.namespace != namespace:
            return 403, {"errors": ["permission denied"]}
        if not any(fnmatch.fnmatchcase(api_path, pattern) for pattern in holder.policies):
            return 403, {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}
        mount, sep, rest = api_path.partition("/data/")
        if not sep or not rest:
            return 404, {"errors": []}
        version_text = query.get("version", ["0"])[0]
        if not version_text.isdigit():
            return 400, {"errors": ["version must be an integer"]}
        versions = self.secrets.get((namespace, mount, rest))
        if not versions:
            return 404, {"errors": []}
        version = int(version_text) or len(versions)
        if version > len(versions) or versions[version - 1] is None:
            return 404, {"errors": []}
        answer = {"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False, "lease_duration": 0,
                  "data": {"data": dict(versions[version - 1]),
                           "metadata": {"created_time": CREATED, "custom_metadata": None, "deletion_time": "",
                                        "destroyed": False, "version": version}},
                  "wrap_info": None, "warnings": None, "auth": None}
        READ.validate(answer["data"])  # the fake holds itself to the published shape
        return 200, answer
