"""Plugins in the build: the plugins a build uses, their stamps, what an edit of one makes stale, and
the output formats as artifact kinds (``format:<name>``, files under out/<service>/<name>/).

The build loads its plugins once, in the main process, before it plans and before doit forks its
workers (they inherit them). Which plugins apply to a spec, and the SLOs they give it, are computed when
the spec is validated and kept with its result in state/spec-index.json (whose code fingerprint includes
every plugin's), so a no-op build asks no plugin anything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from generators.errors import SpecError, UserError
from generators.render import write_if_changed
from nthlayer.buildsys.plugin_calls import applies, apply_slo_generators, render_output
from nthlayer.buildsys.plugins import FORMAT_NAME, LoadedPlugin, PluginError, PluginSet, load_plugins, plugin_files

FORMAT_PREFIX = "format:"
# The kinds whose files restate a service's SLOs: rebuilt when an SLO generator that applies changes.
SLO_KINDS = ("openslo", "slo_rules")


@dataclass
class BuildPlugins:
    """The plugins of this build (empty when none), or the line saying why they could not be loaded."""

    plugins: PluginSet = field(default_factory=PluginSet)
    error: SpecError | None = None
    stamps: dict[str, str] = field(default_factory=dict)  # plugin key → state/plugins/<key>.sha256

    @property
    def by_key(self) -> dict[str, LoadedPlugin]:
        return {plugin.key: plugin for plugin in self.plugins.plugins}

    def fingerprint(self) -> str:
        """What the spec index's verdicts depend on: every plugin's identity and code."""
        if self.error is not None:
            return "error:" + self.error.format()
        return self.plugins.fingerprint()


_ACTIVE: list[BuildPlugins] = [BuildPlugins()]


def active() -> BuildPlugins:
    """The plugins of the build in progress (none until :func:`activate`)."""
    return _ACTIVE[0]


def activate(state_dir: str | None, given: Iterable[str] = ()) -> BuildPlugins:
    """Load this build's plugins (``given`` files, else $NTHLAYER_PLUGINS; the configuration file's; the
    installed entry points) and write each one's stamp under ``state_dir``/plugins (None: write nothing,
    ``nthlayer build --check``). A plugin that cannot be loaded is kept as the error every service's task
    reports."""
    try:
        plugins = load_plugins(plugin_files(given))
    except PluginError as exc:
        build = BuildPlugins(error=exc.as_spec_error())
    except UserError as exc:  # the configuration file's [build] plugins
        build = BuildPlugins(error=SpecError(*_config_error(str(exc))))
    else:
        build = BuildPlugins(plugins)
        if state_dir is not None:
            folder = os.path.join(state_dir, "plugins")
            for plugin in plugins.plugins:
                path = os.path.join(folder, f"{plugin.key}.sha256")
                write_if_changed(path, (plugin.fingerprint + "\n").encode())
                build.stamps[plugin.key] = path
            _remove_other_stamps(folder, set(build.stamps.values()))
    _ACTIVE[0] = build
    return build


def _config_error(message: str) -> tuple[str, int, int, str, str]:
    """A configuration error line (``nthlayer.toml:2:1: /build/plugins: …``) as a SpecError's fields."""
    path, line, col, rest = (message.split(":", 3) + ["", "", ""])[:4]
    pointer, _, text = rest.strip().partition(": ")
    try:
        return path, int(line), int(col), pointer, text
    except ValueError:
        return "nthlayer.toml", 1, 1, "", message


