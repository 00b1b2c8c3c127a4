"""A stateful fake of the Kubernetes API server's custom-object endpoints, over TLS on 127.0.0.1.

There is no cluster here. This serves the calls nthlayer's operator makes — list (with a label selector),
get, create, replace, delete, and merge-patch of the status subresource of namespaced custom objects —
and what kopf's watch loop needs around them (discovery, watch streams, merge and JSON patches,
finalizers, events), with the API server's semantics where they matter to a controller:

- a bearer token is required (401 otherwise);
- every body is validated against its kind's CRD (the vendored Prometheus Operator CRDs and our
  deploy/crd.yaml, through generators.crd_schema): 422 ``Invalid`` as the server would answer;
- names are unique per kind and namespace (409 ``AlreadyExists``); a replace must carry the
  ``resourceVersion`` it read (409 ``Conflict`` on a lost update); ``generation`` grows on spec changes;
- with a status subresource, the main endpoint ignores ``status`` and ``/status`` changes only it;
- a delete of an object with finalizers only marks it (``deletionTimestamp``); it goes when they are gone;
- watches stream every change after the ``resourceVersion`` they start from, as JSON lines.

Not served: other API groups, field selectors, and the garbage collector (a separate controller in a real
cluster; the operator deletes what it owns itself, and the tests check it does).
"""
from __future__ import annotations

import copy
import itertools
import json
import queue
import re
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from generators.crd_schema import CrdValidator
from tests.k8s_patches import json_patch, merge_patch, refusal
from tests.tls_fake import make_certificate, wrap_tls

_PATH = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
                   r"(?:/(?P<name>[^/]+)(?:/(?P<sub>status))?)?$")


class _Kind:
    def __init__(self, crd: dict[str, Any], version: str) -> None:
        self.validator = CrdValidator(crd, version)
        self.kind = crd["spec"]["names"]["kind"]
        entry = next(v for v in crd["spec"]["versions"] if v["name"] == version)
        self.has_status = "status" in entry.get("subresources", {})


