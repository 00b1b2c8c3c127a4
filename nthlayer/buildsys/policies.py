"""A project's policies and their verdicts on its specs: what validate, ``policy check`` and the build share.

The policies are the shipped ones (generators/policies/) less those ``[policy] disable`` names, plus the
project's own ``.rego`` files that ``[policy] paths`` lists (nthlayer.toml, docs/policies.md). A spec's
*verdict* is the sorted list of its findings as error lines; the build keeps each spec's verdict in
``state/policy-verdicts.json`` under the policies' digest and the spec file's stamp, so a build whose
specs and policies did not change evaluates nothing (and starts no Rego engine).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, Iterable, Mapping, Protocol

from generators.errors import SpecError, sort_key
from generators.model import Service, build_service
from generators.policy import Finding, PolicyError, PolicySet, unknown_ids
from generators.policy_input import policy_input
from generators.spec import FileSummary
from generators.yamlload import Located, load_yaml
from nthlayer.buildsys.outputs import doit_signature
from nthlayer.config import ConfigError, ProjectConfig, load_config

KEYS = {"paths": "policy files or folders of them (*.rego), relative to nthlayer.toml",
        "disable": "ids of default policies not to evaluate"}


def _strings(config: ProjectConfig, section: Mapping[str, Any], key: str) -> list[str]:
    value = section.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise config.error(f"/policy/{key}", f"{key} must be a list of strings ({KEYS[key]})")
    return value


def project_policies(config: ProjectConfig | None = None) -> PolicySet:
    """The project's policy set, from ``[policy]`` of its configuration file (raises
    :class:`~nthlayer.config.ConfigError` for a bad table, :class:`~generators.policy.PolicyError` for a
    policy file that cannot be used)."""
    config = config or load_config()
    section = config.section("policy")
    for key in section:
        if key not in KEYS:
            raise config.error(f"/policy/{key}", f"unknown key '{key}' in [policy]; known keys: "
                                                 + ", ".join(sorted(KEYS)))
    disabled = _strings(config, section, "disable")
    for index, name, hint in unknown_ids(disabled):
        raise config.error(f"/policy/disable", f"'{name}' (item {index}) is not a default policy: {hint}")
    base = os.path.dirname(config.path) or "."
    paths = [path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))
             for path in _strings(config, section, "paths")]
    for index, path in enumerate(paths):
        if not os.path.exists(path):
            raise config.error("/policy/paths", f"{path} (item {index}) does not exist")
    return PolicySet.load(paths, disabled)


def technology_categories(catalog_dir: str, types: Iterable[str], cache_dir: str | None = None) -> dict[str, str]:
    """The rules catalog's category of each technology type (``database``…); unknown types have none."""
    from generators.catalog import load_technology, load_technology_cached, technology_files
    from generators.errors import SpecErrors

    files = technology_files(catalog_dir)
    categories: dict[str, str] = {}
    for name in sorted(set(types)):
        if name not in files:
            continue
        try:
            tech = load_technology_cached(files[name], cache_dir) if cache_dir else load_technology(files[name])
        except SpecErrors:  # a broken catalog file is reported by validation and the build
            continue
        category = tech.data.get("category")
        if isinstance(category, str):
            categories[name] = category
    return categories


def input_document(located: Located, service: Service, catalog_dir: str, cache_dir: str | None = None
                   ) -> dict[str, Any]:
    """The policy input document of one valid spec (generators.policy_input)."""
    return policy_document(located.data, service, located.path, catalog_dir, cache_dir)


def policy_document(data: Any, service: Service, path: str, catalog_dir: str, cache_dir: str | None = None
                    ) -> dict[str, Any]:
    """:func:`input_document` of a spec's data as written, its model and its file."""
    types = [tech.type for tech in service.technologies]
    return policy_input(data, service, path, technology_categories(catalog_dir, types, cache_dir))


def verdicts(specs: list[tuple[Located, Service]], policies: PolicySet, catalog_dir: str,
             cache_dir: str | None = None, jobs: int = 1, documents: Mapping[str, dict[str, Any] | str] | None = None
             ) -> dict[str, list[SpecError]]:
    """Each spec's findings as error lines (warnings for ``warn``), by file path; raises PolicyError.
    ``documents``: input documents already made (or their JSON text), by file path (the others are made here)."""
    made = documents or {}
    inputs = [made.get(located.path) or input_document(located, service, catalog_dir, cache_dir)
              for located, service in specs]
    results = policies.evaluate_all(inputs, jobs)
    return {located.path: sorted((finding.error(located, located.path) for finding in findings), key=sort_key)
            for (located, _), findings in zip(specs, results)}


def verdict_digest(lines: list[SpecError]) -> str:
    """What a service task depends on: its verdict ('' when the policies find nothing)."""
    if not lines:
        return ""
    return hashlib.sha256(json.dumps(sorted(lines, key=sort_key)).encode()).hexdigest()[:16]


