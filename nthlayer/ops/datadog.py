"""Plan and apply a service's Datadog desired state (generators.datadog) through Datadog's API.

Every object is found by its ``nthlayer-id:…`` tag (the service definition by its service name), never by
its display name: renaming an SLO in the spec updates the object a previous run made. The plan reads only;
apply walks it in dependency order (service definition → SLO → its burn-rate monitors, whose query names
the SLO's id), so a run that died half-way leaves objects the rerun finds by tag and does not create again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import json

from generators.datadog import ID_TAG, SLO_ID
from generators.render import json_default
from nthlayer.integrations.datadog import API_ERRORS, DatadogClient, explain
from nthlayer.ops.setup import ApplyFailed, ServicePlan

AFTER_APPLY = "(known after apply)"
NOUNS = {"definition": "service definition", "slo": "SLO", "monitor": "monitor"}
# The fields nthlayer owns on each object (Datadog adds its own: ids, creators, computed states).
SLO_FIELDS = ("name", "description", "type", "tags", "thresholds", "query", "monitor_ids")
MONITOR_FIELDS = ("name", "type", "query", "message", "tags", "priority", "options")


@dataclass
class Step:
    kind: str  # definition | slo | monitor
    label: str
    action: str  # create | update | unchanged
    body: dict[str, Any]  # what create/update sends (a monitor's query may still hold {slo_id})
    object_id: str | None = None
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    slo: str | None = None  # an SLO's key, or a monitor's SLO's


def _plain(value: Any) -> Any:
    """A client model (or list of them) as plain JSON-able data."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _normal(name: str, value: Any) -> Any:
    """A field as compared: tag order is Datadog's business; an SLO threshold is (timeframe, target, warning);
    of a monitor's options, nthlayer owns the thresholds."""
    if name == "tags":
        return sorted(value or [])
    if name == "thresholds":
        return [{k: float(t[k]) if k in ("target", "warning") else t[k] for k in ("timeframe", "target", "warning")
                 if t.get(k) is not None} for t in value or []]
    if name == "options":
        return {"thresholds": {k: float(v) for k, v in ((value or {}).get("thresholds") or {}).items()
                               if v is not None}}
    if name == "monitor_ids":
        return [int(v) for v in value or []]
    return value


def _changes(now: dict[str, Any], want: dict[str, Any], fields: tuple[str, ...]) -> dict[str, tuple[Any, Any]]:
    return {name: (now.get(name), want.get(name)) for name in fields
            if name in want and _normal(name, now.get(name)) != _normal(name, want.get(name))}


def _tagged(client: DatadogClient, kind: str, tag: str) -> dict[str, Any] | None:
    """The one object of ``kind`` carrying ``tag`` (None: none); two are an error the user must settle."""
    try:
        if kind == "slo":
            found = _plain(client.slos.list_slos(tags_query=tag)).get("data") or []
        else:
            found = _plain(client.monitors.list_monitors(monitor_tags=tag))
    except API_ERRORS as exc:
        raise ApplyFailed(explain(exc, f"listing {NOUNS[kind]}s tagged {tag}")) from None
    found = [item for item in found if tag in (item.get("tags") or [])]  # the filter is a search: be exact
    if len(found) > 1:
        ids = ", ".join(str(item.get("id")) for item in found)
        raise ApplyFailed(f"{len(found)} Datadog {NOUNS[kind]}s carry the tag {tag} ({ids}): delete the extra ones")
    return found[0] if found else None


def _definition_now(client: DatadogClient, name: str) -> dict[str, Any] | None:
    try:
        answer = _plain(client.definitions.get_service_definition(name, schema_version="v2.2"))
    except API_ERRORS as exc:
        if getattr(exc, "status", None) == 404:
            return None
        raise ApplyFailed(explain(exc, f"reading the service definition of {name}")) from None
    return ((answer.get("data") or {}).get("attributes") or {}).get("schema")


