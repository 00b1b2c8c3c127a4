"""Every PromQL expression of a dashboard parses and reads only series that exist for its service.

A panel over a series nobody records is an empty panel an on-call engineer meets at 3 a.m. So before a
dashboard is written, each of its expressions (panel targets and annotation queries) is parsed with the
PromQL parser and each selector's metric name is checked against what the service's Prometheus gets:

- the series its SLO rule file records (generators.slo_rules) and ``ALERTS``, which Prometheus writes for
  the alerting rules of its rule files;
- what its scrape job collects (generators.slo_rules.scrape_config, job = the service): the SLI's
  metrics and the client libraries' ``process_start_time_seconds``;
- for a selector carrying a dependency's matchers, the metrics the catalog says that technology's
  exporter exposes (its ``metric_labels`` and every rule's ``metrics``).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterator, Mapping

from generators.catalog import Technology as CatalogTechnology
from generators.model import Service
from generators.promql_scope import PromQLError, matchers_of, metric_name, parse, selectors
from generators.slo_rules import recording_rules


def expressions(document: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expression) for every query of a dashboard: annotations, then panels (rows' panels too)."""
    for annotation in document.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]

    def panels(items: list[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
        for panel in items:
            for target in panel.get("targets", []) or []:
                yield f"panel {panel.get('id')} {panel.get('title', '')!r} ({target.get('refId')})", target["expr"]
            yield from panels(panel.get("panels", []) or [])

    yield from panels(document.get("panels", []))


_RECORDED: dict[tuple[str, int], frozenset[str]] = {}


def service_series(service: Service) -> frozenset[str]:
    """What the service's own rule file records, the alerts it raises, and what its scrape job collects."""
    from generators.grafana import RESTART_METRIC

    names = set()
    for slo in service.slos:
        # The names a rule file records for an SLO depend on its SLI kind and window alone.
        key = (slo.kind, slo.window_days)
        if key not in _RECORDED:
            _RECORDED[key] = frozenset(rule["record"] for rule in recording_rules(service, slo))
        names |= _RECORDED[key]
    names.add("ALERTS")
    names.add(RESTART_METRIC)
    for slo in service.slos:
        if slo.kind in ("availability", "latency"):
            sli = slo.sli_of(service)
            names.update({sli.requests_metric, f"{sli.latency_histogram}_bucket", f"{sli.latency_histogram}_count"})
    return frozenset(names)


_CATALOG_SERIES: dict[int, tuple[CatalogTechnology, frozenset[str]]] = {}


def catalog_series(tech: CatalogTechnology) -> frozenset[str]:
    """The metrics the catalog knows a technology's exporter exposes (kept per loaded catalog file)."""
    held = _CATALOG_SERIES.get(id(tech))
    if held is not None and held[0] is tech:
        return held[1]
    names = {name for name in tech.data.get("metric_labels", {}) if not name.endswith("*")}
    for rule in tech.rules:
        names.update(rule["metrics"])
    _CATALOG_SERIES[id(tech)] = (tech, frozenset(names))
    return _CATALOG_SERIES[id(tech)][1]


@lru_cache(maxsize=8192)  # dashboards of one build share most expressions (their stand-ins' above all)
def _selectors(expr: str) -> tuple[tuple[str | None, frozenset[tuple[str, str, str]]], ...] | str:
    """(metric name, matchers) of each selector of ``expr``, or why it does not parse."""
    try:
        tree = parse(expr)
    except PromQLError as exc:
        return f"not valid PromQL: {exc}"
    return tuple((metric_name(node), frozenset(matchers_of(node))) for node in selectors(tree))


def series_problems(document: Mapping[str, Any], service: Service,
                    catalog: Mapping[str, CatalogTechnology]) -> list[str]:
    """Why expressions of ``document`` would draw nothing: unparseable, or reading a series that neither
    the service's rules and scrape job nor the scoped dependency's exporter provide. Empty when sound."""
    own = service_series(service)
    dependencies = [(frozenset(dep.selector), catalog_series(catalog[dep.type])) for dep in service.technologies]
    problems = []
    for where, expr in expressions(document):
        found = _selectors(expr)
        if isinstance(found, str):
            problems.append(f"{where}: {found}: {expr}")
            continue
        for name, matchers in found:
            if name is None:
                problems.append(f"{where}: a selector without a fixed metric name: {expr}")
                continue
            if name in own:
                continue
            if not any(name in known and scope <= matchers for scope, known in dependencies):
                problems.append(f"{where}: reads {name}, which no rule file of {service.name} records, its scrape "
                                "job does not collect and no dependency's exporter (by its selector) exposes")
    return problems


__all__ = ["expressions", "series_problems", "service_series", "catalog_series"]
