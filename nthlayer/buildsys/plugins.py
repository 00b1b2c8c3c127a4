"""Finding and loading plugins (the API they implement is nthlayer.plugin; running them:
nthlayer.buildsys.plugin_calls).

Three sources, in this order: files named on the command line (``--plugin path.py``, or
``$NTHLAYER_PLUGINS``, os.pathsep-separated), files listed in ``nthlayer.toml``'s ``[build] plugins``
(relative to that file's folder), and the ``nthlayer.plugins`` entry-point group of installed packages.
A file's plugins are the plugin classes it defines; an entry point names a class or a module.

Everything a plugin does is attributed to it: an exception, a return the spec checks reject, a path
leaving its folder become one line ``plugin FILE:LINE: message`` (the plugin's own line that raised, or
its method's first line for a bad return), never a traceback, and fail only the service at hand.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Iterable

from generators.errors import SpecError, UserError
from nthlayer.plugin import SUPPORTED_API_VERSIONS, Integration, OutputFormat, Plugin, SLOGenerator

ENTRY_POINT_GROUP = "nthlayer.plugins"
PLUGINS_ENV = "NTHLAYER_PLUGINS"
FORMAT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
BUILT_IN_FOLDERS = frozenset({"openslo", "prometheus", "pagerduty.json"})  # out/<service>/ names the build owns
KINDS = (SLOGenerator, OutputFormat, Integration)


class PluginError(UserError):
    """A plugin that cannot be loaded or failed: ``plugin FILE:LINE: message``."""

    def __init__(self, source: str, line: int, message: str) -> None:
        self.source, self.line, self.message = source, line, message
        super().__init__(f"plugin {source}:{line}: {message}")

    def as_spec_error(self) -> SpecError:
        """The same line as the build reports a service's input errors (generators.errors: col 0)."""
        return SpecError(f"plugin {self.source}", self.line, 0, "", self.message)


@dataclass(frozen=True)
class LoadedPlugin:
    """One plugin instance and where it came from."""

    plugin: Plugin
    source: str  # the file its class is defined in, as shown in messages
    origin: str  # `nthlayer plugins list`: the file, or "DIST VERSION (entry point NAME)"
    fingerprint: str  # changes when its code does: the file's hash (and its distribution's version)

    @property
    def name(self) -> str:
        return type(self.plugin).name or type(self.plugin).__name__

    @property
    def kind(self) -> str:
        return self.plugin.kind

    @property
    def api_version(self) -> int:
        return type(self.plugin).api_version

    @property
    def key(self) -> str:
        """A file-name-safe identity (the build's stamp file, state/plugins/KEY.sha256)."""
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.kind}-{self.name}")[:80]
        return f"{slug}-{hashlib.sha256(self.origin.encode()).hexdigest()[:8]}"

    def failure(self, exc: BaseException, what: str) -> PluginError:
        """``exc`` raised by this plugin as one line at the plugin's deepest frame in its own file."""
        line = 0
        for frame in traceback.extract_tb(exc.__traceback__):
            if os.path.abspath(frame.filename) == os.path.abspath(self.source):
                line = frame.lineno or 0
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return PluginError(self.source, line or self.line_of("__init__"), f"{what}: {type(exc).__name__}: {detail}")

    def line_of(self, method: str) -> int:
        """The first line of the plugin class's ``method`` (its class's, when it does not define it)."""
        target = getattr(type(self.plugin), method, None)
        code = getattr(target, "__code__", None)
        if code is not None and os.path.abspath(code.co_filename) == os.path.abspath(self.source):
            return int(code.co_firstlineno)
        try:
            return inspect.getsourcelines(type(self.plugin))[1]
        except (OSError, TypeError):
            return 1

    def call(self, method: str, what: str, *args: Any) -> Any:
        """``plugin.method(*args)``, any exception it raises turned into its :class:`PluginError`."""
        try:
            return getattr(self.plugin, method)(*args)
        except Exception as exc:  # noqa: BLE001 - anything a plugin raises is the plugin's failure
            raise self.failure(exc, what) from None