class VerdictCache:
    """``state/policy-verdicts.json``: per spec file, its stamp (size, mtime and what else its index
    entry is keyed by) and its verdict, valid for one policy digest. Written only when it changed."""

    def __init__(self, path: str | None, digest: str) -> None:
        self.path = path
        self.digest = digest
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        if path and os.path.exists(path):
            from nthlayer.buildsys.backend import read_json  # (it imports doit, which validate does not need)

            try:
                data = read_json(path)
                if data.get("policies") == digest:
                    self.entries = data.get("files", {})
            except (OSError, ValueError, AttributeError):
                self.entries = {}
        # Verdicts of these policies were kept: the engine compiled them (a set it refuses keeps none).
        self.proven = bool(self.entries)

    def get(self, path: str, stamp: Any) -> list[SpecError] | None:
        entry = self.entries.get(path)
        if entry is None or entry[0] != stamp:
            return None
        return [SpecError(*line) for line in entry[1]]

    def put(self, path: str, stamp: Any, lines: list[SpecError]) -> None:
        value = [stamp, [list(line) for line in lines]]
        if self.entries.get(path) != value:
            self.entries[path] = value
            self.dirty = True

    def keep_only(self, paths: Iterable[str]) -> None:
        keep = set(paths)
        for path in [p for p in self.entries if p not in keep]:
            del self.entries[path]
            self.dirty = True

    def save(self) -> None:
        if not self.path or not self.dirty:
            return
        from generators.render import write_if_changed
        from nthlayer.buildsys.backend import compact_json

        data = {"policies": self.digest, "files": self.entries}
        write_if_changed(self.path, compact_json(data, sort_keys=True))
        self.dirty = False


VERDICTS_FILE = "policy-verdicts.json"


class Judged(Protocol):
    """What :func:`apply_policies` reads and sets of a build plan's spec entry."""

    path: str
    summary: FileSummary
    errors: list[SpecError]
    warnings: list[SpecError]
    verdict: str


def apply_policies(entries: Iterable[Judged], documents: Mapping[str, dict[str, Any] | str],
                   stamp_of: Callable[[Judged], Any], catalog_dir: str, catalog_cache: str | None,
                   verdicts_path: str | None, jobs: int = 1, record: bool = True,
                   found: Mapping[str, list[Finding]] | None = None, compiled: bool = False) -> str | None:
    """Add each spec's policy findings to its entry (denies to ``errors``, ``warn`` to ``warnings``) and set
    its ``verdict`` digest; return the lines of a configuration or policy error instead (every service
    then fails with them).

    Only valid specs are judged. A verdict is reused from ``verdicts_path`` while the
    policies' digest and the spec's ``stamp_of`` are what they were; the others are evaluated in one
    engine run, from ``documents`` (the input documents the plan's validation made of the specs it
    re-read) or, for an unchanged spec judged again (the policies changed), from its file; ``found``: the
    findings about specs the plan's validation judged already (in Python, generators/policy_native.py),
    valid once the engine has compiled the set: in this run, or (``compiled``, or a verdicts file of the
    same policies) in one before. Without ``record`` the verdicts file is read but not written
    (``nthlayer build --check``).
    """
    try:
        policies = project_policies()
    except (ConfigError, PolicyError) as exc:
        return str(exc)
    cache = VerdictCache(verdicts_path, policies.digest())
    # Specs without errors, its own or cross-file (a spec that fails anyway is not judged: an unknown
    # technology has no catalog category, and a policy's line would only add noise to the error that matters).
    judged = [entry for entry in entries if entry.summary.name is not None and not entry.errors]
    stamps = {entry.path: stamp_of(entry) for entry in judged}
    lines: dict[str, list[SpecError]] = {}
    stale: list[str] = []
    for entry in judged:
        hit = cache.get(entry.path, stamps[entry.path])
        if hit is None:
            stale.append(entry.path)
        else:
            lines[entry.path] = hit
    if stale:
        found = found or {}
        asked = [path for path in stale if path not in found]
        try:
            results = dict(zip(asked, policies.evaluate_all(
                [documents.get(path) or _document(path, catalog_dir, catalog_cache) for path in asked], jobs)))
            if not asked and not compiled and not cache.proven:
                policies.compile()  # the set's errors are the engine's, whoever judged
        except PolicyError as exc:
            return str(exc)
        for path in stale:
            findings = found[path] if path in found else results[path]
            located = load_yaml(path) if findings else None  # marks only where a finding needs a line
            lines[path] = sorted((finding.error(located, path) for finding in findings), key=sort_key)
            cache.put(path, stamps[path], lines[path])
    if record:
        cache.keep_only(stamps)
        cache.save()
    for entry in judged:
        entry.errors += [line for line in lines[entry.path] if not line.warning]
        entry.warnings += [line for line in lines[entry.path] if line.warning]
        entry.verdict = verdict_digest(lines[entry.path])
    return None


def _document(path: str, catalog_dir: str, catalog_cache: str | None) -> dict[str, Any]:
    """The input document of a spec the build's index says is valid (parsed and modelled, not re-checked)."""
    located = load_yaml(path)
    return input_document(located, build_service(located.data, path), catalog_dir, catalog_cache)


@doit_signature
class _VerdictUnchanged:
    """doit uptodate: the spec's policy verdict is the one its task last succeeded with."""

    def __init__(self, digest: str) -> None:
        self.digest = digest

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        digest = self.digest
        task.value_savers.append(lambda: {"policy_verdict": digest})
        return values.get("policy_verdict", "") == digest

    def settled_values(self, known: Any = None) -> dict[str, Any]:
        """The saved values that make this check pass, for the settled fast path (nthlayer.buildsys.settled):
        the verdict as the task saves it."""
        return {"policy_verdict": self.digest}


def verdict_unchanged(digest: str) -> Callable[[Any, dict[str, Any]], bool]:
    """doit uptodate: a service task depends on its spec's verdict, not on the policy files, so editing a
    policy rebuilds only the services whose verdict it changed."""
    return _VerdictUnchanged(digest)


__all__ = ["project_policies", "technology_categories", "input_document", "policy_document", "verdicts", "verdict_digest",
           "VerdictCache", "apply_policies", "verdict_unchanged", "VERDICTS_FILE", "PolicyError", "ConfigError"]
