"""Plan and apply a service's PagerDuty desired state (generators.pagerduty) through the REST API.

The plan reads only; apply walks the plan in dependency order (team →
escalation policy → service → integration), so a run that dies half-way
leaves objects a rerun finds by name and does not create again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pagerduty import Error as PagerDutyError

from generators.errors import SpecError, SpecErrors, UserError
from generators.paging import NO_POLICY_MESSAGE
from generators.spec import LoadedSpec
from nthlayer.integrations.pagerduty import PagerDutyClient, explain, is_transient, status_of
from nthlayer.ops.setup import ApplyFailed, ServicePlan
from nthlayer.state.pagerduty import Integration, masked

KINDS = ("team", "escalation_policy", "service", "integration")
PATHS = {"team": "/teams", "escalation_policy": "/escalation_policies", "service": "/services"}
AFTER_APPLY = "(known after apply)"


@dataclass(frozen=True)
class Ref:
    """An id that an earlier step of the same plan supplies."""
    kind: str


@dataclass
class Step:
    kind: str
    label: str
    action: str  # create | update | unchanged | referenced | planned (created by an earlier plan of this run)
    object_id: str | None = None
    body: dict[str, Any] = field(default_factory=dict)  # what create/update sends
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field → (now, wanted)
    routing_key: str | None = None


# ---------------------------------------------------------------- comparing

def _target_key(target: dict[str, Any]) -> dict[str, str]:
    kind = str(target.get("type", ""))
    return {"type": kind if kind.endswith("_reference") else f"{kind}_reference", "id": str(target.get("id"))}


def normalise_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"escalation_delay_in_minutes": int(r.get("escalation_delay_in_minutes", 0)),
             "targets": [_target_key(t) for t in r.get("targets", [])]} for r in rules]


def _current_value(current: dict[str, Any], name: str) -> Any:
    value = current.get(name)
    if name == "escalation_rules":
        return normalise_rules(value or [])
    if name == "teams":
        return [t.get("id") for t in value or []]
    if name == "escalation_policy":
        return (value or {}).get("id")
    return value


def _wanted_value(wanted: Any, name: str) -> Any:
    if name == "teams":
        return [t["id"] if not isinstance(t["id"], Ref) else AFTER_APPLY for t in wanted]
    if name == "escalation_policy":
        return wanted["id"] if not isinstance(wanted["id"], Ref) else AFTER_APPLY
    return wanted


def _differs(now: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict) and isinstance(now, dict):  # PagerDuty adds keys we do not manage
        return any(now.get(k) != v for k, v in wanted.items())
    return bool(now != wanted)


def diff(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    changes: dict[str, tuple[Any, Any]] = {}
    for name, wanted in desired.items():
        if name == "type":
            continue
        now, want = _current_value(current, name), _wanted_value(wanted, name)
        if want == AFTER_APPLY or _differs(now, want):
            changes[name] = (now, want)
    return changes


# ---------------------------------------------------------------- planning

class _Reader:
    """Reads one service's objects; turns 404s on spec ids into file-located errors."""

    def __init__(self, client: PagerDutyClient | None, spec: LoadedSpec) -> None:
        self.client = client
        self.spec = spec
        self.errors: list[SpecError] = []

    def by_id(self, path: str, object_id: str, pointer: str) -> dict[str, Any] | None:
        assert self.client is not None
        try:
            return self.client.rget(f"{path}/{object_id}")
        except Exception as exc:
            if status_of(exc) == 404:
                self.errors.append(self.spec.located.error(pointer, f"{object_id} does not exist in PagerDuty"))
                return None
            raise UserError(explain(exc, f"GET {path}/{object_id}")) from exc

    def by_name(self, path: str, name: str, attribute: str = "name") -> dict[str, Any] | None:
        assert self.client is not None
        try:
            return self.client.find(path.lstrip("/"), name, attribute=attribute)
        except Exception as exc:
            raise UserError(explain(exc, f"GET {path}?query={name}")) from exc

    def integration(self, service: dict[str, Any], name: str) -> dict[str, Any] | None:
        assert self.client is not None
        try:
            return find_integration(self.client, service, name)
        except Exception as exc:
            raise UserError(explain(exc, f"GET /services/{service['id']}/integrations")) from exc