@dataclass(frozen=True)
class PluginSet:
    """The plugins one command or build uses, in load order."""

    plugins: tuple[LoadedPlugin, ...] = ()

    def of_kind(self, kind: type[Plugin]) -> list[LoadedPlugin]:
        return [loaded for loaded in self.plugins if isinstance(loaded.plugin, kind)]

    @property
    def slo_generators(self) -> list[LoadedPlugin]:
        return self.of_kind(SLOGenerator)

    @property
    def output_formats(self) -> list[LoadedPlugin]:
        return self.of_kind(OutputFormat)

    def integrations(self, command: str) -> list[LoadedPlugin]:
        return [p for p in self.of_kind(Integration) if command in type(p.plugin).commands]  # type: ignore[attr-defined]

    def fingerprint(self) -> str:
        """One digest of every plugin's identity and code (empty without plugins)."""
        if not self.plugins:
            return ""
        text = "\n".join(f"{p.key}:{p.fingerprint}" for p in self.plugins)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def display_path(path: str) -> str:
    """``path`` as messages show it: relative to the working directory when inside it."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative.startswith("..") else relative


def _file_hash(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _check(plugin_class: type, source: str, origin: str) -> None:
    """Refuse a plugin class this nthlayer cannot run: an unsupported API version, a nameless format."""
    version = getattr(plugin_class, "api_version", None)

    def line() -> int:  # the class's line, worked out only for an error (inspect reads the source: 25 ms)
        try:
            return inspect.getsourcelines(plugin_class)[1]
        except (OSError, TypeError):
            return 1

    if version not in SUPPORTED_API_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_API_VERSIONS)
        raise PluginError(source, line(), (
            f"{plugin_class.__name__} declares plugin API version {version!r}; this nthlayer supports "
            f"version {supported} (nthlayer.plugin.API_VERSION): use a release of the plugin written for it"))
    if issubclass(plugin_class, OutputFormat):
        name = plugin_class.format
        if not isinstance(name, str) or not FORMAT_NAME.match(name) or name in BUILT_IN_FOLDERS:
            raise PluginError(source, line(), (
                f"{plugin_class.__name__}.format {name!r} must be a folder name of lowercase letters, digits, "
                f"'-' and '_', other than {', '.join(sorted(BUILT_IN_FOLDERS))}"))


def _plugin_classes(module: ModuleType) -> list[type]:
    """The concrete plugin classes ``module`` defines (not those it imports), in definition order."""
    return [value for value in vars(module).values()  # a module's namespace keeps definition order
            if isinstance(value, type) and issubclass(value, KINDS) and value.__module__ == module.__name__
            and not inspect.isabstract(value)]


def _instantiate(cls: type, source: str, origin: str, fingerprint: str) -> LoadedPlugin:
    _check(cls, source, origin)
    try:
        instance = cls()
    except Exception as exc:  # noqa: BLE001
        line = next((f.lineno for f in reversed(traceback.extract_tb(exc.__traceback__))
                     if os.path.abspath(f.filename) == os.path.abspath(source)), 1)
        raise PluginError(source, line or 1, f"{cls.__name__}(): {type(exc).__name__}: {exc}") from None
    return LoadedPlugin(instance, source, origin, fingerprint)


def _module_name(path: str) -> str:
    """A module name of its own per plugin file, so two files called plugin.py do not meet in sys.modules."""
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    return f"nthlayer_plugin_{stem}_{hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:10]}"


def load_file(path: str) -> list[LoadedPlugin]:
    """The plugins a Python file defines. Its module is executed afresh each time (a plugin edited
    between two builds of one process is seen) and registered in sys.modules under a name of its own,
    so forked build workers inherit it and pickling its objects works; a failed load leaves nothing."""
    source = display_path(path)
    if not os.path.isfile(path):
        raise PluginError(source, 0, "no such file")
    fingerprint = _file_hash(path)
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, os.path.abspath(path))
    if spec is None or spec.loader is None:
        raise PluginError(source, 0, "not a Python file")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        _restore(name, previous)
        raise PluginError(source, exc.lineno or 0, f"SyntaxError: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - a plugin file that raises on import
        _restore(name, previous)
        line = next((f.lineno for f in reversed(traceback.extract_tb(exc.__traceback__))
                     if os.path.abspath(f.filename) == os.path.abspath(path)), 0)
        raise PluginError(source, line or 0, f"{type(exc).__name__}: {exc}") from None
    classes = _plugin_classes(module)
    if not classes:
        _restore(name, previous)
        raise PluginError(source, 1, "defines no plugin: derive a class from nthlayer.plugin.SLOGenerator, "
                                     "OutputFormat or Integration")
    try:
        return [_instantiate(cls, source, source, fingerprint) for cls in classes]
    except PluginError:
        _restore(name, previous)
        raise


def _restore(name: str, previous: ModuleType | None) -> None:
    if previous is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = previous


def load_entry_points() -> list[LoadedPlugin]:
    """The plugins of installed packages (entry-point group ``nthlayer.plugins``), sorted by name."""
    from importlib.metadata import entry_points

    loaded: list[LoadedPlugin] = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value)):
        dist = getattr(point, "dist", None)
        version = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
        origin = f"{version} (entry point {point.name})"
        try:
            target = point.load()
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"{point.value}", 0, f"entry point {point.name} of {version} does not load: "
                                                   f"{type(exc).__name__}: {exc}") from None
        classes = _plugin_classes(target) if isinstance(target, ModuleType) else [target]
        for cls in classes:
            module = sys.modules.get(getattr(cls, "__module__", ""))
            file = getattr(module, "__file__", None) or point.value
            if not (isinstance(cls, type) and issubclass(cls, KINDS)):
                raise PluginError(display_path(file), 0, f"entry point {point.name} ({point.value}) of {version} "
                                                         "is not a plugin class or module")
            stamp = version + (":" + _file_hash(file) if os.path.isfile(file) else "")
            loaded.append(_instantiate(cls, display_path(file), origin, stamp))
    return loaded


def configured_plugin_files() -> list[str]:
    """The plugin files of ``nthlayer.toml``'s ``[build] plugins`` (relative to that file's folder)."""
    from nthlayer.config import load_config

    config = load_config()
    value = config.section("build").get("plugins", [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise config.error("/build/plugins", "plugins must be a list of Python file paths, e.g. "
                                             "plugins = [\"plugins/financial.py\"]")
    base = os.path.dirname(config.path)
    return [item if os.path.isabs(item) else os.path.normpath(os.path.join(base, item)) for item in value]


def plugin_files(given: Iterable[str] = ()) -> list[str]:
    """Plugin files for this run: ``given`` (``--plugin``), else ``$NTHLAYER_PLUGINS``; then the
    configuration file's; each file once."""
    named = list(given) or [item for item in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if item]
    files: list[str] = []
    seen: set[str] = set()
    for path in [*named, *configured_plugin_files()]:
        if os.path.abspath(path) not in seen:
            seen.add(os.path.abspath(path))
            files.append(path)
    return files


def load_plugins(files: Iterable[str] = (), entry_points: bool = True) -> PluginSet:
    """Every plugin of ``files`` and (``entry_points``) of installed packages. Two output formats of
    one name, or two plugins of one kind and name, are refused."""
    loaded: list[LoadedPlugin] = []
    for path in files:
        loaded += load_file(path)
    if entry_points:
        loaded += load_entry_points()
    seen: dict[str, LoadedPlugin] = {}
    for plugin in loaded:
        ident = (f"format {type(plugin.plugin).format!r}" if isinstance(plugin.plugin, OutputFormat)  # type: ignore[attr-defined]
                 else f"{plugin.kind} {plugin.name!r}")
        if ident in seen and seen[ident] is not plugin:
            raise PluginError(plugin.source, plugin.line_of("__init__"),
                              f"{ident} is also defined by {seen[ident].origin}; rename one")
        seen[ident] = plugin
    return PluginSet(tuple(loaded))


__all__ = ["PluginError", "LoadedPlugin", "PluginSet", "load_file", "load_entry_points", "load_plugins",
           "plugin_files", "configured_plugin_files", "display_path", "ENTRY_POINT_GROUP", "FORMAT_NAME"]