def _remove_other_stamps(folder: str, keep: set[str]) -> None:
    """Stamps of plugins no longer loaded: a plugin configured again later starts afresh."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.endswith(".sha256") and path not in keep:
            os.remove(path)


def apply_plugins(spec: Any) -> tuple[Any, tuple[str, ...]]:
    """A valid spec with the build's SLO generators applied, and the keys of every plugin that applies to
    it (SLO generators and output formats), which its task depends on. Raise PluginError."""
    build = active()
    if not build.plugins.plugins:
        return spec, ()
    spec, generators = apply_slo_generators(spec, build.plugins.slo_generators)
    keys = [plugin.key for plugin in generators]
    keys += [plugin.key for plugin in build.plugins.output_formats if applies(plugin, spec.service)]
    return spec, tuple(keys)


def format_kind(plugin: LoadedPlugin) -> str:
    return FORMAT_PREFIX + type(plugin.plugin).format  # type: ignore[attr-defined]


def format_kinds(keys: Iterable[str]) -> list[str]:
    """The output-format kinds among the plugins ``keys`` of a spec, in load order (worked out once per
    set of keys while the same plugins are active: a build asks for every spec, a plugin's key is a hash)."""
    build = active()
    if _FORMAT_KINDS[0] is not build:
        _FORMAT_KINDS[:] = [build, {}]
    known: dict[tuple[str, ...], list[str]] = _FORMAT_KINDS[1]
    chosen = tuple(keys)
    if chosen not in known:
        by_key = build.by_key
        wanted = set(chosen)
        known[chosen] = [format_kind(p) for p in build.plugins.output_formats if p.key in wanted and p.key in by_key]
    return list(known[chosen])


_FORMAT_KINDS: list[Any] = [None, {}]  # the active plugins they were worked out for, and keys → kinds


def stale_plugin_kinds(changed: set[str], keys: Iterable[str]) -> set[str]:
    """The kinds a change of plugin stamps among ``changed`` makes stale for a spec with plugins ``keys``:
    an SLO generator's, the kinds that restate SLOs (and every output format of the spec); an output
    format's, its own kind."""
    build = active()
    by_key = build.by_key
    kinds: set[str] = set()
    for key in keys:
        if build.stamps.get(key) not in changed or key not in by_key:
            continue
        plugin = by_key[key]
        if plugin.kind == "slo-generator":
            kinds.update(SLO_KINDS)
            kinds.update(format_kinds(keys))
        else:
            kinds.add(format_kind(plugin))
    return kinds


def format_files(kind: str, service: Any, out_dir: str) -> dict[str, bytes]:
    """The files of output-format kind ``kind`` for ``service`` (PluginError when the plugin fails)."""
    name = kind[len(FORMAT_PREFIX):]
    plugin = next(p for p in active().plugins.output_formats if type(p.plugin).format == name)  # type: ignore[attr-defined]
    return render_output(plugin, service, out_dir)


def remove_stale_format_files(base: str, kinds: Iterable[str], files: dict[str, bytes], built_in: set[str],
                              everything: bool) -> None:
    """Files an output format no longer writes: in the folder of each regenerated format kind, those not in
    ``files``; and, when the whole service was regenerated (``everything``), the folders of formats that no
    longer apply (a sub-folder of out/<service>/ named like a format, not one of the ``built_in`` ones)."""
    formats = {kind[len(FORMAT_PREFIX):] for kind in kinds if kind.startswith(FORMAT_PREFIX)}
    for name in formats:
        folder = os.path.join(base, name)
        for root, _dirs, names in os.walk(folder, topdown=False):
            for file in names:
                path = os.path.join(root, file)
                if path not in files and not file.startswith("."):
                    os.remove(path)
            if root != folder and not os.listdir(root):
                os.rmdir(root)
    if not everything or not os.path.isdir(base):
        return
    import shutil

    current = {kind[len(FORMAT_PREFIX):] for kind in kinds if kind.startswith(FORMAT_PREFIX)}
    for name in os.listdir(base):
        path = os.path.join(base, name)
        if (name not in built_in and name not in current and FORMAT_NAME.match(name) and os.path.isdir(path)
                and not os.path.islink(path)):
            shutil.rmtree(path)


__all__ = ["BuildPlugins", "activate", "active", "apply_plugins", "format_kinds", "stale_plugin_kinds",
           "format_files", "remove_stale_format_files", "FORMAT_PREFIX", "SLO_KINDS"]