def plan_service(client: DatadogClient | None, source: str, state: dict[str, Any]) -> ServicePlan:
    """What to create and update for one service (``client`` None: a keyless dry run, everything new)."""
    state = json.loads(json.dumps(state, default=json_default))  # Decimals as JSON numbers, as sent
    name = state["service_name"]
    steps: list[Step] = []
    definition = state["service_definition"]
    now = _definition_now(client, name) if client else None
    if now is None:
        steps.append(Step("definition", name, "create", definition))
    else:
        changes = {k: (now.get(k), v) for k, v in definition.items() if _normal(k, now.get(k)) != _normal(k, v)}
        steps.append(Step("definition", name, "update" if changes else "unchanged", definition, name, changes))
    slo_ids: dict[str, str | None] = {}
    for slo in state["slos"]:
        found = _tagged(client, "slo", f"{ID_TAG}:{name}.{slo['key']}") if client else None
        slo_ids[slo["key"]] = found.get("id") if found else None
        step = _step("slo", slo["body"], found, SLO_FIELDS)
        step.slo = slo["key"]
        steps.append(step)
    for monitor in state["monitors"]:
        body = dict(monitor["body"])
        slo_id = slo_ids.get(monitor["slo"])
        if slo_id is not None:
            body["query"] = body["query"].replace(SLO_ID, slo_id)
        found = _tagged(client, "monitor", f"{ID_TAG}:{name}.{monitor['key']}") if client else None
        step = _step("monitor", body, found, MONITOR_FIELDS)
        step.slo = monitor["slo"]
        steps.append(step)
    return ServicePlan(name, source, steps)


def _step(kind: str, body: dict[str, Any], found: dict[str, Any] | None, fields: tuple[str, ...]) -> Step:
    if found is None:
        return Step(kind, body["name"], "create", body)
    if SLO_ID in str(body.get("query", "")):
        # Its SLO is created by this run (deleted in Datadog since): the monitor is pointed at the new one.
        changes = {"query": (found.get("query"), body["query"])}
    else:
        changes = _changes(found, body, fields)
    return Step(kind, body["name"], "update" if changes else "unchanged", body, str(found["id"]), changes)


class Applier:
    """Carries out plans; ``done`` lists what it did, one line each."""

    def __init__(self, client: DatadogClient) -> None:
        self.client = client
        self.done: list[str] = []

    def apply(self, plan: ServicePlan) -> None:
        slo_ids: dict[str, str] = {}  # SLO key → id, for the monitors' queries
        for step in plan.steps:
            if step.kind == "monitor":
                assert step.slo is not None
                if SLO_ID in step.body["query"]:  # its SLO was created above: now its id is known
                    step.body = {**step.body, "query": step.body["query"].replace(SLO_ID, slo_ids[step.slo])}
                self._apply(step)
            elif step.kind == "slo":
                assert step.slo is not None
                slo_ids[step.slo] = self._apply(step)
            else:
                self._apply(step)

    def _apply(self, step: Step) -> str:
        what = f"{NOUNS[step.kind]} \"{step.label}\""
        if step.action == "unchanged":
            return str(step.object_id)
        verb = "creating" if step.action == "create" else "updating"
        self.client.write(f"{verb} {what}")
        try:
            if step.kind == "definition":
                self.client.definitions.create_or_update_service_definitions(step.body)
                object_id = step.label
            elif step.kind == "slo" and step.action == "create":
                object_id = str(_plain(self.client.slos.create_slo(step.body))["data"][0]["id"])
            elif step.kind == "slo":
                self.client.slos.update_slo(step.object_id, step.body)
                object_id = str(step.object_id)
            elif step.action == "create":
                object_id = str(_plain(self.client.monitors.create_monitor(step.body))["id"])
            else:
                self.client.monitors.update_monitor(int(step.object_id or 0), step.body)
                object_id = str(step.object_id)
        except API_ERRORS as exc:
            raise ApplyFailed(explain(exc, f"{verb} {what}") + "; a rerun resumes where this one stopped") from None
        self.done.append(f"{'created' if step.action == 'create' else 'updated'} {what} {object_id}")
        return object_id
