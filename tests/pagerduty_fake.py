"""A stateful fake of the PagerDuty REST API v2 subset nthlayer uses, served over TLS on 127.0.0.1.

It checks what PagerDuty's API reference requires of each request (headers,
wrapped bodies, ``type`` fields, escalation rules with targets, references
that exist), pages indexes with limit/offset/more, and can inject failures:
401/403/429/5xx, slow answers, and "created, then failed" 500s.
"""
from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tls_fake import Fault, TlsFake

ACCEPT = "application/vnd.pagerduty+json;version=2"
INDEXES = ("teams", "escalation_policies", "services", "users", "schedules")
ENTITY = {"teams": "team", "escalation_policies": "escalation_policy", "services": "service",
          "users": "user", "schedules": "schedule"}


@dataclass
class Store:
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k: {} for k in INDEXES})
    integrations: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # service id → id → obj
    ids: Any = field(default_factory=lambda: itertools.count(1))

    def new_id(self, prefix: str) -> str:
        return f"P{prefix}{next(self.ids):05d}"


class ApiError(Exception):
    def __init__(self, status: int, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or []


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ApiError(400, "Invalid Input Provided", [message])


class FakePagerDuty(TlsFake):
    def __init__(self, api_key: str, cert_dir: str) -> None:
        self.api_key = api_key
        self.store = Store()
        self.faults: list[Fault] = []
        self.forbid_writes = False
        self.lock = threading.Lock()
        self.serve(cert_dir, "nthlayer test PagerDuty")


    # -- seeding and inspection
    def add_user(self, name: str, email: str) -> str:
        uid = self.store.new_id("U")
        self.store.objects["users"][uid] = {"id": uid, "type": "user", "name": name, "email": email}
        return uid

    def add_schedule(self, name: str) -> str:
        sid = self.store.new_id("S")
        self.store.objects["schedules"][sid] = {"id": sid, "type": "schedule", "name": name}
        return sid

    def all(self, kind: str) -> list[dict[str, Any]]:
        return list(self.store.objects[kind].values())

    def all_integrations(self) -> list[dict[str, Any]]:
        return [i for by_id in self.store.integrations.values() for i in by_id.values()]

    # -- request handling
    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> tuple[int, Any]:
        fault = None
        with self.lock:
            for candidate in self.faults:
                if candidate.matches(method, path) and candidate.times != 0:
                    if candidate.times is not None:
                        candidate.times -= 1
                    fault = candidate
                    break
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if headers.get("Authorization") != f"Token token={self.api_key}":
            return 401, {"error": {"message": "Authentication failed", "code": 2006}}
        if headers.get("Accept") != ACCEPT:
            return 406, {"error": {"message": f"Accept must be {ACCEPT}"}}
        if fault is not None and not fault.after_commit and fault.status:
            return fault.status, {"error": {"message": f"injected {fault.status}"}}
        if method != "GET" and self.forbid_writes:
            return 403, {"error": {"message": "Access Denied", "code": 2010}}
        if method in ("POST", "PUT") and headers.get("Content-Type") != "application/json":
            return 415, {"error": {"message": "Content-Type must be application/json"}}
        try:
            payload = json.loads(body) if body else None
            with self.lock:
                status, answer = self._route(method, path, query, payload)
        except ApiError as exc:
            return exc.status, {"error": {"message": exc.message, "errors": exc.errors}}
        except ValueError:
            return 400, {"error": {"message": "body is not JSON"}}
        if fault is not None and fault.after_commit:
            return fault.status, {"error": {"message": f"injected {fault.status} after commit"}}
        return status, answer

    def _route(self, method: str, path: str, query: dict[str, list[str]], payload: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if len(parts) == 1 and parts[0] in INDEXES:
            if method == "GET":
                return 200, self._index(parts[0], query)
            if method == "POST" and parts[0] in ("teams", "escalation_policies", "services"):
                return 201, {ENTITY[parts[0]]: self._create(parts[0], payload)}
        if len(parts) == 2 and parts[0] in INDEXES:
            obj = self.store.objects[parts[0]].get(parts[1])
            if obj is None:
                raise ApiError(404, "Not Found")
            if method == "GET":
                return 200, {ENTITY[parts[0]]: self._view(parts[0], obj)}
            if method == "PUT" and parts[0] in ("teams", "escalation_policies", "services"):
                return 200, {ENTITY[parts[0]]: self._update(parts[0], obj, payload)}
        if len(parts) in (3, 4) and parts[0] == "services" and parts[2] == "integrations":
            if parts[1] not in self.store.objects["services"]:
                raise ApiError(404, "Not Found")
            if len(parts) == 3 and method == "POST":
                return 201, {"integration": self._create_integration(parts[1], payload)}
            if len(parts) == 4 and method == "GET":
                found = self.store.integrations.get(parts[1], {}).get(parts[3])
                if found is None:
                    raise ApiError(404, "Not Found")
                return 200, {"integration": dict(found)}
        raise ApiError(404, f"no route for {method} {path}")

    def _index(self, kind: str, query: dict[str, list[str]]) -> dict[str, Any]:
        limit = int(query.get("limit", ["25"])[0])
        offset = int(query.get("offset", ["0"])[0])
        _require(0 < limit <= 100, "limit must be between 1 and 100")
        wanted = query.get("query", [""])[0].lower()
        fields = ("name", "email") if kind == "users" else ("name",)
        rows = [o for o in self.store.objects[kind].values()
                if not wanted or any(wanted in str(o.get(f, "")).lower() for f in fields)]
        page = rows[offset:offset + limit]
        return {kind: [self._view(kind, o) for o in page], "limit": limit, "offset": offset,
                "more": offset + limit < len(rows), "total": None}

    def _view(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        view = json.loads(json.dumps(obj))
        view["self"] = f"{self.url}/{kind}/{obj['id']}"
        if kind == "services":  # services list their integrations as references
            view["integrations"] = [{"id": i["id"], "type": f"{i['type']}_reference", "summary": i["name"]}
                                    for i in self.store.integrations.get(obj["id"], {}).values()]
        return view

    def _unique_name(self, kind: str, name: Any, except_id: str | None = None) -> None:
        _require(isinstance(name, str) and name.strip() != "", "name is required")
        for other in self.store.objects[kind].values():
            _require(other["id"] == except_id or other["name"].lower() != name.lower(), "Name has already been taken")

    def _check_rules(self, rules: Any) -> list[dict[str, Any]]:
        _require(isinstance(rules, list) and rules, "escalation_rules must have at least one rule")
        clean = []
        for rule in rules:
            _require(isinstance(rule.get("escalation_delay_in_minutes"), int), "escalation_delay_in_minutes required")
            targets = rule.get("targets")
            _require(isinstance(targets, list) and len(targets) >= 1, "each rule needs at least one target")
            for target in targets:
                kind = {"user_reference": "users", "user": "users", "schedule_reference": "schedules",
                        "schedule": "schedules"}.get(target.get("type"))
                _require(kind is not None, f"unknown target type {target.get('type')}")
                _require(target.get("id") in self.store.objects[kind], f"target {target.get('id')} not found")
            clean.append({"id": self.store.new_id("R"),
                          "escalation_delay_in_minutes": rule["escalation_delay_in_minutes"],
                          "targets": [{"id": t["id"], "type": t["type"] if t["type"].endswith("_reference")
                                       else t["type"] + "_reference"} for t in targets]})
        return clean

    def _apply_fields(self, kind: str, obj: dict[str, Any], entity: dict[str, Any]) -> None:
        if "name" in entity:
            self._unique_name(kind, entity["name"], obj.get("id"))
            obj["name"] = entity["name"]
        if "description" in entity:
            obj["description"] = entity["description"]
        if kind == "escalation_policies":
            if "escalation_rules" in entity or "escalation_rules" not in obj:
                obj["escalation_rules"] = self._check_rules(entity.get("escalation_rules"))
            if "teams" in entity:
                for team in entity["teams"]:
                    _require(team.get("type") == "team_reference" and team.get("id") in self.store.objects["teams"],
                             "teams must be team_reference objects of existing teams")
                obj["teams"] = [{"id": t["id"], "type": "team_reference"} for t in entity["teams"]]
        if kind == "services":
            if "escalation_policy" in entity or "escalation_policy" not in obj:
                ref = entity.get("escalation_policy") or {}
                _require(ref.get("type") == "escalation_policy_reference", "escalation_policy must be a reference")
                _require(ref.get("id") in self.store.objects["escalation_policies"], "escalation policy not found")
                obj["escalation_policy"] = {"id": ref["id"], "type": "escalation_policy_reference"}
            for name in ("auto_resolve_timeout", "acknowledgement_timeout"):
                if name in entity:
                    _require(entity[name] is None or isinstance(entity[name], int), f"{name} must be an integer")
                    obj[name] = entity[name]
            if "incident_urgency_rule" in entity:
                rule = entity["incident_urgency_rule"]
                _require(rule.get("type") in ("constant", "use_support_hours"), "bad incident_urgency_rule type")
                _require(rule.get("urgency") in ("high", "low", "severity_based"), "bad urgency")
                obj["incident_urgency_rule"] = {"type": rule["type"], "urgency": rule["urgency"]}

    def _entity(self, kind: str, payload: Any) -> dict[str, Any]:
        wrapper = ENTITY[kind]
        _require(isinstance(payload, dict) and isinstance(payload.get(wrapper), dict),
                 f"body must be {{\"{wrapper}\": {{...}}}}")
        entity = payload[wrapper]
        _require(entity.get("type") == wrapper, f"{wrapper}.type must be \"{wrapper}\"")
        return entity

    def _create(self, kind: str, payload: Any) -> dict[str, Any]:
        entity = self._entity(kind, payload)
        obj: dict[str, Any] = {"id": self.store.new_id(kind[0].upper()), "type": ENTITY[kind]}
        _require("name" in entity, "name is required")
        defaults = {"services": {"auto_resolve_timeout": 14400, "acknowledgement_timeout": 1800,
                                 "incident_urgency_rule": {"type": "constant", "urgency": "high"}},
                    "escalation_policies": {"teams": [], "num_loops": 0}}
        obj.update(json.loads(json.dumps(defaults.get(kind, {}))))
        self._apply_fields(kind, obj, entity)
        self.store.objects[kind][obj["id"]] = obj
        return self._view(kind, obj)

    def _update(self, kind: str, obj: dict[str, Any], payload: Any) -> dict[str, Any]:
        entity = self._entity(kind, payload)
        updated = json.loads(json.dumps(obj))
        self._apply_fields(kind, updated, entity)
        obj.clear()
        obj.update(updated)
        return self._view(kind, obj)

    def _create_integration(self, service_id: str, payload: Any) -> dict[str, Any]:
        _require(isinstance(payload, dict) and isinstance(payload.get("integration"), dict),
                 'body must be {"integration": {...}}')
        entity = payload["integration"]
        _require(entity.get("type") in ("events_api_v2_inbound_integration", "generic_events_api_inbound_integration"),
                 "integration.type must be an inbound integration type")
        iid = self.store.new_id("I")
        obj = {"id": iid, "type": entity["type"], "name": entity.get("name") or "Events API v2",
               "service": {"id": service_id, "type": "service_reference"},
               "integration_key": secrets.token_hex(16)}
        self.store.integrations.setdefault(service_id, {})[iid] = obj
        return dict(obj)

