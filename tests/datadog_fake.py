"""A stateful fake of the Datadog API subset setup-datadog uses, over TLS on 127.0.0.1.

Every request body is checked against the request schemas of Datadog's published OpenAPI definitions
(tests/fixtures/datadog/request-schemas.json, vendored with its version and licence noted) and rejected with
a Datadog-style 400 ``{"errors": [...]}`` when invalid. The fake is stricter than those schemas in one way:
a property the definition does not declare is rejected too (a typo must not pass silently). Keys are checked
(``DD-API-KEY``/``DD-APPLICATION-KEY``: 403 "Forbidden", as Datadog answers), and failures can be injected:
401/403/429 with Datadog's rate-limit headers, 5xx, and "created, then failed" 500s.
"""
from __future__ import annotations

import itertools
import json
import re
import threading
from pathlib import Path
from typing import Any

import jsonschema

from tls_fake import Fault, TlsFake

SCHEMAS = json.loads((Path(__file__).parent / "fixtures" / "datadog" / "request-schemas.json").read_text())
# Datadog's rate-limit headers, as its API reference describes them.
RATE_LIMIT_HEADERS = {"X-RateLimit-Limit": "100", "X-RateLimit-Period": "10", "X-RateLimit-Remaining": "0",
                      "X-RateLimit-Reset": "0", "X-RateLimit-Name": "slo_create"}


