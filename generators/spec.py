"""Load and validate service specs: YAML → JSON Schema → semantic checks → model.

Single-file problems raise :class:`SpecErrors`; :func:`validate_specs` also runs
the cross-file checks (duplicate names, unknown upstreams, unknown
technologies) and returns every problem of every file at once.
"""
from __future__ import annotations

import difflib
import json
import marshal
import math
import os
import re
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from generators.errors import SpecError, SpecErrors, excerpt, sort_key
from generators.k8s_names import reserved_label
from generators.schema_messages import describe, type_name, unknown_key
from generators.model import Service, build_service, to_decimal
from generators.paging import paging_problems
from generators.slo_maths import burn_threshold, burn_windows
from generators.slo_spec import objective_pointer, slo_errors
from generators.spec_values import sli_errors, value_errors
from generators.yamlload import Located, escape_pointer_token, load_yaml, pointer_of

RESERVED_SERVICE_NAMES = frozenset({"alertmanager", "reports", "prometheus", "composites", "grafana", "k8s"})  # out/<name>/ is shared output
RESERVED_LABELS = frozenset({"service", "team", "tier", "slo", "severity", "alertname", "technology", "dependency"})


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    text = resources.files("generators").joinpath("schemas", name).read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    # Not check_schema() here: that costs 0.1 s per process; tests/test_spec_errors.py checks every
    # shipped schema against the 2020-12 metaschema instead.
    schema = load_schema(name)
    if "service.schema.json#" not in json.dumps(schema):
        return Draft202012Validator(schema)
    from referencing import Registry, Resource

    # The composite schema reuses the service schema's definitions (one source of truth for names,
    # teams, objectives): resolve its references to the shipped file.
    service = load_schema("service.schema.json")
    registry = Registry().with_resource(service["$id"], Resource.from_contents(service))
    return Draft202012Validator(schema, registry=registry)


_FAST: dict[str, Any] = {}
_KEPT_IN: list[str] = []  # the folder compiled validators are kept in between processes, when set


def keep_validators_in(folder: str | None) -> None:
    """Keep compiled fast validators in ``folder`` (a build's state/validators), so that a process
    loads one in 0.2 ms instead of compiling it in 25-40 ms (a one-spec edit pays that once)."""
    _KEPT_IN[:] = [folder] if folder else []


def _compile_fast(name: str) -> Any:
    """fastjsonschema's validator for schema ``name``, from the folder of :func:`keep_validators_in` when
    it holds one made from the same schema text by the same fastjsonschema and Python, else compiled
    (and kept there): the validator's generated code, marshalled, keyed by all three.

    The generated code names each array item it descends into by ``"…[{i}]".format(**locals())``, a
    dictionary of the validator's hundreds of locals made for every item of every list (8 µs each, a
    tenth of a spec's validation). Only the verdict is read here (:func:`_fast_valid`), never a message:
    the names are left unformatted."""
    import fastjsonschema

    schema = load_schema(name)
    raw = resources.files("generators").joinpath("schemas", name).read_bytes()
    path = None
    if _KEPT_IN:
        import hashlib
        import sys

        key = hashlib.sha256(b"\0".join([raw, fastjsonschema.VERSION.encode(), sys.version.encode(),
                                         _UNFORMATTED.encode()])).hexdigest()[:16]
        path = os.path.join(_KEPT_IN[0], f"{name}.{key}.marshal")
        try:
            with open(path, "rb") as handle:
                func_name, code = marshal.load(handle)
            return _defined(func_name, code)
        except (OSError, EOFError, ValueError, TypeError, KeyError):
            pass
    # use_default=False: it would otherwise write the schema's defaults into the document.
    text = fastjsonschema.compile_to_code(schema, use_default=False).replace(_UNFORMATTED, "")
    func_name = re.search(r"^def (\w+)", text, re.MULTILINE)[1]  # the schema's own comes first
    code = compile(text, f"<{name} validator>", "exec")
    if path is not None:
        from generators.render import write_if_changed

        write_if_changed(path, marshal.dumps((func_name, code)))
        for other in os.listdir(_KEPT_IN[0]):  # the same schema's validators of other versions
            if other.startswith(name + ".") and other != os.path.basename(path):
                try:
                    os.remove(os.path.join(_KEPT_IN[0], other))
                except OSError:
                    pass
    return _defined(func_name, code)


