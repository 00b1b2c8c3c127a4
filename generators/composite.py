"""Composite SLOs: one objective over the weighted events of SLOs of several services (a user journey).

A composite lives in its own file under ``services/composites/`` (docs/composites.md says why a folder and
not a ``kind:`` in ``services/*.yaml``): every tool that reads ``services/*.yaml`` as service specs stays
as it is. Loading is the specs' own: YAML with line marks and limits (generators.yamlload), then the JSON
Schema ``composite.schema.json`` (which reuses the service schema's definitions), then the model.
:func:`component_errors` checks the components against the loaded service specs: a service that does
not exist or an SLO it does not have is an error at the component's line:column, with a did-you-mean.

The maths is weighted events: the composite's bad ratio is Σ weight × bad events / Σ weight × events, so
a component with little traffic weighs by its events, never as one ratio among equals.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Iterable, Mapping, NamedTuple

from generators.errors import SpecError, SpecErrors, excerpt
from generators.model import (DEFAULT_MIN_REQUEST_RATE, DEFAULT_WINDOW_DAYS, SLO, Alerting, Service, alerting_of,
                             to_decimal)
from generators.schema_messages import type_name
from generators.slo_maths import burn_threshold, burn_windows
from generators.tiers import Tier, resolve_tier
from generators.yamlload import Located, escape_pointer_token, load_yaml

SCHEMA = "composite.schema.json"
# Composites sit in this folder of the services folder: services/*.yaml stays "one service per file".
COMPOSITES_DIR = "composites"
# The label that names a composite on its recorded series and alerts (a service's is `service`).
COMPOSITE_LABEL = "composite"


@dataclass(frozen=True)
class Component:
    service: str
    slo: str
    weight: Decimal


@dataclass(frozen=True)
class Composite:
    name: str
    source: str
    team: str
    tier: Tier | None  # None: the most critical tier of the component services (see bind)
    description: str
    objective: Decimal
    window_days: int
    components: tuple[Component, ...]
    alerting: Alerting
    route_via: str | None  # the service whose Alertmanager route the alerts take
    guard: Decimal | None  # weighted events per second below which pages stay silent; None: no guard
    labels: tuple[tuple[str, str], ...] = ()
    runbook_url: str | None = None

    @property
    def window(self) -> str:
        return f"{self.window_days}d"

    def slo(self) -> SLO:
        """The composite as an SLO of the model (an events SLO named after the composite), so the burn
        windows, factors and alert switches are the ones every service SLO uses."""
        return SLO("events", self.objective, self.window_days, name=self.name, description=self.description,
                   alerting=self.alerting, guard=self.guard)

    @property
    def services(self) -> tuple[str, ...]:
        """The component services, sorted, each once."""
        return tuple(sorted({c.service for c in self.components}))


class Member(NamedTuple):
    """A component bound to its service and SLO."""

    service: Service
    slo: SLO
    weight: Decimal


class LoadedComposite(NamedTuple):
    located: Located
    composite: Composite


def build_composite(data: dict[str, Any], source: str) -> Composite:
    """Map a schema-valid composite document to the model."""
    alerting = data.get("alerting", {})
    rate = alerting.get("min_request_rate", DEFAULT_MIN_REQUEST_RATE)
    return Composite(
        name=data["name"],
        source=source,
        team=data["team"],
        tier=resolve_tier(data["tier"]) if "tier" in data else None,
        description=data.get("description", ""),
        objective=to_decimal(data["objective"]),
        window_days=int(data["window"][:-1]) if "window" in data else DEFAULT_WINDOW_DAYS,
        components=tuple(Component(c["service"], c["slo"], to_decimal(c.get("weight", 1)))
                         for c in data["components"]),
        alerting=alerting_of(alerting),
        route_via=alerting.get("route_via"),
        guard=None if rate is None else to_decimal(rate),
        labels=tuple(sorted(data.get("labels", {}).items())),
        runbook_url=data.get("runbook_url"),
    )


def _single_file_errors(located: Located, composite: Composite) -> list[SpecError]:
    """Checks a schema cannot express that need no other file."""
    from generators.spec import RESERVED_LABELS
    from generators.spec_values import TEMPLATE_MARKS, template_errors

    errors: list[SpecError] = []
    seen: dict[tuple[str, str], int] = {}
    for index, component in enumerate(composite.components):
        key = (component.service, component.slo)
        if key in seen:
            errors.append(located.error(f"/components/{index}", (
                f"duplicate component {component.service}/{component.slo} (also item {seen[key]}); "
                "give it one entry with the weight you mean")))
        seen.setdefault(key, index)
    reserved = RESERVED_LABELS | {COMPOSITE_LABEL}
    for field, pairs in (("labels", composite.labels), ("alerting/labels", composite.alerting.labels)):
        for key, _ in pairs:
            if key in reserved:
                errors.append(located.error(f"/{field}/{escape_pointer_token(key)}",
                                            f"label '{key}' is set by nthlayer and cannot be overridden", key=True))
    errors += template_errors(located)
    for field, pairs in (("labels", composite.alerting.labels), ("annotations", composite.alerting.annotations)):
        for key, value in pairs:
            found = [mark for mark in TEMPLATE_MARKS if mark in value]
            if found:
                errors.append(located.error(f"/alerting/{field}/{escape_pointer_token(key)}", (
                    f"{excerpt(value)} contains {' and '.join(repr(m) for m in found)}: Prometheus reads alert "
                    "labels and annotations as templates, so this would break the rule file or run a query; "
                    "remove it")))
    for window in burn_windows(composite.window_days):
        threshold = burn_threshold(window, composite.objective, composite.window_days)
        if threshold > 1:
            errors.append(located.error("/objective", (
                f"objective {composite.objective} over {composite.window}: the {window.name} burn-rate alert "
                f"would need an error ratio of {threshold} and can never fire; use a stricter objective"),
                warning=True))
    return errors


def load_composite(path: str, raw: bytes | None = None) -> LoadedComposite:
    """Load, schema-check and model one composite file; raise SpecErrors (errors only) on any problem."""
    from generators.spec import schema_errors

    located = load_yaml(path, raw)
    if not isinstance(located.data, dict):
        raise SpecErrors([located.error("", (
            f"expected a mapping with keys name, team, objective and components at the top level, "
            f"found {type_name(located.data)}"))])
    errors = schema_errors(located, SCHEMA)
    if errors:
        raise SpecErrors(errors)
    composite = build_composite(located.data, path)
    hard = [e for e in _single_file_errors(located, composite) if not e.warning]
    if hard:
        raise SpecErrors(hard)
    return LoadedComposite(located, composite)


def composite_warnings(loaded: LoadedComposite) -> list[SpecError]:
    """The single-file warnings of a valid composite (e.g. an objective whose alerts can never fire)."""
    located, composite = loaded
    stem = os.path.splitext(os.path.basename(located.path))[0]
    warnings = [e for e in _single_file_errors(located, composite) if e.warning]
    if stem != composite.name:
        warnings.append(located.error("/name", (
            f"the file is named {excerpt(stem, 60)} but defines composite '{composite.name}'; "
            f"name it {composite.name}.yaml so the composite is found by its name"), warning=True))
    return warnings


def _did_you_mean(value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def component_errors(loaded: LoadedComposite, services: Mapping[str, Service],
                     missing_sources: Mapping[str, str] | None = None) -> list[SpecError]:
    """The components checked against the service specs (``services``: name → the valid specs).

    ``missing_sources`` names services whose spec exists but is invalid (name → its file): a component
    of one is reported as such, not as unknown.
    """
    located, composite = loaded
    broken = missing_sources or {}
    errors: list[SpecError] = []
    if composite.name in services:
        errors.append(located.error("/name", (
            f"'{composite.name}' is also a service ({services[composite.name].source}); a composite needs a "
            "name of its own, since its series and alerts are found by it")))
    for index, component in enumerate(composite.components):
        at = f"/components/{index}"
        service = services.get(component.service)
        if service is None:
            if component.service in broken:
                errors.append(located.error(f"{at}/service", (
                    f"service '{component.service}' has an invalid spec ({broken[component.service]}); "
                    "fix it first")))
            else:
                errors.append(located.error(f"{at}/service", (
                    f"no spec defines service '{component.service}'"
                    f"{_did_you_mean(component.service, services)}")))
            continue
        names = [slo.name for slo in service.slos]
        slo = next((s for s in service.slos if s.name == component.slo), None)
        if slo is None:
            known = ", ".join(names) or "none"
            errors.append(located.error(f"{at}/slo", (
                f"service '{component.service}' has no SLO '{component.slo}'"
                f"{_did_you_mean(component.slo, names)} (its SLOs: {known})")))
        elif not slo.counted:
            errors.append(located.error(f"{at}/slo", (
                f"{component.service}/{component.slo} is a {slo.kind} SLO, which counts no events; a composite "
                "pools events, so its components must be availability, latency or events SLOs")))
    route = composite.route_via
    if route is not None and route not in services:
        errors.append(located.error("/alerting/route_via", (
            f"no spec defines service '{route}'{_did_you_mean(route, services)}")))
    if route is None and (composite.alerting.page or composite.alerting.ticket):
        errors.append(located.error("/name", (
            "the composite's alerts carry no service label, so Alertmanager routes them to nobody; "
            "set alerting.route_via to the service whose on-call owns this journey"), warning=True))
    return errors


def bind(composite: Composite, services: Mapping[str, Service]) -> tuple[Composite, tuple[Member, ...]]:
    """The composite with its tier resolved, and its components bound to their services and SLOs
    (``services`` must hold every component: run :func:`component_errors` first)."""
    members = tuple(Member(services[c.service], services[c.service].slo(c.slo), c.weight)
                    for c in composite.components)
    if composite.tier is None:
        tier = min((m.service.tier for m in members), key=lambda t: t.number)
        composite = replace(composite, tier=tier)
    return composite, members


def composite_paths(services_dir: str) -> list[str]:
    """The composite files of a services folder (``services/composites/*.yaml``), sorted."""
    folder = os.path.join(services_dir, COMPOSITES_DIR)
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if name.endswith((".yaml", ".yml")) and not name.startswith(".")]


def is_composite_file(path: str) -> bool:
    """Whether a file given to ``nthlayer validate`` is a composite (it sits in a ``composites`` folder)."""
    parent = os.path.basename(os.path.dirname(path))
    if parent in ("", ".", ".."):  # (the folder is named by where the path leads: made absolute)
        parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return parent == COMPOSITES_DIR


def services_dir_of(path: str) -> str:
    """The services folder a composite file belongs to: the folder above its ``composites`` folder."""
    return os.path.dirname(os.path.dirname(path)) or "."


class CompositeResult(NamedTuple):
    composites: list[tuple[LoadedComposite, tuple[Member, ...]]]  # valid ones, bound
    errors: list[SpecError]
    warnings: list[SpecError]


def validate_composites(paths: Iterable[str], services: Mapping[str, Service],
                        invalid_services: Mapping[str, str] | None = None) -> CompositeResult:
    """Validate composite files against the valid service specs; duplicate composite names are errors."""
    valid: list[tuple[LoadedComposite, tuple[Member, ...]]] = []
    errors: list[SpecError] = []
    warnings: list[SpecError] = []
    seen: dict[str, str] = {}
    for path in paths:
        try:
            loaded = load_composite(path)
        except SpecErrors as exc:
            errors += exc.errors
            continue
        problems = component_errors(loaded, services, invalid_services)
        warnings += composite_warnings(loaded) + [p for p in problems if p.warning]
        hard = [p for p in problems if not p.warning]
        name = loaded.composite.name
        if name in seen:
            hard.append(loaded.located.error("/name", f"duplicate composite name '{name}' (also in {seen[name]})"))
        seen.setdefault(name, path)
        if hard:
            errors += hard
            continue
        composite, members = bind(loaded.composite, services)
        valid.append((LoadedComposite(loaded.located, composite), members))
    return CompositeResult(valid, errors, warnings)


__all__ = ["is_composite_file", "services_dir_of", "Component", "Composite", "Member", "LoadedComposite", "CompositeResult", "load_composite",
           "component_errors", "composite_warnings", "bind", "composite_paths", "validate_composites",
           "COMPOSITES_DIR", "COMPOSITE_LABEL", "SCHEMA"]