class ApiError(Exception):
    def __init__(self, status: int, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.status, self.errors = status, errors


def _undeclared(schema: dict[str, Any], value: Any, where: str = "") -> list[str]:
    """Properties of ``value`` its schema does not declare (following oneOf to the branch that fits)."""
    if "oneOf" in schema:
        fitting = [s for s in schema["oneOf"] if jsonschema.Draft202012Validator(s).is_valid(value)]
        return _undeclared(fitting[0], value, where) if len(fitting) == 1 else []
    problems: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                if schema.get("additionalProperties") in (None, False):
                    problems.append(f"{where}/{key}: unknown field")
            else:
                problems += _undeclared(schema["properties"][key], item, f"{where}/{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problems += _undeclared(schema["items"], item, f"{where}/{index}")
    return problems


def check_body(operation: str, body: Any) -> None:
    """Raise a 400 ApiError unless ``body`` is valid for ``operation`` ("POST /api/v1/slo")."""
    schema = SCHEMAS["operations"][operation]["schema"]
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
              for e in jsonschema.Draft202012Validator(schema).iter_errors(body)]
    errors += _undeclared(schema, body)
    if errors:
        raise ApiError(400, sorted(errors))


class FakeDatadog(TlsFake):
    def __init__(self, api_key: str, app_key: str, cert_dir: str) -> None:
        self.api_key, self.app_key = api_key, app_key
        self.definitions: dict[str, dict[str, Any]] = {}
        self.slos: dict[str, dict[str, Any]] = {}
        self.monitors: dict[int, dict[str, Any]] = {}
        self.ids = itertools.count(1)
        self.faults: list[Fault] = []
        self.bodies: list[tuple[str, str, Any]] = []  # every write's (method, path, body), for secret checks
        self.lock = threading.Lock()
        self.serve(cert_dir, "nthlayer test Datadog")

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes) -> tuple:
        with self.lock:
            fault = next((f for f in self.faults if f.matches(method, path) and f.times != 0), None)
            if fault is not None and fault.times is not None:
                fault.times -= 1
            if fault is not None and not fault.after_commit:
                return fault.status, {"errors": [f"injected {fault.status}"]}, fault.headers
            try:
                if headers.get("DD-API-KEY") != self.api_key or headers.get("DD-APPLICATION-KEY") != self.app_key:
                    raise ApiError(403, ["Forbidden"])
                data = json.loads(body) if body else None
                if method != "GET":
                    self.bodies.append((method, path, data))
                status, answer = self._route(method, path, query, data)
            except ApiError as exc:
                return exc.status, {"errors": exc.errors}
            except ValueError:
                return 400, {"errors": ["Invalid JSON"]}
            if fault is not None:
                return fault.status, {"errors": [f"injected {fault.status} after commit"]}, fault.headers
            return status, answer

    # -- routes
    def _route(self, method: str, path: str, query: dict[str, list[str]], data: Any) -> tuple[int, Any]:
        if path == "/api/v2/services/definitions" and method == "POST":
            check_body("POST /api/v2/services/definitions", data)
            self.definitions[data["dd-service"]] = data
            return 200, {"data": [self._definition(data)]}
        match = re.fullmatch(r"/api/v2/services/definitions/([^/]+)", path)
        if match and method == "GET":
            if match[1] not in self.definitions:
                raise ApiError(404, ["Not found"])
            return 200, {"data": self._definition(self.definitions[match[1]])}
        if path == "/api/v1/slo" and method == "GET":
            tag = query.get("tags_query", [""])[0]
            return 200, {"data": [s for s in self.slos.values() if not tag or tag in s["tags"]]}
        if path == "/api/v1/slo" and method == "POST":
            check_body("POST /api/v1/slo", data)
            slo_id = f"{next(self.ids):032x}"
            self.slos[slo_id] = {**data, "id": slo_id}
            return 200, {"data": [self.slos[slo_id]]}
        match = re.fullmatch(r"/api/v1/slo/([0-9a-f]+)", path)
        if match and method == "PUT":
            check_body("PUT /api/v1/slo/{slo_id}", data)
            if match[1] not in self.slos:
                raise ApiError(404, ["SLO not found"])
            self.slos[match[1]] = {**data, "id": match[1]}
            return 200, {"data": [self.slos[match[1]]]}
        if path == "/api/v1/monitor" and method == "GET":
            tags = [t for t in query.get("monitor_tags", [""])[0].split(",") if t]
            return 200, [m for m in self.monitors.values() if all(t in m["tags"] for t in tags)]
        if path == "/api/v1/monitor" and method == "POST":
            check_body("POST /api/v1/monitor", data)
            self._check_slo_query(data["query"])
            monitor_id = next(self.ids)
            self.monitors[monitor_id] = {**data, "id": monitor_id}
            return 200, self.monitors[monitor_id]
        match = re.fullmatch(r"/api/v1/monitor/(\d+)", path)
        if match and method == "PUT":
            check_body("PUT /api/v1/monitor/{monitor_id}", data)
            self._check_slo_query(data.get("query", ""))
            if int(match[1]) not in self.monitors:
                raise ApiError(404, ["Monitor not found"])
            self.monitors[int(match[1])] = {**self.monitors[int(match[1])], **data}
            return 200, self.monitors[int(match[1])]
        raise ApiError(404, [f"no route {method} {path}"])

    def _check_slo_query(self, query: str) -> None:
        """An slo alert names an SLO that exists, with Datadog's window limits (long ≤ 48h, short < long)."""
        match = re.fullmatch(r'burn_rate\("([^"]+)"\)\.over\("(7d|30d|90d)"\)\.long_window\("(\d+)([mh])"\)'
                             r'\.short_window\("(\d+)([mh])"\) > [0-9.]+', query)
        if match is None:
            raise ApiError(400, [f"invalid burn rate query: {query}"])
        if match[1] not in self.slos:
            raise ApiError(400, [f"SLO {match[1]} not found"])
        long = int(match[3]) * (60 if match[4] == "h" else 1)
        short = int(match[5]) * (60 if match[6] == "h" else 1)
        if long > 48 * 60 or short >= long:
            raise ApiError(400, [f"invalid burn rate windows: {query}"])

    @staticmethod
    def _definition(schema: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"def-{schema['dd-service']}", "type": "service-definition",
                "attributes": {"schema": schema, "meta": {"origin": "api"}}}
