"""Technology alerts for one service: catalog rules picked by its dependencies and tier, scoped to each instance.

For every technology dependency of the spec (``postgres`` named ``orders-db``
with selector ``{cluster="orders"}``, say) the service gets one rule group with
the catalog rules of that technology that apply to its tier, each expression
narrowed to the instance by adding the selector's matchers to every vector
selector, and the service's routing labels and runbook links added.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from generators.catalog import Technology as CatalogTechnology
from generators.catalog import rule_entry, rule_labels, technology_files
from generators.catalog_labels import TARGET_SERIES
from generators.errors import SpecError, SpecErrors, UserError, clip
from generators.model import Service
from generators.model import Technology as Dependency
from generators.promql_scope import PromQLError, scope, scoped_by_position
from generators.render import yaml_bytes
from generators.tiers import Tier

ALERTS_FILE = "alerts.rules.yaml"


def applies_to_tier(rule: Mapping[str, Any], tier: Tier) -> bool:
    """A rule applies when it lists the tier and its severity is one the tier receives."""
    return tier.number in rule["tiers"] and rule["severity"] in tier.catalog_severities


def selected_rules(tech: CatalogTechnology, tier: Tier) -> list[dict[str, Any]]:
    return [rule for rule in tech.rules if applies_to_tier(rule, tier)]


def reads_target_series(rule: Mapping[str, Any]) -> bool:
    """Whether the rule reads a series Prometheus writes for every scrape target (``up``)."""
    return not TARGET_SERIES.isdisjoint(rule["metrics"])


def dependency_rules(tech: CatalogTechnology, tier: Tier, dependency: Dependency) -> list[dict[str, Any]]:
    """The rules one dependency instance gets: those of its tier, less the target-down rules when it has
    no selector (unscoped, ``up == 0`` would fire for every target in Prometheus that is down)."""
    rules = selected_rules(tech, tier)
    return rules if dependency.selector else [rule for rule in rules if not reads_target_series(rule)]


def runbook_base(service: Service, dependency: Dependency, override: str | None) -> str | None:
    """--runbook-url, else the dependency's runbook_url, else the service's; None when there is none."""
    base = override or dependency.runbook_url or service.runbook_url
    return base.rstrip("/") if base else None


def _check_instances(service: Service) -> None:
    # Two instances of one technology with the same selector would raise every alert twice.
    seen: dict[tuple[str, tuple[tuple[str, str, str], ...]], str] = {}
    for dep in service.technologies:
        key = (dep.type, dep.selector)
        if key in seen:
            how = "no selector" if not dep.selector else "the same selector"
            raise UserError(f"{service.source}: {dep.type} dependencies '{seen[key]}' and '{dep.name}' have {how}; "
                            "give each a selector that matches only its own instance")
        seen[key] = dep.name


def _missing(service: Service, catalog: Mapping[str, CatalogTechnology]) -> None:
    unknown = sorted({dep.type for dep in service.technologies} - set(catalog))
    if unknown:
        raise UserError(f"{service.source}: unknown technology {', '.join(repr(u) for u in unknown)}; "
                        "'nthlayer catalog list' shows the known ones")


def dependency_group(service: Service, dependency: Dependency, tech: CatalogTechnology,
                     runbook_url: str | None = None) -> dict[str, Any]:
    """The rule group for one dependency instance."""
    base = runbook_base(service, dependency, runbook_url)
    rules = []
    for rule in dependency_rules(tech, service.tier, dependency):
        labels = {
            **rule_labels(tech, rule),
            "service": service.name,
            "team": service.team,
            "tier": str(service.tier.number),
            "dependency": dependency.name,
        }
        # The spec cannot set nthlayer's own labels (generators.spec rejects them), so
        # its labels only add to these or override a catalog rule's custom ones.
        labels.update(service.labels)
        try:
            expr = scope(rule["expr"], dependency.selector)
        except (PromQLError, ValueError) as exc:
            # Catalog expressions are parsed when the catalog loads, so the selector is at fault: the spec
            # is named (validation should have refused the selector; this is the last line of defence).
            index = service.technologies.index(dependency)
            raise SpecErrors([SpecError(service.source, 1, 1, f"/dependencies/technologies/{index}/selector", (
                f"cannot add this selector to {dependency.type} rule {rule['name']} ({tech.path}): "
                f"{clip(str(exc))}"))]) from None
        entry = rule_entry(rule, labels, expr)
        annotations = {"summary": rule["summary"], "description": rule["description"]}
        if base:
            annotations["runbook_url"] = f"{base}/{rule['name']}"
        entry["annotations"] = annotations
        rules.append(entry)
    return {"name": f"{service.name}/{dependency.type}/{dependency.name}", "rules": rules}


def check_dependencies(service: Service, catalog: Mapping[str, CatalogTechnology]) -> None:
    """UserError for a technology the catalog lacks or two instances one selector cannot tell apart."""
    _missing(service, catalog)
    _check_instances(service)


def service_alert_document(service: Service, catalog: Mapping[str, CatalogTechnology],
                           runbook_url: str | None = None) -> dict[str, Any]:
    """The Prometheus rule file of a service: one group per technology dependency, in spec order."""
    check_dependencies(service, catalog)
    groups = [dependency_group(service, dep, catalog[dep.type], runbook_url) for dep in service.technologies]
    return {"groups": groups}


# The Service fields service_alert_document reads (generators.shapes templates on these alone).
READS = frozenset({"name", "source", "team", "tier", "labels", "technologies", "runbook_url"})


def alert_documents(service: Service, catalog: Mapping[str, CatalogTechnology]) -> dict[str, tuple[Any, bool]]:
    """:func:`service_alert_document` as generators.shapes takes documents: file name → (document, multi)."""
    return {ALERTS_FILE: (service_alert_document(service, catalog), False)}


def check_standin(service: Service, catalog: Mapping[str, CatalogTechnology]) -> None:
    """Raise unless every rule is scoped to every dependency by placing the selector's values alone
    (generators.promql_scope.scoped_by_position): only then may a template stand for the real values."""
    for dep in service.technologies:
        shape = tuple((label, op) for label, op, _value in dep.selector)
        for rule in dependency_rules(catalog[dep.type], service.tier, dep):
            if not scoped_by_position(rule["expr"], shape):
                raise ValueError(f"{rule['name']}: its own matchers meet the selector's labels")


def service_alert_files(service: Service, catalog: Mapping[str, CatalogTechnology], out_dir: str,
                        runbook_base: str | None = None) -> dict[str, bytes]:
    """``{<out_dir>/alerts.rules.yaml: bytes}``; a service without technology dependencies gets an empty rule file."""
    document = service_alert_document(service, catalog, runbook_base)
    return {os.path.join(out_dir, ALERTS_FILE): yaml_bytes(document, service.source)}


def alert_counts(service: Service, catalog: Mapping[str, CatalogTechnology]) -> dict[str, int]:
    """Alerts per technology type (summed over its instances), in order of first appearance in the spec."""
    _missing(service, catalog)
    counts: dict[str, int] = {}
    for dep in service.technologies:
        counts[dep.type] = counts.get(dep.type, 0) + len(dependency_rules(catalog[dep.type], service.tier, dep))
    return counts


def summary_lines(service: Service, catalog: Mapping[str, CatalogTechnology]) -> list[str]:
    """``postgres: 15 alerts`` per technology (``… (2 instances)`` when there are several)."""
    instances: dict[str, int] = {}
    for dep in service.technologies:
        instances[dep.type] = instances.get(dep.type, 0) + 1
    lines = []
    for tech, count in alert_counts(service, catalog).items():
        noun = "alert" if count == 1 else "alerts"
        more = f" ({instances[tech]} instances)" if instances[tech] > 1 else ""
        lines.append(f"{tech}: {count} {noun}{more}")
    return lines


def catalog_paths(service: Service, catalog_dir: str) -> list[str]:
    """The catalog files a service's alerts are built from (doit's file_dep); UserError for an unknown one."""
    files = technology_files(catalog_dir)
    unknown = sorted({dep.type for dep in service.technologies} - set(files))
    if unknown:
        raise UserError(f"{service.source}: unknown technology {', '.join(repr(u) for u in unknown)} "
                        f"(not in {catalog_dir}); 'nthlayer catalog list' shows the known ones")
    return sorted({files[dep.type] for dep in service.technologies})


__all__ = ["ALERTS_FILE", "READS", "applies_to_tier", "selected_rules", "dependency_rules", "reads_target_series",
           "dependency_group",
           "service_alert_document", "service_alert_files", "alert_documents", "check_dependencies", "check_standin",
           "alert_counts", "summary_lines", "catalog_paths"]
