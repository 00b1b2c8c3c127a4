"""Where a command runs: a project is a folder with a services/ directory of specs; its build settings;
its services, loaded and validated."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable

from generators.errors import UserError

if TYPE_CHECKING:
    from generators.kubernetes import KubernetesDefaults
    from generators.model import Service
    from generators.spec import LoadedSpec


def require_services_dir(services: str, hint: str) -> None:
    """Refuse to run outside a project (before anything is created): raise a UserError naming the missing
    folder and ``hint`` (how to point the command at one)."""
    if not os.path.isdir(services):
        raise UserError(f"no '{services}' folder here ({os.getcwd()}): run it in a folder with services/*.yaml "
                        f"or {hint}")


def build_setting(given: dict[str, str], name: str, env: str, default: str = "") -> str:
    """A build setting as doit's task definitions read it: the doit variable ``name=value``, else the
    environment variable ``env``, else ``default`` (one rule for ``doit``, ``nthlayer build`` and --check)."""
    return given.get(name, os.environ.get(env, default))


def is_on(value: str) -> bool:
    """A yes/no setting's text (strict=1, NTHLAYER_STRICT=true …)."""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def load_specs(directory: str, names: Iterable[str] | None = None) -> list[LoadedSpec]:
    """The valid specs under ``directory`` (all, sorted by service, or those named in that order): every
    spec of the folder must be valid; unknown names are a UserError."""
    from generators.errors import SpecErrors
    from generators.spec import expand_paths, validate_specs

    require_services_dir(directory, "pass --services DIR")  # not 'services:1:1: no such file' (issue 14 item 13)
    files = expand_paths([directory])
    if not files:
        raise UserError(f"no service specs (*.yaml) in {directory}")
    result = validate_specs(files, None)
    if result.errors:
        raise SpecErrors(result.errors)
    return select_specs(result.specs, names, directory)


def select_specs(specs: Iterable[LoadedSpec], names: Iterable[str] | None, directory: str) -> list[LoadedSpec]:
    """All of ``specs`` sorted by service, or those named in that order; unknown names are a UserError."""
    by_name = {spec.service.name: spec for spec in specs}
    if names is None:
        return [by_name[n] for n in sorted(by_name)]
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise UserError(f"no spec for service {', '.join(repr(n) for n in unknown)} in {directory}")
    return [by_name[n] for n in wanted]


def load_services(directory: str, names: Iterable[str] | None = None) -> list[Service]:
    """The services specified under ``directory`` (all, or those named); unknown names are a UserError."""
    return [with_slo_plugins(spec).service for spec in load_specs(directory, names)]


_KUBERNETES: dict[tuple[str, Any], Any] = {}


def kubernetes_defaults() -> KubernetesDefaults:
    """The project's ``[kubernetes]`` defaults from nthlayer.toml (docs/kubernetes.md), read once per process
    per version of the file. A table that breaks Kubernetes' rules raises SpecErrors located in the file,
    so a build reports it as it reports a spec's errors; a file that does not parse raises its ConfigError."""
    from generators.errors import SpecError, SpecErrors
    from generators.kubernetes import defaults_from_table
    from nthlayer.config import config_path, load_config, locate

    path = config_path()
    try:
        stat = os.stat(path)
        key: tuple[str, Any] = (os.path.abspath(path), (stat.st_size, stat.st_mtime_ns))
    except OSError:
        key = (os.path.abspath(path), None)
    if key not in _KUBERNETES:
        config = load_config(path)
        defaults, problems = defaults_from_table(config.section("kubernetes"))
        if problems:
            raise SpecErrors([SpecError(config.path, *locate(config.text, pointer), pointer, message)
                              for pointer, message in problems])
        _KUBERNETES[key] = defaults
    return _KUBERNETES[key]


def config_table_digest(table: str) -> str:
    """What a kind's stamp holds of nthlayer.toml: table ``table`` as parsed, or the error that stops
    reading the file (so that fixing it, too, regenerates the kind)."""
    import json

    from nthlayer.config import ConfigError, load_config

    try:
        return json.dumps(load_config().section(table), sort_keys=True, default=str)
    except ConfigError as exc:
        return f"error: {exc}"


def with_slo_plugins(spec: Any) -> Any:
    """A loaded spec with the project's SLO generator plugins applied (nthlayer.toml's [build] plugins,
    $NTHLAYER_PLUGINS, installed ones), as the build applies them: the budgets and the deploy gate judge
    the SLOs the build wrote rules for. A failing plugin is a PluginError (a user error)."""
    from nthlayer.buildsys.plugin_calls import apply_slo_generators
    from nthlayer.buildsys.plugins import plugin_files

    generators = _slo_generators(tuple(plugin_files()))
    return apply_slo_generators(spec, generators)[0] if generators else spec


_GENERATORS: dict[tuple[str, ...], Any] = {}


def _slo_generators(files: tuple[str, ...]) -> Any:
    """The SLO generators of ``files`` and the installed packages, loaded once per process per file set
    and versions (a long-lived API server sees an edited plugin)."""
    from nthlayer.buildsys.plugins import load_plugins

    key = (*files, *(str(os.stat(path).st_mtime_ns) if os.path.isfile(path) else "-" for path in files))
    if key not in _GENERATORS:
        _GENERATORS[key] = load_plugins(files).slo_generators
    return _GENERATORS[key]