_UNFORMATTED = ".format(**locals())"


def _defined(func_name: str, code: Any) -> Any:
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - our own generated code, as Python's __pycache__ holds it
    return namespace[func_name]


def enable_fast_validation(name: str) -> None:
    """Compile schema ``name`` to Python code (fastjsonschema; 30-50 ms, once per process, or loaded
    as kept by :func:`keep_validators_in`) for :func:`schema_errors` to accept valid documents with:
    0.05 ms a spec where jsonschema takes 0.5 ms, and importing jsonschema alone costs a process 0.1 s.
    Only the verdict "valid" is taken from it; whatever it rejects goes through jsonschema, which alone
    reports errors, so a document fastjsonschema finds fault with and jsonschema does not is still valid.
    A build calls this before forking workers."""
    if name not in _FAST:
        _FAST[name] = _compile_fast(name)


def _plain_json(value: Any) -> bool:
    """Whether ``value`` is JSON data Python compares as JSON Schema does: string keys, finite numbers, no
    booleans (Python's True == 1 lets fastjsonschema accept ``tier: true`` for ``enum: [1, 2, 3]``)."""
    kind = type(value)
    if kind is str or kind is int or value is None:
        return True
    if kind is dict:
        return all(type(key) is str and _plain_json(item) for key, item in value.items())
    if kind is list:
        return all(_plain_json(item) for item in value)
    return kind is float and math.isfinite(value)


# The schemas whose fast verdicts tests/test_spec_property.py and tests/test_catalog.py prove agree with
# jsonschema's (fastjsonschema knows draft 7; a keyword it does not know it would silently ignore).
_FAST_SCHEMAS = frozenset({"service.schema.json", "catalog.schema.json"})


def _fast_valid(name: str, data: Any) -> bool:
    if name not in _FAST_SCHEMAS or not _plain_json(data):
        return False
    enable_fast_validation(name)
    fast = _FAST[name]
    try:
        fast(data)
    except Exception:  # JsonSchemaException, or anything it did not expect: jsonschema decides
        return False
    return True


def schema_errors(located: Located, schema_name: str) -> list[SpecError]:
    """Every JSON Schema violation of a loaded document, each at its line/col."""
    if _fast_valid(schema_name, located.data):
        return []
    errors: list[SpecError] = []
    for error in _validator(schema_name).iter_errors(located.data):
        pointer = pointer_of(error.absolute_path)
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(allowed)):
                errors.append(located.error(f"{pointer}/{escape_pointer_token(key)}", unknown_key(key, allowed),
                                            key=True))
            continue
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else error.message
            errors.append(located.error(pointer, f"missing required key '{missing}'"))
            continue
        if "propertyNames" in error.relative_schema_path:
            # jsonschema reports a bad key at the object's path, with the key as the instance.
            pointer = f"{pointer}/{escape_pointer_token(str(error.instance))}"
            errors.append(located.error(pointer, describe(error), key=True))
            continue
        errors.append(located.error(pointer, describe(error)))
    return errors


def _nearest(values: tuple[Decimal, ...], target: Decimal) -> str:
    below = [v for v in values if v < target]
    above = [v for v in values if v > target]
    parts = []
    if below:
        parts.append(f"{_ms(max(below))} ms")
    if above:
        parts.append(f"{_ms(min(above))} ms")
    return " and ".join(parts)


def _ms(seconds: Decimal) -> str:
    return format((seconds * 1000).normalize(), "f")


def _default_latency_errors(located: Located, service: Service) -> list[SpecError]:
    """The default latency SLO's threshold must be a bucket boundary of the service's histogram."""
    data = located.data
    threshold = service.slo("latency").threshold_seconds
    buckets = service.sli.latency_buckets
    if threshold in buckets:
        return []
    overrides = data.get("observability", {}).get("slo_overrides", {})
    if "latency" in overrides:
        pointer = "/observability/slo_overrides/latency"
        origin = f"latency threshold {_ms(threshold)} ms"
    else:
        pointer = "/tier"
        origin = f"tier {service.tier.number}'s default latency threshold {_ms(threshold)} ms"
    where = "the declared" if "latency_buckets" in data.get("observability", {}).get("sli", {}) else "the default"
    return [located.error(pointer, (
        f"{origin} is not a bucket boundary of {where} latency buckets "
        f"(nearest: {_nearest(buckets, threshold)}); set observability.slo_overrides.latency "
        "to a boundary or declare observability.sli.latency_buckets"))]


