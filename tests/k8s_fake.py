"""A stateful fake of the Kubernetes API server's custom-object endpoints, over TLS on 127.0.0.1.

There is no cluster here. This serves the calls nthlayer's operator makes — list (with a label selector),
get, create, replace, delete, and merge-patch of the status subresource of namespaced custom objects —
with the API server's semantics where they matter to a controller:

- a bearer token is required (401 otherwise);
- every body is validated against its kind's CRD (the vendored Prometheus Operator CRDs and our
  deploy/crd.yaml, through generators.crd_schema): 422 ``Invalid`` as the server would answer;
- names are unique per kind and namespace (409 ``AlreadyExists``); a replace must carry the
  ``resourceVersion`` it read (409 ``Conflict`` on a lost update); ``generation`` grows on spec changes;
- with a status subresource, the main endpoint ignores ``status`` and ``/status`` changes only it.

Not served: watches, discovery, and the garbage collector (a separate controller in a real cluster; the
operator deletes what it owns itself, and the tests check it does).
"""
from __future__ import annotations

import copy
import itertools
import json
import re
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from generators.crd_schema import CrdValidator
from tests.pagerduty_fake import make_certificate

_PATH = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
                   r"(?:/(?P<name>[^/]+)(?:/(?P<sub>status))?)?$")


class _Kind:
    def __init__(self, crd: dict[str, Any], version: str) -> None:
        self.validator = CrdValidator(crd, version)
        self.kind = crd["spec"]["names"]["kind"]
        entry = next(v for v in crd["spec"]["versions"] if v["name"] == version)
        self.has_status = "status" in entry.get("subresources", {})


def _status(code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                  "message": message, "code": code}


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


