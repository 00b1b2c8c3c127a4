"""The composite SLOs' doit tasks: one ``composite:<name>`` per file of services/composites/ (docs/composites.md).

A composite's task depends on its file and on the spec files of its component services (and of the
service its alerts are routed via), found by service name in the plan. So editing one component's spec
rebuilds that service and the composites that use it, nothing else. The plan reads each composite file's
YAML only for those names (no schema check, which would cost a no-op build the jsonschema import); the
action validates it fully against the component specs. A component whose spec is gone or broken fails the
task with the composite's error lines and leaves every output as it was; the composite's files appear
whole or not at all (generated first, then written).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from generators.composite import (COMPOSITES_DIR, LoadedComposite, bind, component_errors, composite_paths,
                                  composite_warnings, load_composite)
from generators.errors import SpecError, SpecErrors, as_errors, sort_key
from generators.model import Service
from generators.render import write_all
from nthlayer.buildsys.outputs import remove_leftovers, targets_unedited
from nthlayer.buildsys.plan import BuildPlan, load_service
from nthlayer.buildsys.reporter import SpecFailure

# The generator code a composite's files depend on, besides the spec-loading core (kinds.CORE_CODE).
CODE = ("composite.py", "composite_rules.py", "composite_tests.py", "composite_openslo.py", "openslo.py",
        "slo_rules.py", "sli_queries.py", "schemas/composite.schema.json")
FILES = ("prometheus/composite.rules.yaml", "prometheus/composite.test.yaml")  # plus openslo/<name>.yaml


def composite_targets(out_dir: str, name: str) -> list[str]:
    base = f"{out_dir}/{COMPOSITES_DIR}/{name}"
    return [f"{base}/{file}" for file in FILES] + [f"{base}/openslo/{name}.yaml"]


class PlanServices(Mapping[str, Service]):
    """The plan's valid services by name, each spec loaded only when asked for: a composite's check
    loads its components' specs and reads the other names only for its did-you-mean."""

    def __init__(self, plan: BuildPlan) -> None:
        self._paths = {entry.name: entry.path for entry in plan.valid if entry.name is not None}

    def __getitem__(self, name: str) -> Service:
        return load_service(self._paths[name])

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._paths))

    def __len__(self) -> int:
        return len(self._paths)


def _invalid_services(plan: BuildPlan) -> dict[str, str]:
    """Services whose spec exists but is invalid: by their last valid name, and by file stem."""
    found: dict[str, str] = {}
    for entry in plan.entries:
        if entry.name is None:
            found.setdefault(entry.stem, entry.path)
            if entry.routing is not None:
                found.setdefault(entry.routing.name, entry.path)
    return found


_READ: dict[tuple[str, int, int], tuple[str | None, list[str]]] = {}