def semantic_errors(located: Located, service: Service) -> list[SpecError]:
    """Checks a schema cannot express, on one spec."""
    errors: list[SpecError] = []
    data = located.data
    if service.name in RESERVED_SERVICE_NAMES:
        errors.append(located.error("/service", f"'{service.name}' is reserved for shared output; choose another name"))
    for key, _ in service.labels:
        if key in RESERVED_LABELS:
            errors.append(located.error(f"/labels/{key}", f"label '{key}' is set by nthlayer and cannot be overridden", key=True))
    for key, _ in service.kubernetes.labels:
        if reserved_label(key):
            errors.append(located.error(f"/kubernetes/labels/{escape_pointer_token(key)}",
                                        f"Kubernetes label '{key}' is set by nthlayer and cannot be overridden", key=True))
    if "slos" in data:
        errors += slo_errors(located, service, RESERVED_LABELS)
    else:
        errors += _default_latency_errors(located, service)
    for index, slo in enumerate(service.slos):
        # A burn-rate alert whose threshold error ratio exceeds 100 % can never fire.
        for window in burn_windows(slo.window_days):
            threshold = burn_threshold(window, slo.objective, slo.window_days)
            if threshold > 1:
                pointer = objective_pointer(located, index if "slos" in data else None, slo)
                errors.append(located.error(pointer, (
                    f"{slo.name} objective {slo.objective} over {slo.window}: the {window.name} burn-rate alert "
                    f"would need an error ratio of {threshold} and can never fire; use a stricter objective"),
                    warning=True))
    seen: dict[tuple[str, str], int] = {}
    for index, tech in enumerate(service.technologies):
        key = (tech.type, tech.name)
        if key in seen:
            errors.append(located.error(f"/dependencies/technologies/{index}/name",
                                        f"duplicate dependency {tech.type} '{tech.name}' (also item {seen[key]})"))
        seen.setdefault(key, index)
    return errors + paging_problems(located, service) + _datadog_errors(located, service)


DATADOG_WINDOWS = (7, 30, 90)  # the SLO timeframes Datadog accepts (SLOTimeframe, "custom" aside)


def _datadog_errors(located: Located, service: Service) -> list[SpecError]:
    """A `datadog:` block's SLO names must be the service's, with a window Datadog can hold."""
    if service.datadog is None:
        return []
    errors: list[SpecError] = []
    names = {slo.name: slo for slo in service.slos}
    for entry in service.datadog.slos:
        pointer = f"/datadog/slos/{entry.name}"
        slo = names.get(entry.name)
        metric, monitor = entry.good is not None and entry.total is not None, bool(entry.monitor_ids)
        if metric == monitor or (entry.good is None) != (entry.total is None):
            errors.append(located.error(pointer, (
                "give either good and total (a metric-based SLO) or monitor_ids (a monitor-based SLO)")))
        elif slo is None:
            errors.append(located.error(pointer, (
                f"no SLO named '{entry.name}' in this spec (its SLOs: {', '.join(sorted(names))})"), key=True))
        elif slo.window_days not in DATADOG_WINDOWS:
            errors.append(located.error(pointer, (
                f"{slo.name} has a {slo.window} window and Datadog SLOs take 7, 30 or 90 days only"), key=True))
    return errors


class LoadedSpec(NamedTuple):
    located: Located
    service: Service


def load_spec(path: str, raw: bytes | None = None) -> LoadedSpec:
    """Load, schema-check and model one spec; raise SpecErrors (errors only) on any problem."""
    return validate_located(load_yaml(path, raw))


def validate_located(located: Located) -> LoadedSpec:
    """Schema-check and model a loaded spec document; raise SpecErrors (errors only) on any problem. A
    document built in memory (an SLO plugin's merge) goes through the same checks as a file."""
    if not isinstance(located.data, dict):
        raise SpecErrors([located.error("", (
            f"expected a mapping with keys service, tier and team at the top level, "
            f"found {type_name(located.data)}"))])
    errors = schema_errors(located, "service.schema.json")
    if errors:
        raise SpecErrors(errors)
    service = build_service(located.data, located.path)
    problems = semantic_errors(located, service)
    hard = value_errors(located) + sli_errors(located, service) + [e for e in problems if not e.warning]
    if hard:
        raise SpecErrors(hard)
    return LoadedSpec(located, service)


