"""The ``ServiceReliability`` CustomResourceDefinition (deploy/crd.yaml), made from the service spec's JSON Schema.

Pure. One source of truth: the CRD's ``spec`` schema is generators/schemas/service.schema.json translated to
a *structural* schema, the subset of OpenAPI v3 the Kubernetes API server accepts for a CRD
(apiextensions.k8s.io/v1). The translation, and what each step gives up (the operator runs the full spec
validation on every object anyway, and reports what only it can see in the ``InvalidSpec`` condition):

- ``$ref`` → the definition, inlined (a structural schema has no references).
- ``$schema``, ``$id``, ``title``, ``$comment``, ``default``, ``x-messages`` → dropped (``default`` would
  make the server write defaults into the user's object; the model applies them).
- ``additionalProperties: false`` → ``x-kubernetes-preserve-unknown-fields: true``. The server would
  otherwise prune unknown keys silently; kept, they reach the operator, which reports them as the CLI
  does ("unknown key 'tierr'; did you mean 'tier'?").
- ``propertyNames`` → dropped (Kubernetes has no such keyword): label names are checked by the operator.
- ``exclusiveMinimum: N`` (JSON Schema 2020-12) → ``minimum: N`` + ``exclusiveMinimum: true`` (OpenAPI 3.0).
- ``pattern`` → without its ``(?!\\n)`` tail: Kubernetes matches with Go's RE2, which has no lookahead and
  whose ``$`` already matches only at the very end.
- ``enum`` of one JSON type → that ``type``; the tier's mixed enum (1, 2, 3, "critical", …) →
  ``x-kubernetes-int-or-string: true``.
- ``uniqueItems: true`` (forbidden: quadratic) → ``x-kubernetes-list-type: set`` (scalar items only).
"""
from __future__ import annotations

import copy
from typing import Any

GROUP = "nthlayer.dev"
VERSION = "v1alpha1"
KIND = "ServiceReliability"
PLURAL = "servicereliabilities"
SINGULAR = "servicereliability"
SHORT_NAMES = ("srel",)
API_VERSION = f"{GROUP}/{VERSION}"
CONDITION_TYPES = ("Ready", "InvalidSpec")

_DROPPED = frozenset({"$schema", "$id", "title", "$comment", "default", "x-messages", "propertyNames", "$defs"})
_LOOKAHEAD = "(?!\\n)"
_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))


class NotStructural(ValueError):
    """The service schema uses a construct this translation does not handle (extend it, do not drop it)."""


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    # fastjsonschema rewrites the (cached, shared) schema's references in place to absolute ones.
    if root.get("$id") and ref.startswith(root["$id"] + "#"):
        ref = ref[len(root["$id"]):]
    if not ref.startswith("#/"):
        raise NotStructural(f"external $ref {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _enum_type(values: list[Any]) -> dict[str, Any]:
    kinds = set()
    for value in values:
        kinds.add(next(name for kind, name in _JSON_TYPES if type(value) is kind))
    if kinds == {"integer", "string"}:
        return {"x-kubernetes-int-or-string": True}
    if len(kinds) != 1:
        raise NotStructural(f"enum of types {sorted(kinds)}")
    return {"type": kinds.pop()}


def structural(node: dict[str, Any], root: dict[str, Any], where: str = "") -> dict[str, Any]:
    """The structural-schema translation of one node of ``root`` (module doc)."""
    if "$ref" in node:
        extra = set(node) - {"$ref", "description"}
        if extra:
            raise NotStructural(f"{where}: $ref beside {sorted(extra)}")
        merged = dict(_resolve(root, node["$ref"]))
        if "description" in node:
            merged["description"] = node["description"]
        return structural(merged, root, where)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {name: structural(child, root, f"{where}/{name}") for name, child in value.items()}
        elif key == "items":
            out[key] = structural(value, root, f"{where}/items")
        elif key == "additionalProperties":
            if value is False:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out[key] = structural(value, root, f"{where}/*")
            else:
                raise NotStructural(f"{where}: additionalProperties {value!r}")
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if bound in node and node[bound] != value:
                raise NotStructural(f"{where}: both {bound} and {key}")
            out[bound] = value
            out[key] = True
        elif key == "pattern":
            out[key] = value[:-len(_LOOKAHEAD)] if value.endswith(_LOOKAHEAD) else value
        elif key == "uniqueItems":
            if value:
                out["x-kubernetes-list-type"] = "set"
        elif key in ("oneOf", "anyOf", "allOf", "not", "if", "then", "else", "const", "patternProperties",
                     "dependentRequired", "dependentSchemas", "prefixItems", "unevaluatedProperties"):
            raise NotStructural(f"{where}: {key} is not translated")
        else:
            out[key] = copy.deepcopy(value)
    if "enum" in out and "type" not in out:
        out.update(_enum_type(out["enum"]))
    if out.get("x-kubernetes-list-type") == "set" and out.get("items", {}).get("type") in ("object", "array"):
        raise NotStructural(f"{where}: a set of {out['items']['type']}s")
    return out


def _status_schema() -> dict[str, Any]:
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "enum": list(CONDITION_TYPES)},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "observedGeneration": {"type": "integer", "format": "int64"},
        },
    }
    return {
        "type": "object",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "conditions": {"type": "array", "items": condition, "x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["type"]},
            "objects": {"type": "array", "description": "The objects this resource owns (kind/namespace/name).",
                        "items": {"type": "string"}},
        },
    }


