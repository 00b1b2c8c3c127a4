"""Running plugins: every call attributed to the plugin, every return checked before anything uses it.

An exception, a return the spec checks reject, a path leaving the format's folder: each becomes one
:class:`~nthlayer.buildsys.plugins.PluginError` line ``plugin FILE:LINE: service: what: message``, which
fails only the service at hand. Plugins get the service frozen all the way down (:func:`frozen_view`).
"""
from __future__ import annotations

import os
import re
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from generators.errors import SpecError, SpecErrors
from nthlayer.buildsys.plugins import LoadedPlugin, PluginError, PluginSet
from nthlayer.plugin import IntegrationContext


_READ_ONLY_TIERS: dict[int, Any] = {}


def frozen_view(service: Any) -> Any:
    """``service`` as plugins get it: frozen all the way down. The model's dataclasses are frozen, but a
    tier holds dicts shared by every service of the tier; a plugin must not be able to change them."""
    tier = service.tier
    view = _READ_ONLY_TIERS.get(tier.number)
    if view is None or view.availability != tier.availability:
        view = _READ_ONLY_TIERS[tier.number] = replace(
            tier, burn_alerts=MappingProxyType(dict(tier.burn_alerts)),
            budget_alerts=MappingProxyType(dict(tier.budget_alerts)))
    return replace(service, tier=view)


def applies(plugin: LoadedPlugin, service: Any) -> bool:
    """``plugin.applies_to(service)``, strictly a bool."""
    answer = plugin.call("applies_to", f"{service.name}: applies_to()", frozen_view(service))
    if not isinstance(answer, bool):
        raise PluginError(plugin.source, plugin.line_of("applies_to"),
                          f"{service.name}: applies_to() must return True or False, not {type(answer).__name__}")
    return answer


def apply_slo_generators(spec: Any, generators: Iterable[LoadedPlugin]) -> tuple[Any, list[LoadedPlugin]]:
    """``spec`` (a generators.spec.LoadedSpec) with each applicable generator's SLOs merged in and the
    result validated by the spec checks; and the generators that applied. Raise :class:`PluginError`."""
    from generators.slo_merge import EntryProblem, merge_slo_entries
    from generators.spec import LoadedSpec, validate_located
    from generators.yamlload import Located

    applied: list[LoadedPlugin] = []
    for plugin in generators:
        service = spec.service
        if not applies(plugin, service):
            continue
        entries = plugin.call("generate", f"{service.name}: generate()", frozen_view(service))
        line = plugin.line_of("generate")
        try:
            data, origins = merge_slo_entries(spec.located.data, entries)
        except EntryProblem as exc:
            what = f"returned an invalid SLO: entry {exc.index}:" if exc.index is not None else ""
            raise PluginError(plugin.source, line, " ".join(filter(None, [f"{service.name}: generate()", what, str(exc)]))) from None
        try:
            checked = validate_located(Located(spec.located.path, data))
        except SpecErrors as exc:
            first = exc.errors[0]
            raise PluginError(plugin.source, line, f"{service.name}: generate() returned an invalid SLO: "
                                                   f"{_in_entry_terms(first, origins, data)}") from None
        spec = LoadedSpec(spec.located, checked.service)  # the file's marks, for the spec's own messages
        applied.append(plugin)
    return spec, applied


def _in_entry_terms(error: SpecError, origins: Mapping[int, int], data: Mapping[str, Any]) -> str:
    """A merged spec's error, pointing into the plugin's returned list where it can."""
    match = re.match(r"^/slos/(\d+)(.*)$", error.pointer)
    if match and int(match[1]) in origins:
        index = origins[int(match[1])]
        name = data["slos"][int(match[1])].get("name")
        return f"entry {index} ({name}): {match[2] or '/'}: {error.message}"
    return f"{error.pointer or '/'}: {error.message}"


def _encoded(path: str, content: Any, source: str) -> bytes:
    from generators.render import json_bytes, yaml_bytes

    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode("utf-8")
    if isinstance(content, Mapping):
        if path.endswith((".yaml", ".yml")):
            return yaml_bytes(_plain(content), source)
        if path.endswith(".json"):
            return json_bytes(_plain(content), source)
        raise ValueError("a mapping can be written to a .yaml, .yml or .json file only; return bytes or text")
    raise ValueError(f"the content must be bytes, text or a mapping, not {type(content).__name__}")


def _plain(value: Any) -> Any:
    from generators.slo_merge import plain

    return plain(value)


def render_output(plugin: LoadedPlugin, service: Any, out_dir: str) -> dict[str, bytes]:
    """An output format's files for ``service``: {path under out/<service>/<format>/: bytes}. A path
    that is absolute or leaves that folder, or content that is not bytes, text or a mapping, is the
    plugin's error (at its render method's line)."""
    fmt = type(plugin.plugin).format  # type: ignore[attr-defined]
    folder = os.path.join(out_dir, service.name, fmt)
    files = plugin.call("render", f"{service.name}: render()", frozen_view(service))
    line = plugin.line_of("render")
    if not isinstance(files, Mapping):
        raise PluginError(plugin.source, line, f"{service.name}: render() must return a mapping of relative "
                                               f"path to content, not {type(files).__name__}")
    written: dict[str, bytes] = {}
    for relative in sorted(files, key=str):
        content = files[relative]
        normal = os.path.normpath(relative) if isinstance(relative, str) and relative else ""
        if (not normal or os.path.isabs(relative) or normal == "." or normal.startswith("..")
                or any(part.startswith(".") for part in normal.split(os.sep))):
            raise PluginError(plugin.source, line, (
                f"{service.name}: render() returned path {relative!r} outside its folder {folder}/: "
                "paths are relative to it, without '..' or hidden names"))
        try:
            written[os.path.join(folder, normal)] = _encoded(normal, content, service.source)
        except ValueError as exc:
            raise PluginError(plugin.source, line, f"{service.name}: render() file {normal}: {exc}") from None
    return written


def run_integrations(plugins: PluginSet, command: str, services: Iterable[Any], dry_run: bool,
                     results: Mapping[str, Mapping[str, Any]], say: Callable[[str], None] = print) -> None:
    """Run the integrations hooked to ``command`` after its own work, each with the services it
    applies to (an integration that applies to none is not run)."""
    services = list(services)
    for plugin in plugins.integrations(command):
        chosen = tuple(frozen_view(service) for service in services if applies(plugin, service))
        if not chosen:
            continue
        context = IntegrationContext(command, chosen, dry_run,
                                     {s.name: results.get(s.name, {}) for s in chosen})
        say(f"plugin {plugin.name} ({plugin.source}): {len(chosen)} service{'s' if len(chosen) != 1 else ''}")
        plugin.call("run", f"{command}: run()", context)


__all__ = ["frozen_view", "applies", "apply_slo_generators", "render_output", "run_integrations"]