def _read_names(path: str) -> tuple[str | None, list[str]]:
    """(the composite's name, the services it names) from its YAML alone; (None, []) when unreadable.
    Read once per file version and process (the prune task and the composite tasks both ask)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None, []
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _READ:
        _READ[key] = _names_in(path)
    return _READ[key]


def _names_in(path: str) -> tuple[str | None, list[str]]:
    from generators.yamlload import load_yaml

    try:
        data = load_yaml(path).data
    except SpecErrors:
        return None, []
    if not isinstance(data, dict):
        return None, []
    names = [c.get("service") for c in data.get("components", ()) if isinstance(c, dict)] \
        if isinstance(data.get("components"), list) else []
    alerting = data.get("alerting")
    if isinstance(alerting, dict):
        names.append(alerting.get("route_via"))
    name = data.get("name")
    return (name if isinstance(name, str) else None), sorted({n for n in names if isinstance(n, str)})


def check_composite(path: str, plan: BuildPlan) -> tuple[LoadedComposite, Any] | list[SpecError]:
    """The composite of ``path`` validated against the plan's specs and bound to its components, or
    its error lines."""
    try:
        loaded = load_composite(path)
    except SpecErrors as exc:
        return list(exc.errors)
    services = PlanServices(plan)
    problems = component_errors(loaded, services, _invalid_services(plan))
    errors = [p for p in problems if not p.warning]
    warnings = composite_warnings(loaded) + [p for p in problems if p.warning]
    if plan.strict:
        errors, warnings = errors + as_errors(warnings), []
    if errors:
        return sorted(errors, key=sort_key)
    for warning in sorted(warnings, key=sort_key):
        print(warning.format(), file=sys.stderr)
    composite, members = bind(loaded.composite, services)
    return LoadedComposite(loaded.located, composite), members


def composite_files_of(path: str, plan: BuildPlan) -> dict[str, bytes] | list[SpecError]:
    """The files of one composite as the build writes them, or its error lines."""
    from generators.composite_rules import composite_files

    checked = check_composite(path, plan)
    if isinstance(checked, list):
        return checked
    loaded, members = checked
    name = loaded.composite.name
    return composite_files(loaded.composite, members, f"{plan.out_dir}/{COMPOSITES_DIR}/{name}")


def _action(path: str, plan: BuildPlan, clash: str | None) -> Any:
    def action() -> Any:
        if clash is not None:
            return SpecFailure(clash)
        made = composite_files_of(path, plan)
        if isinstance(made, list):
            return SpecFailure("\n".join(e.format() for e in made))
        folders = sorted({os.path.dirname(p) for p in made})
        remove_leftovers(folders)  # a killed build's temp files
        write_all(made)
        for folder in folders:  # an OpenSLO file of the composite's former name
            for name in os.listdir(folder):
                stale = os.path.join(folder, name)
                if stale not in made and name.endswith(".yaml") and os.path.isfile(stale):
                    os.remove(stale)
        return None

    action.__name__ = "build_composite"
    return action


def composite_names(plan: BuildPlan) -> dict[str, str | None]:
    """Each composite file → the name it declares (None when unreadable)."""
    return {path: _read_names(path)[0] for path in composite_paths(plan.services_dir)}


def composite_tasks(plan: BuildPlan) -> Iterator[dict[str, Any]]:
    """One doit sub-task per composite file (``composite:<file stem>``)."""
    from doit.tools import config_changed

    from nthlayer.buildsys.tasks import clean_targets

    paths = composite_paths(plan.services_dir)
    if not paths:
        return
    code_stamp = code_fingerprint()
    by_name = {entry.name: entry.path for entry in plan.valid if entry.name is not None}
    invalid = _invalid_services(plan)
    read = {path: _read_names(path) for path in paths}
    owners: dict[str, list[str]] = {}
    for path, (name, _) in read.items():
        if name is not None:
            owners.setdefault(name, []).append(path)
    stems: dict[str, int] = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        stems[stem] = stems.get(stem, 0) + 1
    for path in paths:
        name, services = read[path]
        stem = os.path.splitext(os.path.basename(path))[0]
        clash = None
        if name is not None and len(owners[name]) > 1:
            others = ", ".join(p for p in owners[name] if p != path)
            clash = f"{path}:1:1: /name: duplicate composite name '{name}' (also in {others})"
        found = {service: by_name.get(service) or invalid.get(service) for service in services}
        deps = [path] + sorted({p for p in found.values() if p is not None and os.path.isfile(p)})
        outputs = composite_targets(plan.out_dir, name) if name is not None and clash is None else []
        task: dict[str, Any] = {
            "name": stem if stems[stem] == 1 else path,
            "actions": [_action(path, plan, clash)],
            "file_dep": deps,
            "targets": outputs,
            # A component spec deleted or added is a change too (doit notices edited deps, not removed ones).
            "uptodate": [config_changed({"code": code_stamp, "components": found, "strict": plan.strict}),
                         targets_unedited(outputs)],
            "clean": [(clean_targets, [outputs, plan.out_dir])],
        }
        if clash is not None:
            task["uptodate"] = [False]
        yield task


def prune_composites(out_dir: str, keep: list[str]) -> None:
    """Remove out/composites/<name>/ of composites whose file is gone (or that declare another name now),
    and out/composites/ itself once no composite is declared. (The prune runs beside the composite tasks:
    an empty folder of declared composites may be one a composite task has just made, to write in.)"""
    import shutil

    folder = os.path.join(out_dir, COMPOSITES_DIR)
    if not os.path.isdir(folder):
        return None
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name not in keep and os.path.isdir(path) and not name.startswith("."):
            shutil.rmtree(path)
            print(f"removed {path} (its composite file is gone)")
    if not keep and not os.listdir(folder):
        os.rmdir(folder)
    return None


def expected_composite_files(plan: BuildPlan) -> tuple[dict[str, bytes], list[str]]:
    """Every composite's files (``nthlayer build --check``), and the error lines of the broken ones."""
    files: dict[str, bytes] = {}
    errors: list[str] = []
    for path in composite_paths(plan.services_dir):
        made = composite_files_of(path, plan)
        if isinstance(made, list):
            errors += [e.format() for e in made]
        else:
            files.update(made)
    return files, errors


_FINGERPRINT: list[str] = []


def code_fingerprint() -> str:
    """One hash of the generator code the composites' files depend on, computed once per run (the
    tasks compare it through doit's ``uptodate``, as the shared kinds do)."""
    if not _FINGERPRINT:
        import hashlib

        from nthlayer.buildsys.kinds import CORE_CODE, GENERATORS_DIR

        digest = hashlib.sha256()
        for name in (*CORE_CODE, *CODE):
            digest.update(name.encode() + b"\0" + (GENERATORS_DIR / name).read_bytes() + b"\0")
        _FINGERPRINT.append(digest.hexdigest())
    return _FINGERPRINT[0]


__all__ = ["composite_tasks", "composite_targets", "prune_composites", "expected_composite_files", "CODE"]
