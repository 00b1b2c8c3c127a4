"""Validate a Kubernetes manifest the way the API server would: its CRD's ``openAPIV3Schema`` as JSON Schema.

A CRD's schema is OpenAPI v3.0 with Kubernetes extensions, not JSON Schema. The translation, keyword by
keyword (what the API server does → what the JSON Schema says):

- ``nullable: true`` → ``null`` is one more allowed type.
- ``x-kubernetes-int-or-string: true`` → integer or string.
- ``exclusiveMinimum: true`` (OpenAPI 3.0: a flag beside ``minimum``) → the number form of JSON Schema.
- Pruning: an object's fields not in ``properties`` are silently dropped (unless
  ``x-kubernetes-preserve-unknown-fields``), and ``kubectl apply`` (``--validate=strict``) refuses them →
  ``additionalProperties: false``. A field the server would drop is a bug in what we emit, so it fails.
- ``x-kubernetes-list-type: set`` → ``uniqueItems``; ``map`` with ``x-kubernetes-list-map-keys`` → the key
  tuple is unique per list (checked after the schema, :func:`_list_map_problems`); ``atomic`` → nothing.
- ``x-kubernetes-embedded-resource`` → ``apiVersion`` and ``kind`` required.
- ``x-kubernetes-map-type``: about server-side apply, not validity → nothing.
- ``pattern`` → matched with RE2 (Go's regexp, which the API server uses; ``^(?i)…`` is valid there and
  not in Python's ``re``), as the keyword :data:`RE2_PATTERN`.
- ``format: int32/int64`` → the integer range; other formats (``date-time``…) are not checked.
- ``x-kubernetes-validations`` (CEL rules): evaluated with ``cel-python`` (the test extra) on every field of
  the manifest they sit on, ``self`` bound to it, as the API server does. A rule it cannot evaluate (a
  Kubernetes CEL library function it lacks) is a problem line of its own, never a silent pass.

``metadata`` is checked as the API server's ObjectMeta validation does (name, namespace, labels,
annotations, ownerReferences), since a CRD's schema leaves it to the server.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources
from typing import Any, Iterator, NamedTuple

from generators.k8s_names import (dns1123_label_problem, dns1123_subdomain_problem, label_key_problem,
                                  label_value_problem)
from generators.schema_messages import describe
from generators.yamlload import pointer_of

CRD_FILES = {
    ("monitoring.coreos.com", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
    ("monitoring.coreos.com", "AlertmanagerConfig"): "monitoring.coreos.com_alertmanagerconfigs.yaml",
    ("source.toolkit.fluxcd.io", "GitRepository"): "source.toolkit.fluxcd.io_gitrepositories.yaml",
    ("kustomize.toolkit.fluxcd.io", "Kustomization"): "kustomize.toolkit.fluxcd.io_kustomizations.yaml",
}
RE2_PATTERN = "re2Pattern"  # the API server matches patterns with Go's regexp (RE2), so do we
_INT_RANGES = {"int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1)}
_ANNOTATIONS_MAX_BYTES = 256 * 1024


class CelRule(NamedTuple):
    """An ``x-kubernetes-validations`` rule, at a schema path (``*`` for any list item or map value)."""

    path: tuple[str, ...]
    rule: str
    message: str


@lru_cache(maxsize=None)
def kubernetes_loader() -> Any:
    """A safe PyYAML loader that reads YAML as the Kubernetes tools write it. PyYAML follows YAML 1.1, where
    a plain ``=`` is the "value" type it cannot build (an enum of matchTypes holds one, and kubectl writes
    ``matchType: =``): it is read as the string it is in YAML 1.2."""
    import yaml

    class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    _Loader.add_constructor("tag:yaml.org,2002:value", lambda self, node: self.construct_scalar(node))
    return _Loader


def load_yaml_text(text: str) -> Any:
    """One YAML document read with :func:`kubernetes_loader`."""
    import yaml

    return yaml.load(text, Loader=kubernetes_loader())  # noqa: S506 - a safe loader with one more scalar type


@lru_cache(maxsize=None)
def load_crd(file_name: str) -> dict[str, Any]:
    """A vendored CRD (generators/schemas/crds/), parsed."""
    text = resources.files("generators").joinpath("schemas", "crds", file_name).read_text(encoding="utf-8")
    return load_yaml_text(text)


def crd_version(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """The entry of ``spec.versions`` named ``version``; KeyError if the CRD does not serve it."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version and entry.get("served", True):
            return entry
    raise KeyError(f"{crd['metadata']['name']} does not serve version {version}")


