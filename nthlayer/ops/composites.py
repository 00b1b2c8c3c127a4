"""Composite SLOs at run time: found beside the specs, their error budgets, and which deploys they judge.

A composite's budget is read from the components' raw counters (generators.composite_rules.raw_ratio_expr),
one query per composite, over its window and over the burn range: exactly the weighted event counts, with
no recording rule needed in Prometheus. ``check-deploy`` of a service judges the worst of its own SLOs and
of every composite it is a component of (docs/composites.md).
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Iterable

from generators.composite import Composite, Member, composite_paths, validate_composites
from generators.composite_rules import raw_ratio_expr
from generators.errors import SpecErrors
from generators.model import Service
from nthlayer.ops.budget import BURN_RANGE, RANGE_LABEL, BudgetReport, report_of

if TYPE_CHECKING:
    from nthlayer.integrations.prometheus import PrometheusClient

Bound = tuple[Composite, tuple[Member, ...]]


def load_composites(services_dir: str, services: Iterable[Service]) -> list[Bound]:
    """Every composite of ``services_dir``/composites/, validated against ``services`` (all the folder's
    specs) and bound to its components; SpecErrors when one is invalid."""
    result = validate_composites(composite_paths(services_dir), {s.name: s for s in services})
    if result.errors:
        raise SpecErrors(result.errors)
    return sorted(((loaded.composite, members) for loaded, members in result.composites), key=lambda b: b[0].name)


def composites_of(composites: Iterable[Bound], service_names: Iterable[str]) -> list[Bound]:
    """The composites that have a component of one of ``service_names``."""
    names = set(service_names)
    return [bound for bound in composites if names & {m.service.name for m in bound[1]}]


def budget_composites(services_dir: str, names: Iterable[str] | None = None) -> list[Bound]:
    """The composites ``track-budget`` reports: all of ``services_dir`` (``names`` None), else those with a
    component among the named services."""
    import os

    from nthlayer.buildsys.project import load_services

    if not os.path.isdir(services_dir) or not composite_paths(services_dir):
        return []
    everything = load_composites(services_dir, load_services(services_dir))
    return everything if names is None else composites_of(everything, names)


def gate_composites(services_dir: str, service: Service, everyone: Iterable[Service]) -> list[Bound]:
    """The composites a deploy of ``service`` is judged by: those it is a component of, bound to
    ``everyone`` (the folder's services, ``service`` as given to the gate among them)."""
    import os

    if not os.path.isdir(services_dir) or not composite_paths(services_dir):
        return []
    return composites_of(load_composites(services_dir, everyone), [service.name])


def composite_query(members: tuple[Member, ...], window: str) -> str:
    """One instant query for a composite: its ratio over ``window`` and over the burn range, told apart by
    the ``nthlayer_range`` label."""
    return (f'label_replace({raw_ratio_expr(members, window)}, "{RANGE_LABEL}", "window", "", "") or '
            f'label_replace({raw_ratio_expr(members, BURN_RANGE)}, "{RANGE_LABEL}", "{BURN_RANGE}", "", "")')


def evaluate_composites(client: PrometheusClient, composites: Iterable[Bound], at: datetime) -> list[BudgetReport]:
    """Each composite's budget at instant ``at`` (one query each)."""
    reports: list[BudgetReport] = []
    for composite, members in composites:
        ratios: dict[str, Decimal | None] = {}
        for sample in client.query(composite_query(members, composite.window), at=at):
            value = sample.value
            ratios[sample.labels.get(RANGE_LABEL, "")] = value if value.is_finite() else None
        assert composite.tier is not None
        reports.append(report_of(composite.name, composite.tier.number, composite.name, composite.objective,
                                 composite.window_days, at, ratios.get("window"), ratios.get(BURN_RANGE),
                                 composite=True))
    return reports


__all__ = ["budget_composites", "gate_composites", "load_composites", "composites_of", "evaluate_composites", "composite_query", "Bound"]