def find_integration(client: PagerDutyClient, service: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The service's Events API v2 integration called ``name``, with its integration_key."""
    for ref in service.get("integrations", []):
        if str(ref.get("type", "")).startswith("events_api_v2_inbound_integration"):
            found = client.rget(f"/services/{service['id']}/integrations/{ref['id']}")
            if found.get("name") == name:
                return found
    return None


def _no_policy_error(spec: LoadedSpec) -> SpecError:
    pointer = "/pagerduty" if "pagerduty" in spec.located.data else ""
    return spec.located.error(pointer, NO_POLICY_MESSAGE)


def _resolve_targets(reader: _Reader, desired: dict[str, Any]) -> dict[str, str]:
    """E-mail → user id (and existence of every schedule), with errors at the spec field."""
    user_ids: dict[str, str] = {}
    for schedule in desired["schedules"]:
        reader.by_id("/schedules", schedule["id"], schedule["spec_field"])
    for user in desired["users"]:
        found = reader.by_name("/users", user["email"], attribute="email")
        if found is None:
            reader.errors.append(reader.spec.located.error(
                user["spec_field"], f"no PagerDuty user has the e-mail address {user['email']}"))
        else:
            user_ids[user["email"]] = found["id"]
    return user_ids


def _policy_fields(desired: dict[str, Any], user_ids: dict[str, str], team: Any,
                   referenced: bool) -> dict[str, Any]:
    fields = dict(desired["escalation_policy"]["fields"])
    fields["escalation_rules"] = [
        {"escalation_delay_in_minutes": rule["escalation_delay_in_minutes"],
         "targets": [{"type": t["type"], "id": t.get("id") or user_ids.get(t.get("email", ""), "?")}
                     for t in rule["targets"]]}
        for rule in fields["escalation_rules"]]
    if referenced:  # someone else's policy: only its rules are ours to keep
        return {"type": fields["type"], "escalation_rules": fields["escalation_rules"]}
    fields["teams"] = [{"id": team, "type": "team_reference"}]
    return fields


def _step(kind: str, label: str, current: dict[str, Any] | None, fields: dict[str, Any],
          referenced: bool = False) -> Step:
    if current is None:
        return Step(kind, label, "create", None, fields,
                    {k: (None, _wanted_value(v, k)) for k, v in fields.items() if k != "type"})
    changes = diff(current, fields)
    if not changes:
        return Step(kind, label, "referenced" if referenced else "unchanged", current["id"])
    body = {"type": fields["type"], **{k: fields[k] for k in changes}}
    return Step(kind, label, "update", current["id"], body, changes)


def _shared(step: Step, planned: set[tuple[str, str]]) -> Step:
    """Services of one team share it: only the first plan of a run creates it."""
    if step.action != "create":
        return step
    if (step.kind, step.label) in planned:
        return Step(step.kind, step.label, "planned")
    planned.add((step.kind, step.label))
    return step


def plan_service(client: PagerDutyClient | None, spec: LoadedSpec, desired: dict[str, Any],
                 planned: set[tuple[str, str]] | None = None) -> ServicePlan:
    """Read PagerDuty (or, without a client, assume nothing exists) and list what apply would do.

    ``planned`` carries the (kind, name) pairs earlier plans of the same run create.
    """
    planned = set() if planned is None else planned
    reader = _Reader(client, spec)
    policy = desired["escalation_policy"]
    if policy["rules_from"] == "missing":
        raise SpecErrors([_no_policy_error(spec)])
    team_d, service_d = desired["team"], desired["service"]
    svc_name = service_d["fields"]["name"]
    integ_fields = desired["integration"]["fields"]
    steps: list[Step] = []
    if client is None:
        for kind, part in (("team", team_d), ("escalation_policy", policy), ("service", service_d)):
            if kind == "escalation_policy" and policy["rules_from"] == "existing_service":
                continue
            label = part["fields"]["name"]
            if part.get("id"):
                steps.append(Step(kind, label, "referenced", part["id"]))
            else:
                steps.append(_shared(Step(kind, label, "create", None, dict(part["fields"])), planned))
        steps.append(Step("integration", integ_fields["name"], "create", None, dict(integ_fields)))
        return ServicePlan(desired["service_name"], spec.service.source, steps)

    team_name = team_d["fields"]["name"]
    if team_d["id"]:
        team_now = reader.by_id("/teams", team_d["id"], team_d["spec_field"])
        team_step = Step("team", team_now["name"] if team_now else team_name, "referenced", team_d["id"])
    else:
        team_now = reader.by_name("/teams", team_name)
        team_step = _shared(_step("team", team_name, team_now, dict(team_d["fields"])), planned)
    steps.append(team_step)
    team_ref: Any = team_step.object_id or Ref("team")  # "planned" resolves through the applier

    user_ids = _resolve_targets(reader, desired)
    policy_ref: Any = None
    policy_name = policy["fields"]["name"]
    if policy["id"]:
        policy_now = reader.by_id("/escalation_policies", policy["id"], policy["spec_field"])
        if policy_now is not None:
            policy_name = policy_now.get("name", policy_name)
        if policy["rules_from"] == "spec" and policy_now is not None:
            steps.append(_step("escalation_policy", policy_name, policy_now,
                               _policy_fields(desired, user_ids, team_ref, referenced=True), referenced=True))
        else:
            steps.append(Step("escalation_policy", policy_name, "referenced", policy["id"]))
        policy_ref = policy["id"]
    elif policy["rules_from"] == "spec":
        policy_now = reader.by_name("/escalation_policies", policy_name)
        steps.append(_step("escalation_policy", policy_name, policy_now,
                           _policy_fields(desired, user_ids, team_ref, referenced=False)))
        policy_ref = steps[-1].object_id or Ref("escalation_policy")

    fields = dict(service_d["fields"])
    if policy_ref is not None:
        fields["escalation_policy"] = {"id": policy_ref, "type": "escalation_policy_reference"}
    if service_d["id"]:
        service_now = reader.by_id("/services", service_d["id"], service_d["spec_field"])
        for unmanaged in ("name", "description"):  # a referenced service keeps its own
            fields.pop(unmanaged)
        label = service_now.get("name", svc_name) if service_now else svc_name
        service_step = _step("service", label, service_now, fields, referenced=True) if service_now else \
            Step("service", label, "referenced", service_d["id"])
    else:
        service_now = reader.by_name("/services", svc_name)
        service_step = _step("service", svc_name, service_now, fields)
    steps.append(service_step)

    if reader.errors:
        raise SpecErrors(reader.errors)
    integration_now = reader.integration(service_now, integ_fields["name"]) if service_now else None
    if integration_now is None:
        steps.append(Step("integration", integ_fields["name"], "create", None, dict(integ_fields)))
    else:
        steps.append(Step("integration", integ_fields["name"], "unchanged", integration_now["id"],
                          routing_key=integration_now.get("integration_key")))
    return ServicePlan(desired["service_name"], spec.service.source, steps)


NOUNS = {"team": "team", "escalation_policy": "escalation policy", "service": "service",
         "integration": "integration"}


# ---------------------------------------------------------------- applying

def _resolve(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, Ref):
        return ids[value.kind]
    if isinstance(value, dict):
        return {k: _resolve(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, ids) for v in value]
    return value


def _create(client: PagerDutyClient, path: str, body: dict[str, Any],
            existing: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    """POST, and after a failure that may hide a success, look before posting again."""
    attempt = 0
    while True:
        try:
            return client.rpost(path, json=body)
        except Exception as exc:
            if not is_transient(exc) or attempt >= client.settings.retries:
                raise
        time.sleep(client.settings.backoff * 2 ** attempt)
        attempt += 1
        try:
            found = existing()
        except Exception as exc:
            if not is_transient(exc):
                raise
            found = None
        if found is not None:
            return found


class Applier:
    def __init__(self, client: PagerDutyClient, on_integration: Callable[[Integration], None]) -> None:
        self.client = client
        self.on_integration = on_integration
        self.done: list[str] = []
        self.created: dict[tuple[str, str], str] = {}  # (kind, name) → id, for "planned" steps
        self.ids: dict[str, dict[str, str]] = {}  # service → {kind: id} of its objects, once applied

    def apply(self, plan: ServicePlan) -> None:
        ids: dict[str, str] = {}
        for step in plan.steps:
            verb = "creating" if step.action == "create" else "updating"
            what = f"{verb} {NOUNS[step.kind]} \"{step.label}\""
            try:
                self._apply_step(plan, step, ids)
            except PagerDutyError as exc:
                so_far = "; ".join(self.done) or "nothing"
                raise ApplyFailed(f"{explain(exc, what)} — done before the failure: {so_far}. "
                                  "Re-running setup-pagerduty finishes the job without duplicates") from exc
        self.ids[plan.service] = dict(ids)

    def _apply_step(self, plan: ServicePlan, step: Step, ids: dict[str, str]) -> None:
        client = self.client
        if step.action == "planned":
            ids[step.kind] = self.created[(step.kind, step.label)]
            return
        if step.action in ("unchanged", "referenced"):
            if step.object_id:
                ids[step.kind] = step.object_id
            if step.kind == "integration" and step.routing_key and step.object_id:
                self.on_integration(Integration(plan.service, step.object_id, step.routing_key))
            return
        body = _resolve(step.body, ids)
        if step.action == "update":
            assert step.object_id is not None
            client.rput(f"{PATHS[step.kind]}/{step.object_id}", json=body)
            ids[step.kind] = step.object_id
            self.done.append(f"updated {NOUNS[step.kind]} \"{step.label}\" ({step.object_id})")
            return
        if step.kind == "integration":
            service_id = ids["service"]
            path = f"/services/{service_id}/integrations"

            def existing() -> dict[str, Any] | None:
                return find_integration(client, client.rget(f"/services/{service_id}"), step.label)
        else:
            path = PATHS[step.kind]

            def existing() -> dict[str, Any] | None:
                return client.find(path.lstrip("/"), step.label)
        created = _create(client, path, body, existing)
        ids[step.kind] = created["id"]
        self.created[(step.kind, step.label)] = created["id"]
        self.done.append(f"created {NOUNS[step.kind]} \"{step.label}\" ({created['id']})")
        if step.kind == "integration":
            key = created.get("integration_key")
            if not key:  # the create answer lacks the key on some accounts: read it back
                key = client.rget(f"/services/{ids['service']}/integrations/{created['id']}")["integration_key"]
            self.on_integration(Integration(plan.service, created["id"], key))
            self.done[-1] += f", routing key {masked(key)}"