def spec_warnings(spec: LoadedSpec) -> list[SpecError]:
    return [e for e in semantic_errors(spec.located, spec.service) if e.warning]


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Files as given; folders expanded to their *.yaml / *.yml files, sorted."""
    result: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                if name.endswith((".yaml", ".yml")) and not name.startswith("."):
                    result.append(os.path.join(path, name))
        else:
            result.append(path)
    return result


class Ref(NamedTuple):
    """A name used in a spec, with where it was written (for cross-file messages)."""

    value: str
    pointer: str
    line: int
    col: int


class FileSummary(NamedTuple):
    """What the cross-file checks need from one spec file; small and JSON-serialisable (cacheable)."""

    path: str
    name: Ref | None  # None when the file itself is invalid
    upstream: tuple[Ref, ...]
    technologies: tuple[Ref, ...]
    errors: tuple[SpecError, ...]
    warnings: tuple[SpecError, ...]
    # The names of the SLOs a `slos:` block declares (they name output files); None: no `slos:` block.
    slos: tuple[str, ...] | None = None
    # The optional artifact kinds the spec turns on (datadog: a `datadog:` block); they add output files.
    extras: tuple[str, ...] = ()

    def to_json(self) -> list:
        return [self.path, self.name, self.upstream, self.technologies, self.errors, self.warnings, self.slos,
                self.extras]

    @classmethod
    def from_json(cls, data: list) -> "FileSummary":
        path, name, upstream, techs, errors, warnings, slos, extras = data
        return cls(path, Ref(*name) if name else None, tuple(Ref(*r) for r in upstream),
                   tuple(Ref(*r) for r in techs), tuple(SpecError(*e) for e in errors),
                   tuple(SpecError(*w) for w in warnings), None if slos is None else tuple(slos), tuple(extras))


def _ref(located: Located, value: str, pointer: str) -> Ref:
    line, col = located.where(pointer)
    return Ref(value, pointer, line, col)


def summarize(path: str, raw: bytes | None = None) -> tuple[FileSummary, LoadedSpec | None]:
    """Validate one file on its own; return its summary (and the loaded spec when valid)."""
    if raw is None and not os.path.lexists(path):  # a dangling or looping link: read_bounded says which
        return FileSummary(path, None, (), (), (SpecError(path, 1, 1, "", "no such file or directory"),), ()), None
    try:
        spec = load_spec(path, raw)
    except SpecErrors as exc:
        return FileSummary(path, None, (), (), tuple(exc.errors), ()), None
    located, service = spec
    summary = FileSummary(
        path,
        _ref(located, service.name, "/service"),
        tuple(_ref(located, name, f"/dependencies/upstream/{i}") for i, name in enumerate(service.upstream)),
        tuple(_ref(located, t.type, f"/dependencies/technologies/{i}/type")
              for i, t in enumerate(service.technologies)),
        (),
        tuple(spec_warnings(spec) + _file_name_warnings(located, service.name)),
        tuple(slo.name for slo in service.slos) if "slos" in located.data else None,
        extra_kinds(service),
    )
    return summary, spec


def extra_kinds(service: Service) -> tuple[str, ...]:
    """The optional artifact kinds a service turns on (nthlayer.buildsys.kinds: ``ServiceKind.optional``)."""
    return ("datadog",) if service.datadog is not None else ()


def _file_name_warnings(located: Located, name: str) -> list[SpecError]:
    """A spec is found by its service's name (``services/<name>.yaml``, doit's ``service:<name>``)."""
    stem = os.path.splitext(os.path.basename(located.path))[0]
    if stem == name:
        return []
    return [located.error("/service", (f"the file is named {excerpt(stem, 60)} but defines service '{name}'; "
                                       f"name it {name}.yaml so the service is found by its name"), warning=True)]


def cross_file_problems(summaries: list[FileSummary], known_technologies: Iterable[str] | None,
                        extra_service_names: Iterable[str] | Mapping[str, str] = ()
                        ) -> tuple[list[SpecError], list[SpecError]]:
    """Duplicate names (error), unknown upstreams (warning), unknown technologies (error, with a hint).

    ``extra_service_names`` are services defined outside ``summaries`` (names ``upstream`` may use); as a
    mapping of name → the file defining it, a summary that defines one of them again is a duplicate too,
    as it would be were that file validated with it (``nthlayer validate`` of one file of a folder).
    """
    errors: list[SpecError] = []
    warnings: list[SpecError] = []
    elsewhere = extra_service_names if isinstance(extra_service_names, Mapping) else {}
    by_name: dict[str, list[FileSummary]] = {}
    for summary in summaries:
        if summary.name is not None:
            by_name.setdefault(summary.name.value, []).append(summary)
    for name, group in by_name.items():
        outside = [elsewhere[name]] if name in elsewhere else []
        if len(group) > 1 or outside:
            for summary in group:
                others = ", ".join([o.path for o in group if o is not summary] + outside)
                ref = summary.name
                assert ref is not None
                errors.append(SpecError(summary.path, ref.line, ref.col, ref.pointer,
                                        f"duplicate service name '{name}' (also in {others})"))
    names = set(by_name) | set(extra_service_names)
    known = sorted(set(known_technologies)) if known_technologies is not None else None
    known_set = set(known or ())  # asked for every technology of every spec
    for summary in summaries:
        for ref in summary.upstream:
            if ref.value not in names:
                warnings.append(SpecError(summary.path, ref.line, ref.col, ref.pointer,
                                          f"upstream service '{ref.value}' is not defined by any spec", True))
        if known is None:
            continue
        for ref in summary.technologies:
            if ref.value not in known_set:
                close = difflib.get_close_matches(ref.value, known, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else "; run 'nthlayer catalog list' for the known ones"
                errors.append(SpecError(summary.path, ref.line, ref.col, ref.pointer,
                                        f"unknown technology {excerpt(ref.value, 60)}{hint}"))
    return errors, warnings


class ValidationResult(NamedTuple):
    specs: list[LoadedSpec]
    errors: list[SpecError]
    warnings: list[SpecError]
    files: int


class Checked(NamedTuple):
    """One file validated on its own: its summary, its spec when valid, and (with a catalog) the
    warnings for alerts its dependency selectors silence."""

    summary: FileSummary
    spec: LoadedSpec | None
    selector_warnings: tuple[SpecError, ...] = ()


def check_file(path: str, catalog_dir: str | None = None, catalog_cache: str | None = None) -> Checked:
    """:func:`summarize` plus, with ``catalog_dir``, the selector warnings of a valid spec (its catalog
    files kept validated in ``catalog_cache``: generators.catalog.load_technology_cached)."""
    summary, spec = summarize(path)
    if spec is None or catalog_dir is None or not spec.service.technologies:
        return Checked(summary, spec)
    from generators.catalog_labels import spec_selector_warnings  # it reads the catalog, which imports us

    return Checked(summary, spec, tuple(spec_selector_warnings(spec.located, spec.service, catalog_dir, catalog_cache)))


def validate_specs(paths: Iterable[str], known_technologies: Iterable[str] | None,
                   all_service_names: Iterable[str] | Mapping[str, str] | None = None,
                   catalog_dir: str | None = None,
                   check_all: Callable[[list[str]], list[Checked]] | None = None) -> ValidationResult:
    """Validate files individually, then against each other.

    ``all_service_names`` widens the set that ``upstream`` may name (e.g. when
    validating one file of a larger folder). With ``catalog_dir``, the warnings include the alerts
    a dependency selector silences (generators.catalog_labels). ``check_all``: how the files are
    checked one by one (default :func:`check_file` on each in turn; ``nthlayer validate`` splits
    many files over processes), in the order given.
    """
    files = expand_paths(paths)
    checked = check_all(files) if check_all is not None else [check_file(path, catalog_dir) for path in files]
    summaries = [item.summary for item in checked]
    specs = [item.spec for item in checked if item.spec is not None]
    errors, warnings = cross_file_problems(summaries, known_technologies, all_service_names or ())
    warnings += [w for item in checked for w in item.selector_warnings]
    errors += [e for s in summaries for e in s.errors]
    warnings += [w for s in summaries for w in s.warnings]
    return ValidationResult(specs, sorted(set(errors), key=sort_key), sorted(set(warnings), key=sort_key), len(files))


__all__ = ["enable_fast_validation", "LoadedSpec", "ValidationResult", "FileSummary", "load_spec", "validate_located", "summarize",
           "cross_file_problems", "Checked", "check_file", "validate_specs", "expand_paths", "to_decimal"]