class FakeKubernetes:
    """``with FakeKubernetes(token, tmp_dir, crds) as fake:`` serves at ``fake.url`` (CA: ``fake.ca_file``)."""

    def __init__(self, token: str, cert_dir: str, crds: list[tuple[dict[str, Any], str]]) -> None:
        self.token = token
        self.kinds: dict[tuple[str, str, str], _Kind] = {}
        for crd, version in crds:
            self.kinds[(crd["spec"]["group"], version, crd["spec"]["names"]["plural"])] = _Kind(crd, version)
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self._versions = itertools.count(1)
        cert, key = make_certificate(cert_dir)
        self.ca_file = cert
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeKubernetes":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what tests look at ---------------------------------------------------------------------
    def all(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(o) for o in self.objects.values() if o["kind"] == kind]

    def writes(self) -> list[tuple[str, str, int]]:
        with self.lock:
            return [r for r in self.requests if r[0] != "GET"]

    def put_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """An object created by someone else (kubectl, Flux): stored as the server would store it."""
        group, version = obj["apiVersion"].split("/")
        plural = next(p for (g, v, p), k in self.kinds.items() if (g, v) == (group, version) and k.kind == obj["kind"])
        code, answer = self.handle("POST", f"/apis/{group}/{version}/namespaces/{obj['metadata']['namespace']}/{plural}",
                                   {}, f"Bearer {self.token}", json.dumps(obj).encode())
        assert code == 201, answer
        return answer

    # --- the API ----------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, list[str]], auth: str | None,
               body: bytes) -> tuple[int, Any]:
        if auth != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        match = _PATH.match(path)
        if match is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        group, version, ns, plural = match["group"], match["version"], unquote(match["ns"]), match["plural"]
        name = unquote(match["name"]) if match["name"] else None
        kind = self.kinds.get((group, version, plural))
        if kind is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                return _status(400, "BadRequest", "the body is not JSON")
        with self.lock:
            return self._route(method, kind, f"{group}/{version}", plural, ns, name, match["sub"], query, payload)

    def _route(self, method: str, kind: _Kind, api_version: str, plural: str, ns: str, name: str | None,
               sub: str | None, query: dict[str, list[str]], payload: Any) -> tuple[int, Any]:
        key = (api_version, plural, ns, name or "")
        if name is None:
            if method == "GET":
                return 200, self._list(kind, api_version, plural, ns, query)
            if method == "POST":
                return self._create(kind, api_version, plural, ns, payload)
            return _status(405, "MethodNotAllowed", method)
        current = self.objects.get(key)
        if current is None:
            return _status(404, "NotFound", f'{plural}.{api_version.split("/")[0]} "{name}" not found')
        if method == "GET":
            return 200, copy.deepcopy(current)
        if method == "DELETE":
            del self.objects[key]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if method == "PUT" and sub is None:
            return self._replace(kind, key, current, payload)
        if method == "PATCH" and sub == "status" and kind.has_status:
            updated = copy.deepcopy(current)
            updated["status"] = _merge_patch(current.get("status", {}), (payload or {}).get("status", {}))
            problems = kind.validator.problems(updated)
            if problems:
                return _status(422, "Invalid", "; ".join(problems))
            updated["metadata"]["resourceVersion"] = str(next(self._versions))
            self.objects[key] = updated
            return 200, copy.deepcopy(updated)
        return _status(405, "MethodNotAllowed", method)

    def _list(self, kind: _Kind, api_version: str, plural: str, ns: str, query: dict[str, list[str]]) -> dict[str, Any]:
        wanted: dict[str, str] = {}
        for selector in query.get("labelSelector", []):
            for term in filter(None, selector.split(",")):
                label, _, value = term.partition("=")
                wanted[label] = value
        items = [copy.deepcopy(o) for (v, p, n, _), o in sorted(self.objects.items())
                 if (v, p, n) == (api_version, plural, ns)
                 and all(o["metadata"].get("labels", {}).get(k) == val for k, val in wanted.items())]
        return {"apiVersion": api_version, "kind": f"{kind.kind}List", "metadata": {"resourceVersion": "1"},
                "items": items}

    def _checked(self, kind: _Kind, api_version: str, ns: str, payload: Any) -> tuple[int, Any] | None:
        if not isinstance(payload, dict) or payload.get("apiVersion") != api_version or payload.get("kind") != kind.kind:
            return _status(400, "BadRequest", "the body's apiVersion and kind do not match the URL")
        meta = payload.setdefault("metadata", {})
        if meta.setdefault("namespace", ns) != ns:
            return _status(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                              "sent on the request")
        problems = kind.validator.problems(payload)
        if problems:
            return _status(422, "Invalid", f'{kind.kind} "{meta.get("name")}" is invalid: ' + "; ".join(problems))
        return None

    def _create(self, kind: _Kind, api_version: str, plural: str, ns: str, payload: Any) -> tuple[int, Any]:
        refused = self._checked(kind, api_version, ns, payload)
        if refused:
            return refused
        meta = payload["metadata"]
        key = (api_version, plural, ns, meta["name"])
        if key in self.objects:
            return _status(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists')
        obj = copy.deepcopy(payload)
        if kind.has_status:
            obj.pop("status", None)
        obj["metadata"].update(uid=str(uuid.uuid4()), resourceVersion=str(next(self._versions)), generation=1,
                               creationTimestamp="2026-01-01T00:00:00Z")
        self.objects[key] = obj
        return 201, copy.deepcopy(obj)

    def _replace(self, kind: _Kind, key: tuple[str, str, str, str], current: dict[str, Any],
                 payload: Any) -> tuple[int, Any]:
        refused = self._checked(kind, key[0], key[2], payload)
        if refused:
            return refused
        meta = payload["metadata"]
        if meta.get("name") != key[3]:
            return _status(400, "BadRequest", "the name of the object does not match the name on the URL")
        if meta.get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return _status(409, "Conflict", "the object has been modified; please apply your changes to the "
                                            "latest version and try again")
        obj = copy.deepcopy(payload)
        if kind.has_status:
            obj["status"] = copy.deepcopy(current.get("status"))
            if obj["status"] is None:
                obj.pop("status")
        for field in ("uid", "creationTimestamp", "generation"):
            obj["metadata"][field] = current["metadata"][field]
        if obj.get("spec") != current.get("spec"):
            obj["metadata"]["generation"] = current["metadata"]["generation"] + 1
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[key] = obj
        return 200, copy.deepcopy(obj)


def _handler(fake: FakeKubernetes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if method == "PATCH" and self.headers.get("Content-Type") != "application/merge-patch+json":
                status, answer = _status(415, "UnsupportedMediaType", "only merge patches are served")
            else:
                status, answer = fake.handle(method, url.path, parse_qs(url.query), self.headers.get("Authorization"),
                                             body)
            with fake.lock:
                fake.requests.append((method, url.path, status))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