def service_reliability_crd(service_schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD (deploy/crd.yaml) whose ``spec`` is ``service_schema`` translated (module doc)."""
    spec = structural(service_schema, service_schema, "")
    spec["description"] = service_schema.get("description", "")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR,
                      "shortNames": list(SHORT_NAMES)},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Service", "type": "string", "jsonPath": ".spec.service"},
                    {"name": "Tier", "type": "string", "jsonPath": ".spec.tier"},
                    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A service's reliability spec (the YAML of services/<name>.yaml under spec); "
                                   "the nthlayer operator keeps its PrometheusRule and AlertmanagerConfig.",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": _status_schema(),
                    },
                }},
            }],
        },
    }


SCHEMA_SOURCE = "generators/schemas/service.schema.json"


def crd_yaml() -> bytes:
    """deploy/crd.yaml as ``nthlayer operator --print-crd`` prints it (tests/test_operator.py keeps the
    committed file equal to it)."""
    from generators.render import yaml_bytes
    from generators.spec import load_schema

    return yaml_bytes(service_reliability_crd(load_schema("service.schema.json")), SCHEMA_SOURCE)


_FORBIDDEN = frozenset({"$ref", "$schema", "$id", "definitions", "$defs", "patternProperties", "propertyNames",
                        "const", "if", "then", "else", "dependentRequired", "uniqueItems", "x-messages"})


def structural_problems(node: Any, where: str = "", root: bool = True) -> list[str]:
    """Where ``node`` breaks the rules of a structural schema that the API server enforces on a CRD
    (the ones a translation of our schema could break): every node typed (or int-or-string, or
    preserving unknown fields), no references or keywords OpenAPI 3.0 lacks, ``additionalProperties``
    never false nor beside ``properties``, boolean exclusive bounds, patterns RE2 accepts."""
    import re2

    problems: list[str] = []
    if not isinstance(node, dict):
        return [f"{where or '/'}: not a schema"]
    for key in sorted(set(node) & _FORBIDDEN):
        problems.append(f"{where or '/'}: {key} is not allowed")
    if "type" not in node and not node.get("x-kubernetes-int-or-string") \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{where or '/'}: no type")
    if "additionalProperties" in node and ("properties" in node or node["additionalProperties"] is False):
        problems.append(f"{where or '/'}: additionalProperties with properties, or false")
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if key in node and not isinstance(node[key], bool):
            problems.append(f"{where or '/'}: {key} must be a boolean")
    if "pattern" in node:
        try:
            re2.compile(node["pattern"])
        except re2.error as exc:  # google-re2 raises its own error type
            problems.append(f"{where or '/'}: pattern {node['pattern']!r}: {exc}")
    for name, child in node.get("properties", {}).items():
        problems += structural_problems(child, f"{where}/{name}", False)
    if isinstance(node.get("items"), dict):
        problems += structural_problems(node["items"], f"{where}/items", False)
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_problems(node["additionalProperties"], f"{where}/*", False)
    return problems


__all__ = ["API_VERSION", "CONDITION_TYPES", "crd_yaml", "GROUP", "KIND", "NotStructural", "PLURAL", "VERSION",
           "service_reliability_crd", "structural", "structural_problems"]