class FakeKubernetes:
    """``with FakeKubernetes(token, tmp_dir, crds) as fake:`` serves at ``fake.url`` (CA: ``fake.ca_file``)."""

    def __init__(self, token: str, cert_dir: str, crds: list[tuple[dict[str, Any], str]],
                 namespaces: tuple[str, ...] = ("default",)) -> None:
        self.token = token
        self.namespaces = namespaces
        self.kinds: dict[tuple[str, str, str], _Kind] = {}
        for crd, version in crds:
            self.kinds[(crd["spec"]["group"], version, crd["spec"]["names"]["plural"])] = _Kind(crd, version)
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.events: list[dict[str, Any]] = []  # Kubernetes Events posted (kopf's logs)
        self.log: list[tuple[int, tuple[str, str, str], dict[str, Any]]] = []  # (rv, where, watch event)
        self.watchers: list[tuple[tuple[str, str, str], queue.Queue[Any]]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._versions = itertools.count(1)
        cert, key = make_certificate(cert_dir, "nthlayer test Kubernetes API")
        self.ca_file = cert
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = wrap_tls(self.server, cert, key)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeKubernetes":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
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
               body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
        if auth != f"Bearer {self.token}":
            return refusal(401, "Unauthorized", "Unauthorized")
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                return refusal(400, "BadRequest", "the body is not JSON")
        discovered = self._discovery(method, path, payload)
        if discovered is not None:
            return discovered
        match = _PATH.match(path)
        if match is None:
            return refusal(404, "NotFound", "the server could not find the requested resource")
        group, version, ns, plural = match["group"], match["version"], unquote(match["ns"]), match["plural"]
        name = unquote(match["name"]) if match["name"] else None
        kind = self.kinds.get((group, version, plural))
        if kind is None:
            return refusal(404, "NotFound", "the server could not find the requested resource")
        with self.lock:
            return self._route(method, kind, f"{group}/{version}", plural, ns, name, match["sub"], query, payload,
                               content_type)

    def _discovery(self, method: str, path: str, payload: Any) -> tuple[int, Any] | None:
        """/version, /api, /apis and each group version's resources; Events (kopf posts them)."""
        if method == "GET" and path == "/version":
            return 200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-nthlayer-fake"}
        if method == "GET" and path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if method == "GET" and path == "/api/v1":
            return 200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event",
                 "verbs": ["create", "get", "list"]},
                {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
                 "verbs": ["get", "list", "watch"]}]}
        if method == "GET" and path == "/api/v1/namespaces":  # kopf lists them (watch: _stream, no events)
            return 200, {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "0"},
                         "items": [{"metadata": {"name": name}} for name in self.namespaces]}
        if method == "POST" and re.fullmatch(r"/api/v1/namespaces/[^/]+/events", path):
            with self.lock:
                self.events.append(payload)
            return 201, payload
        groups: dict[str, list[str]] = {}
        for group, version, _ in self.kinds:
            groups.setdefault(group, []).append(version)
        if method == "GET" and path == "/apis":
            return 200, {"kind": "APIGroupList", "groups": [
                {"name": group, "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                 "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]}}
                for group, versions in sorted(groups.items())]}
        match = re.fullmatch(r"/apis/([^/]+)/([^/]+)", path)
        if method == "GET" and match:
            resources = []
            for (group, version, plural), kind in sorted(self.kinds.items()):
                if (group, version) != match.groups():
                    continue
                verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
                resources.append({"name": plural, "singularName": kind.kind.lower(), "namespaced": True,
                                  "kind": kind.kind, "verbs": verbs})
                if kind.has_status:
                    resources.append({"name": f"{plural}/status", "singularName": "", "namespaced": True,
                                      "kind": kind.kind, "verbs": ["get", "patch", "update"]})
            if not resources:
                return refusal(404, "NotFound", "the server could not find the requested resource")
            return 200, {"kind": "APIResourceList", "groupVersion": "/".join(match.groups()), "resources": resources}
        return None

    def _route(self, method: str, kind: _Kind, api_version: str, plural: str, ns: str, name: str | None,
               sub: str | None, query: dict[str, list[str]], payload: Any, content_type: str) -> tuple[int, Any]:
        key = (api_version, plural, ns, name or "")
        if name is None:
            if method == "GET":
                return 200, self._list(kind, api_version, plural, ns, query)
            if method == "POST":
                return self._create(kind, api_version, plural, ns, payload)
            return refusal(405, "MethodNotAllowed", method)
        current = self.objects.get(key)
        if current is None:
            return refusal(404, "NotFound", f'{plural}.{api_version.split("/")[0]} "{name}" not found')
        if method == "GET":
            return 200, copy.deepcopy(current)
        if method == "DELETE":
            if current["metadata"].get("finalizers"):  # marked; it goes when the finalizers are gone
                if "deletionTimestamp" not in current["metadata"]:
                    updated = copy.deepcopy(current)
                    updated["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z"
                    self._store(key, updated)
                return 200, copy.deepcopy(self.objects[key])
            self._remove(key)
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if method == "PUT" and sub is None:
            return self._replace(kind, key, current, payload)
        if method == "PATCH" and (sub is None or (sub == "status" and kind.has_status)):
            return self._patch(kind, key, current, payload, content_type, sub == "status")
        return refusal(405, "MethodNotAllowed", method)

    def _store(self, key: tuple[str, str, str, str], obj: dict[str, Any], created: bool = False) -> dict[str, Any]:
        """Keep ``obj`` under a new resourceVersion and tell the watchers; an object marked for deletion
        whose finalizers are all gone is deleted instead."""
        meta = obj["metadata"]
        if "deletionTimestamp" in meta and not meta.get("finalizers"):
            self.objects[key] = obj
            self._remove(key)
            return obj
        version = next(self._versions)
        meta["resourceVersion"] = str(version)
        self.objects[key] = obj
        self._event(version, key, "ADDED" if created else "MODIFIED", obj)
        return obj

    def _remove(self, key: tuple[str, str, str, str]) -> None:
        obj = self.objects.pop(key)
        version = next(self._versions)
        obj["metadata"]["resourceVersion"] = str(version)
        self._event(version, key, "DELETED", obj)

    def _event(self, version: int, key: tuple[str, str, str, str], kind: str, obj: dict[str, Any]) -> None:
        event = {"type": kind, "object": copy.deepcopy(obj)}
        self.log.append((version, key[:3], event))
        for where, inbox in self.watchers:
            if where == key[:3]:
                inbox.put(event)

    def watch(self, where: tuple[str, str, str], since: int) -> queue.Queue[Any]:
        """A queue of the watch events at ``where`` after resourceVersion ``since`` (past ones first)."""
        inbox: queue.Queue[Any] = queue.Queue()
        with self.lock:
            for version, place, event in self.log:
                if place == where and version > since:
                    inbox.put(event)
            self.watchers.append((where, inbox))
        return inbox

    def unwatch(self, inbox: queue.Queue[Any]) -> None:
        with self.lock:
            self.watchers = [(w, q) for w, q in self.watchers if q is not inbox]

    def _patch(self, kind: _Kind, key: tuple[str, str, str, str], current: dict[str, Any], payload: Any,
               content_type: str, status: bool) -> tuple[int, Any]:
        try:
            if content_type == "application/merge-patch+json":
                updated = merge_patch(current, payload)
            elif content_type == "application/json-patch+json":
                updated = json_patch(current, payload)
            else:
                return refusal(415, "UnsupportedMediaType", f"{content_type} is not served")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return refusal(422, "Invalid", f"the patch does not apply: {exc}")
        if kind.has_status:  # each endpoint changes its own part only
            if status:
                updated = {**copy.deepcopy(current), "status": updated.get("status")}
                if updated["status"] is None:
                    updated.pop("status")
            else:
                updated["status"] = copy.deepcopy(current.get("status"))
                if updated["status"] is None:
                    updated.pop("status")
        for field in ("uid", "creationTimestamp", "generation", "name", "namespace"):
            updated["metadata"][field] = current["metadata"][field]
        problems = kind.validator.problems(updated)
        if problems:
            return refusal(422, "Invalid", "; ".join(problems))
        if updated.get("spec") != current.get("spec"):
            updated["metadata"]["generation"] = current["metadata"]["generation"] + 1
        return 200, copy.deepcopy(self._store(key, updated))

    def _list(self, kind: _Kind, api_version: str, plural: str, ns: str, query: dict[str, list[str]]) -> dict[str, Any]:
        wanted: dict[str, str] = {}
        for selector in query.get("labelSelector", []):
            for term in filter(None, selector.split(",")):
                label, _, value = term.partition("=")
                wanted[label] = value
        items = [copy.deepcopy(o) for (v, p, n, _), o in sorted(self.objects.items())
                 if (v, p, n) == (api_version, plural, ns)
                 and all(o["metadata"].get("labels", {}).get(k) == val for k, val in wanted.items())]
        latest = self.log[-1][0] if self.log else 0
        return {"apiVersion": api_version, "kind": f"{kind.kind}List", "metadata": {"resourceVersion": str(latest)},
                "items": items}

    def _checked(self, kind: _Kind, api_version: str, ns: str, payload: Any) -> tuple[int, Any] | None:
        if not isinstance(payload, dict) or payload.get("apiVersion") != api_version or payload.get("kind") != kind.kind:
            return refusal(400, "BadRequest", "the body's apiVersion and kind do not match the URL")
        meta = payload.setdefault("metadata", {})
        if meta.setdefault("namespace", ns) != ns:
            return refusal(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                              "sent on the request")
        problems = kind.validator.problems(payload)
        if problems:
            return refusal(422, "Invalid", f'{kind.kind} "{meta.get("name")}" is invalid: ' + "; ".join(problems))
        return None

    def _create(self, kind: _Kind, api_version: str, plural: str, ns: str, payload: Any) -> tuple[int, Any]:
        refused = self._checked(kind, api_version, ns, payload)
        if refused:
            return refused
        meta = payload["metadata"]
        key = (api_version, plural, ns, meta["name"])
        if key in self.objects:
            return refusal(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists')
        obj = copy.deepcopy(payload)
        if kind.has_status:
            obj.pop("status", None)
        obj["metadata"].update(uid=str(uuid.uuid4()), generation=1, creationTimestamp="2026-01-01T00:00:00Z")
        return 201, copy.deepcopy(self._store(key, obj, created=True))

    def _replace(self, kind: _Kind, key: tuple[str, str, str, str], current: dict[str, Any],
                 payload: Any) -> tuple[int, Any]:
        refused = self._checked(kind, key[0], key[2], payload)
        if refused:
            return refused
        meta = payload["metadata"]
        if meta.get("name") != key[3]:
            return refusal(400, "BadRequest", "the name of the object does not match the name on the URL")
        if meta.get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return refusal(409, "Conflict", "the object has been modified; please apply your changes to the "
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
        return 200, copy.deepcopy(self._store(key, obj))


def _handler(fake: FakeKubernetes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if method == "GET" and query.get("watch") == ["true"] and (_PATH.match(url.path) or url.path == "/api/v1/namespaces") \
                    and self.headers.get("Authorization") == f"Bearer {fake.token}":
                self._stream(url.path, query)
                return
            status, answer = fake.handle(method, url.path, query, self.headers.get("Authorization"), body,
                                         self.headers.get("Content-Type", "application/json"))
            with fake.lock:
                fake.requests.append((method, url.path, status))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, path: str, query: dict[str, list[str]]) -> None:
            """A watch: one JSON line per event, chunked, until timeoutSeconds or the server stops."""
            match = _PATH.match(path)
            if match is not None and match["name"]:
                self.send_error(404)
                return
            # Namespaces never change here: their watch gets no events.
            where = (f"{match['group']}/{match['version']}", match["plural"], unquote(match["ns"])) if match \
                else ("v1", "namespaces", "")
            since = int((query.get("resourceVersion") or ["0"])[0] or 0)
            deadline = time.monotonic() + float((query.get("timeoutSeconds") or ["60"])[0])
            inbox = fake.watch(where, since)
            with fake.lock:
                fake.requests.append(("WATCH", path, 200))
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                while not fake.stopping.is_set() and time.monotonic() < deadline:
                    try:
                        event = inbox.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                pass
            finally:
                fake.unwatch(inbox)
                self.close_connection = True

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
