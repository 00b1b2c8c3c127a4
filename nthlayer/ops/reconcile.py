"""Reconcile a ``ServiceReliability`` custom resource: its PrometheusRule and AlertmanagerConfig, and its status.

What the operator does on every event of a ServiceReliability, as plain functions of an API client and
the object (``nthlayer operator`` wires them to kopf; tests/test_operator.py runs them against a fake API
server). The desired objects are made by the build's own functions: the spec goes through
:func:`generators.spec.load_spec` (the same schema, semantic and catalog checks as ``nthlayer validate``)
and :func:`generators.kubernetes.kubernetes_documents`, so a ServiceReliability and services/<name>.yaml
with the same content give the same manifests, apart from ``ownerReferences``.

- A valid spec: each owned object is created, or replaced when it differs; objects this resource owned
  under another name (the service was renamed) are deleted. Status: ``Ready=True``, ``InvalidSpec=False``.
- An invalid spec: the owned objects stay as they were (the last valid version keeps alerting, as a broken
  spec keeps its previous out/ files); ``Ready=False``, ``InvalidSpec=True`` with one ``/pointer: message``
  line per problem.
- An object of the same name that this resource does not own (applied by GitOps from out/, or another
  resource) is left alone: ``Ready=False`` with reason ``Conflict``.
- Deletion: the owned objects are deleted (the cluster's garbage collector would, through
  ``ownerReferences``; doing it here does not depend on it).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import yaml

from generators.catalog import load_technologies, technology_files
from generators.errors import SpecErrors, UserError
from generators.k8s_crd import API_VERSION, KIND
from generators.k8s_names import MANAGED_BY
from generators.kubernetes import (ALERTMANAGER_CONFIG_API, PROMETHEUS_RULE_API, KubernetesDefaults,
                                   alertmanager_config_resource, prometheus_rule, rule_file_groups)
from generators.spec import load_spec
from nthlayer.integrations.kubernetes import KubernetesApi

OWNED_KINDS = ((PROMETHEUS_RULE_API, "PrometheusRule"), (ALERTMANAGER_CONFIG_API, "AlertmanagerConfig"))


class Desired(NamedTuple):
    """What a ServiceReliability asks for: the owned objects, or why it cannot (``/pointer: message``)."""

    objects: list[dict[str, Any]]
    problems: list[str]


def _source(body: dict[str, Any]) -> str:
    meta = body.get("metadata", {})
    return f"{KIND}/{meta.get('namespace', '')}/{meta.get('name', '')}"


def _problem_lines(errors: SpecErrors) -> list[str]:
    """The spec's error lines without ``file:line:col:`` (the resource is not a file the user wrote)."""
    return sorted({f"{error.pointer or '/'}: {error.message}" for error in errors.errors if not error.warning})