def to_json_schema(node: dict[str, Any], path: tuple[str, ...] = (), rules: list[CelRule] | None = None,
                   list_maps: list[tuple[tuple[str, ...], tuple[str, ...]]] | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 7) of an OpenAPI v3 schema node with Kubernetes extensions (module doc).
    CEL rules and list-map keys met on the way are appended to ``rules`` and ``list_maps``."""
    out: dict[str, Any] = {}
    if "pattern" in node:
        out[RE2_PATTERN] = node["pattern"]
    for key in ("type", "enum", "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems",
                "uniqueItems", "minProperties", "maxProperties", "required", "multipleOf"):
        if key in node:
            out[key] = copy.deepcopy(node[key])
    if node.get("exclusiveMinimum") is True and "minimum" in node:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("exclusiveMaximum") is True and "maximum" in node:
        out["exclusiveMaximum"] = out.pop("maximum")
    if node.get("format") in _INT_RANGES:
        low, high = _INT_RANGES[node["format"]]
        out.setdefault("minimum", low)
        out.setdefault("maximum", high)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node and not (key == "anyOf" and node.get("x-kubernetes-int-or-string")):
            out[key] = [to_json_schema(item, path, rules, list_maps) for item in node[key]]
    if "not" in node:
        out["not"] = to_json_schema(node["not"], path, rules, list_maps)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "items" in node:
        out["items"] = to_json_schema(node["items"], (*path, "*"), rules, list_maps)
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set":
        out["uniqueItems"] = True
    elif list_type == "map" and list_maps is not None:
        list_maps.append((path, tuple(node.get("x-kubernetes-list-map-keys", ()))))
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    if "properties" in node:
        out["properties"] = {name: to_json_schema(child, (*path, name), rules, list_maps)
                             for name, child in node["properties"].items()}
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = to_json_schema(additional, (*path, "*"), rules, list_maps)
    elif additional is False or (node.get("type") == "object" and not preserve and additional is None
                                 and not node.get("x-kubernetes-embedded-resource")):
        out["additionalProperties"] = False  # the server prunes (drops) these fields: refuse them
    if node.get("x-kubernetes-embedded-resource"):
        out["required"] = sorted({*out.get("required", ()), "apiVersion", "kind"})
    if rules is not None:
        for rule in node.get("x-kubernetes-validations", ()):
            rules.append(CelRule(path, rule["rule"], rule.get("message", "")))
    return out


class CrdValidator:
    """Checks manifests of one kind and version against its CRD."""

    def __init__(self, crd: dict[str, Any], version: str) -> None:
        self.group = crd["spec"]["group"]
        self.kind = crd["spec"]["names"]["kind"]
        self.version = version
        self.namespaced = crd["spec"].get("scope", "Namespaced") == "Namespaced"
        self.rules: list[CelRule] = []
        self.list_maps: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        openapi = crd_version(crd, version)["schema"]["openAPIV3Schema"]
        self.schema = to_json_schema(openapi, (), self.rules, self.list_maps)
        # The API server validates metadata itself (below); the CRD's `metadata: {type: object}` says nothing.
        self.schema.setdefault("properties", {})["metadata"] = {"type": "object"}
        validator = _validator_class()
        validator.check_schema(self.schema)
        self._validator = validator(self.schema)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    def problems(self, manifest: Any) -> list[str]:
        """Every reason the API server would refuse ``manifest`` (``/pointer: message`` lines, sorted), and
        one line per CEL rule this module cannot evaluate whose field the manifest sets."""
        if not isinstance(manifest, dict):
            return ["/: a manifest must be a mapping"]
        found: list[str] = []
        if manifest.get("apiVersion") != self.api_version:
            found.append(f"/apiVersion: {manifest.get('apiVersion')!r} is not {self.api_version!r}")
        if manifest.get("kind") != self.kind:
            found.append(f"/kind: {manifest.get('kind')!r} is not {self.kind!r}")
        found += metadata_problems(manifest.get("metadata"), self.namespaced)
        for error in self._validator.iter_errors(manifest):
            found.append(f"{pointer_of(error.absolute_path) or '/'}: {describe(error)}")
        found += _list_map_problems(manifest, self.list_maps)
        for rule in self.rules:
            for where in _present(manifest, rule.path):
                found += _cel_problems(rule, manifest, where)
        return sorted(set(found))


@lru_cache(maxsize=None)
def _validator_class() -> Any:
    """Draft 7, plus :data:`RE2_PATTERN`."""
    import re2
    from jsonschema import Draft7Validator, ValidationError, validators

    compiled: dict[str, Any] = {}

    def re2_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if not validator.is_type(instance, "string"):
            return
        if pattern not in compiled:
            compiled[pattern] = re2.compile(pattern)
        if not compiled[pattern].search(instance):
            yield ValidationError(f"{instance!r} does not match {pattern!r}", validator="pattern")

    return validators.extend(Draft7Validator, {RE2_PATTERN: re2_pattern})


@lru_cache(maxsize=None)
def validator_for(api_version: str, kind: str) -> CrdValidator:
    """The validator of a vendored CRD, by the manifest's apiVersion and kind; KeyError if none is vendored."""
    group, _, version = api_version.rpartition("/")
    return CrdValidator(load_crd(CRD_FILES[(group, kind)]), version)


