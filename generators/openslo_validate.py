"""Validate a folder of OpenSLO v1 YAML files: schema, names and references.

Files may hold several documents ('---'), each loaded with its line marks by
generators.yamlload.load_yaml_documents, so every reported line:col is the one in the real file.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

from generators.errors import SpecError, SpecErrors, sort_key
from generators.spec import schema_errors
from generators.yamlload import Located, load_yaml_documents

SCHEMA = "openslo-v1.schema.json"

# kind → (kind it refers to, where the reference sits in spec, the key holding the name)
_REFERENCES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "SLO": (("SLI", "/spec/indicatorRef", ""), ("Service", "/spec/service", ""),
            ("AlertPolicy", "/spec/alertPolicies", "alertPolicyRef")),
    "AlertPolicy": (("AlertCondition", "/spec/conditions", "conditionRef"),
                    ("AlertNotificationTarget", "/spec/notificationTargets", "targetRef")),
}


def openslo_files(path: str) -> list[str]:
    """The OpenSLO files under ``path`` (or ``path`` itself), sorted.

    In a build output folder (out/) that is each service's ``openslo.yaml`` and every file inside an
    ``openslo/`` folder (the composites'), since out/ also holds Prometheus and Alertmanager YAML;
    elsewhere every *.yaml / *.yml file.
    """
    if not os.path.isdir(path):
        return [path]
    found = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, n) for n in names if n.endswith((".yaml", ".yml")) and not n.startswith(".")]
    in_openslo = [f for f in found if "openslo" in os.path.relpath(f, path).split(os.sep)[:-1]
                  or os.path.basename(f) == "openslo.yaml"]
    return sorted(in_openslo or found)


def load_documents(path: str) -> list[Located]:
    """Every document of one file with line marks; raises SpecErrors on unreadable YAML."""
    return load_yaml_documents(path)


def _name(document: Located) -> str | None:
    data = document.data
    if isinstance(data, dict) and isinstance(data.get("metadata"), dict):
        name = data["metadata"].get("name")
        return name if isinstance(name, str) else None
    return None


def _referenced(document: Located, pointer: str, key: str) -> Iterator[tuple[str, str]]:
    """(pointer, name) of every by-name reference at ``pointer`` (a string or a list of {key: name})."""
    node: Any = document.data
    for part in pointer.strip("/").split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, str) and not key:
        yield pointer, node
    elif isinstance(node, list) and key:
        for index, item in enumerate(node):
            if isinstance(item, dict) and isinstance(item.get(key), str):
                yield f"{pointer}/{index}/{key}", item[key]


def validate_documents(documents: list[Located]) -> list[SpecError]:
    """Schema errors of each document, then duplicate names and dangling references across all of them."""
    errors: list[SpecError] = []
    valid: list[Located] = []
    for document in documents:
        if not isinstance(document.data, dict):
            errors.append(document.error("", "expected an OpenSLO document (a mapping with apiVersion, kind, "
                                             "metadata and spec)"))
            continue
        found = schema_errors(document, SCHEMA)
        errors += found
        if not found:
            valid.append(document)
    names: dict[tuple[str, str], Located] = {}
    for document in valid:
        key = (document.data["kind"], _name(document) or "")
        if key in names:
            first = names[key]
            line = first.where("/metadata/name")[0]
            errors.append(document.error("/metadata/name", (
                f"duplicate {key[0]} name '{key[1]}' (also in {first.path} at line {line})")))
        names.setdefault(key, document)
    kinds_present = {kind for kind, _ in names}
    for document in valid:
        for kind, pointer, key in _REFERENCES.get(document.data["kind"], ()):
            # A Service need not be declared in the same folder (OpenSLO: "may refer").
            if kind == "Service" and kind not in kinds_present:
                continue
            for where, name in _referenced(document, pointer, key):
                if (kind, name) not in names:
                    errors.append(document.error(where, f"no {kind} named '{name}' in these files"))
    return sorted(set(errors), key=sort_key)


def validate_openslo_dir(path: str) -> list[SpecError]:
    """Every problem in the OpenSLO files under ``path`` (a folder or one file), sorted; [] when valid."""
    documents: list[Located] = []
    errors: list[SpecError] = []
    files = openslo_files(path)
    if not os.path.exists(path):
        return [SpecError(path, 1, 1, "", "no such file or directory")]
    for file in files:
        try:
            documents += load_documents(file)
        except SpecErrors as exc:
            errors += exc.errors
    return sorted(set(errors + validate_documents(documents)), key=sort_key)


__all__ = ["validate_openslo_dir", "validate_documents", "load_documents", "openslo_files"]