def owner_reference(body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def desired_objects(body: dict[str, Any], defaults: KubernetesDefaults, catalog_dir: str) -> Desired:
    """The PrometheusRule and AlertmanagerConfig a ServiceReliability asks for, owned by it, in its
    namespace (an owner and what it owns share one)."""
    namespace = body["metadata"]["namespace"]
    spec = body.get("spec")
    raw = yaml.safe_dump(spec, sort_keys=False).encode("utf-8")
    try:
        service = load_spec(_source(body), raw).service
    except SpecErrors as exc:
        return Desired([], _problem_lines(exc))
    if service.kubernetes.namespace not in (None, namespace):
        return Desired([], [f"/kubernetes/namespace: '{service.kubernetes.namespace}' is not this "
                            f"{KIND}'s namespace '{namespace}': the objects it owns are created in its own namespace"])
    known = technology_files(catalog_dir)
    unknown = [(index, tech.type) for index, tech in enumerate(service.technologies) if tech.type not in known]
    if unknown:
        return Desired([], [f"/dependencies/technologies/{index}/type: unknown technology '{name}' "
                            "(not in the operator's catalog)" for index, name in unknown])
    try:
        catalog = load_technologies(catalog_dir, service.technology_types)
        groups = rule_file_groups(service, catalog)
    except SpecErrors as exc:
        return Desired([], _problem_lines(exc))
    except UserError as exc:
        return Desired([], [f"/dependencies/technologies: {exc}"])
    objects = [prometheus_rule(service, groups, defaults, namespace),
               alertmanager_config_resource(service, defaults, namespace)]
    for obj in objects:
        obj["metadata"]["ownerReferences"] = [owner_reference(body)]
    return Desired(objects, [])


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences", ()) or ())


def _differs(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    meta, want = current.get("metadata", {}), desired["metadata"]
    return (current.get("spec") != desired["spec"] or meta.get("labels") != want["labels"]
            or meta.get("ownerReferences") != want["ownerReferences"])


def _ref(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def _condition(kind: str, status: bool, reason: str, message: str, generation: Any) -> dict[str, Any]:
    return {"type": kind, "status": "True" if status else "False", "reason": reason, "message": message,
            "observedGeneration": generation}


def owned_objects(api: KubernetesApi, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every PrometheusRule and AlertmanagerConfig in the resource's namespace that it owns."""
    meta = body["metadata"]
    found = []
    for api_version, kind in OWNED_KINDS:
        for obj in api.list(api_version, kind, meta["namespace"], {MANAGED_BY: "nthlayer"}):
            if _owned_by(obj, meta["uid"]):
                obj.setdefault("apiVersion", api_version)
                obj.setdefault("kind", kind)
                found.append(obj)
    return found


class Outcome(NamedTuple):
    """What a reconcile did (for the operator's log) and the status it wrote."""

    status: dict[str, Any]
    changes: list[str]


def reconcile(api: KubernetesApi, body: dict[str, Any], defaults: KubernetesDefaults, catalog_dir: str) -> Outcome:
    """Make the owned objects what the spec says (module doc); write and return the status."""
    meta = body["metadata"]
    generation = meta.get("generation")
    desired = desired_objects(body, defaults, catalog_dir)
    changes: list[str] = []
    if desired.problems:
        message = "\n".join(desired.problems)
        status = {"observedGeneration": generation, "conditions": [
            _condition("Ready", False, "InvalidSpec", "the spec is invalid; owned objects are left as they were",
                       generation),
            _condition("InvalidSpec", True, "InvalidSpec", message, generation)]}
        return Outcome(_write_status(api, body, status), changes)
    conflicts = []
    for obj in desired.objects:
        current = api.get(obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        if current is None:
            api.create(obj)
            changes.append(f"created {_ref(obj)}")
        elif not _owned_by(current, meta["uid"]):
            conflicts.append(f"{_ref(obj)} exists and is not owned by this {KIND}")
        elif _differs(current, obj):
            replacement = {**obj, "metadata": {**obj["metadata"],
                                               "resourceVersion": current["metadata"]["resourceVersion"]}}
            api.replace(replacement)
            changes.append(f"updated {_ref(obj)}")
    wanted = {_ref(obj) for obj in desired.objects}
    for obj in owned_objects(api, body):
        if _ref(obj) not in wanted:  # the service was renamed: its old objects go
            api.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
            changes.append(f"deleted {_ref(obj)}")
    invalid = _condition("InvalidSpec", False, "Valid", "", generation)
    if conflicts:
        ready = _condition("Ready", False, "Conflict", "\n".join(conflicts), generation)
    else:
        ready = _condition("Ready", True, "Reconciled", f"{len(desired.objects)} objects up to date", generation)
    status = {"observedGeneration": generation, "conditions": [ready, invalid],
              "objects": sorted(wanted)}
    return Outcome(_write_status(api, body, status), changes)


def _write_status(api: KubernetesApi, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    if body.get("status") != status:
        api.patch_status(API_VERSION, KIND, meta["namespace"], meta["name"], status)
    return status


def cleanup(api: KubernetesApi, body: dict[str, Any]) -> list[str]:
    """Delete every object the resource owns (it is being deleted); the references deleted."""
    deleted = []
    for obj in owned_objects(api, body):
        if api.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]):
            deleted.append(_ref(obj))
    return sorted(deleted)


__all__ = ["Desired", "OWNED_KINDS", "Outcome", "cleanup", "desired_objects", "owned_objects", "owner_reference",
           "reconcile"]