def manifest_problems(manifest: Any) -> list[str]:
    """:meth:`CrdValidator.problems` for a manifest of any vendored kind."""
    if not isinstance(manifest, dict) or (str(manifest.get("apiVersion", "")).rpartition("/")[0],
                                          manifest.get("kind")) not in CRD_FILES:
        kind = manifest.get("kind") if isinstance(manifest, dict) else None
        return [f"/kind: no vendored CRD for {kind!r}"]
    return validator_for(manifest["apiVersion"], manifest["kind"]).problems(manifest)


def metadata_problems(metadata: Any, namespaced: bool = True) -> list[str]:
    """ObjectMeta as the API server checks it on create (the fields nthlayer writes)."""
    if not isinstance(metadata, dict):
        return ["/metadata: must be a mapping"]
    found = []
    name = metadata.get("name")
    if not isinstance(name, str) or dns1123_subdomain_problem(name):
        found.append(f"/metadata/name: {name!r} {dns1123_subdomain_problem(name) if isinstance(name, str) else 'must be a string'}")
    namespace = metadata.get("namespace")
    if namespaced and namespace is not None:
        problem = dns1123_label_problem(namespace) if isinstance(namespace, str) else "must be a string"
        if problem:
            found.append(f"/metadata/namespace: {namespace!r} {problem}")
    for field in ("labels", "annotations"):
        values = metadata.get(field, {})
        if not isinstance(values, dict):
            found.append(f"/metadata/{field}: must be a mapping")
            continue
        for key, value in values.items():
            token = str(key).replace("~", "~0").replace("/", "~1")
            problem = label_key_problem(key) if isinstance(key, str) else "must be a string"
            if problem:
                found.append(f"/metadata/{field}/{token}: key {key!r}: {problem}")
            if not isinstance(value, str):
                found.append(f"/metadata/{field}/{token}: must be a string")
            elif field == "labels" and label_value_problem(value):
                found.append(f"/metadata/labels/{token}: value {value!r} {label_value_problem(value)}")
        if field == "annotations" and sum(len(str(k)) + len(str(v)) for k, v in values.items()) > _ANNOTATIONS_MAX_BYTES:
            found.append("/metadata/annotations: more than 256 KiB")
    for index, owner in enumerate(metadata.get("ownerReferences", ()) or ()):
        for field in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(owner, dict) or not owner.get(field):
                found.append(f"/metadata/ownerReferences/{index}/{field}: required")
    return found


def _present(value: Any, path: tuple[str, ...], where: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The instance locations a schema path (``*``: every item or value) reaches in ``value``."""
    if not path:
        yield where
        return
    head, rest = path[0], path[1:]
    if head == "*":
        items = enumerate(value) if isinstance(value, list) else value.items() if isinstance(value, dict) else ()
        for key, item in items:
            yield from _present(item, rest, (*where, key))
    elif isinstance(value, dict) and head in value:
        yield from _present(value[head], rest, (*where, head))


def _at(manifest: Any, where: tuple[Any, ...]) -> Any:
    value = manifest
    for part in where:
        value = value[part]
    return value


@lru_cache(maxsize=None)
def _cel_program(rule: str) -> Any:
    import celpy

    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def _cel_problems(rule: CelRule, manifest: Any, where: tuple[Any, ...]) -> list[str]:
    """The rule's verdict on the field at ``where`` (``self``): its message when false."""
    pointer = pointer_of(where) or "/"
    try:
        import celpy

        verdict = _cel_program(rule.rule).evaluate({"self": celpy.json_to_cel(_at(manifest, where))})
    except Exception as exc:  # noqa: BLE001 - any failure to evaluate is reported, never a pass
        return [f"{pointer}: CEL rule not evaluated ({type(exc).__name__}): {rule.rule}"]
    if isinstance(verdict, celpy.CELEvalError):
        return [f"{pointer}: CEL rule not evaluated ({verdict.args[0] if verdict.args else 'error'}): {rule.rule}"]
    if not bool(verdict):
        return [f"{pointer}: {rule.message or 'failed CEL rule ' + rule.rule}"]
    return []


def _list_map_problems(manifest: Any, list_maps: list[tuple[tuple[str, ...], tuple[str, ...]]]) -> list[str]:
    found = []
    for path, keys in list_maps:
        for where in _present(manifest, path):
            value = _at(manifest, where)
            if not isinstance(value, list):
                continue
            seen: set[tuple[Any, ...]] = set()
            for item in value:
                if isinstance(item, dict):
                    key = tuple(repr(item.get(name)) for name in keys)
                    if key in seen:
                        found.append(f"{pointer_of(where)}: duplicate entry for keys {', '.join(keys)}: "
                                     f"{', '.join(repr(item.get(name)) for name in keys)}")
                    seen.add(key)
    return found


__all__ = ["CRD_FILES", "CelRule", "CrdValidator", "crd_version", "kubernetes_loader", "load_crd", "load_yaml_text", "manifest_problems",
           "metadata_problems", "to_json_schema", "validator_for"]
