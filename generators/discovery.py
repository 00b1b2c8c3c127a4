"""Dependency discovery, the pure part: which PromQL to ask, and what the answers propose for a spec.

Two kinds of evidence (docs/discovery.md):

- **Service-graph series** — who calls whom, with a request rate. Istio/Envoy's
  ``istio_requests_total{source_workload, destination_workload}``, Tempo's or the OpenTelemetry
  collector's ``traces_service_graph_request_total{client, server}`` and Linkerd's
  ``response_total{direction="outbound", deployment, dst_deployment}``; a workload, client or
  deployment name is taken to be the ``service:`` of a spec. A call from A to B makes B one of A's
  ``dependencies.upstream``.
- **Exporter series** — a technology instance and the service using it. The rules catalog declares per
  technology (``discovery:``) the metric that has a series per instance, the label naming the instance
  and the label naming the service that uses it (by default the ``client_service`` target label the
  exporter's scrape config attaches).

Every query asks for one value per day of the ``--since`` span (a range query with a one-day step), so one
request gives both the average rate and the number of days the edge was seen. No I/O here:
nthlayer.ops.discover runs the queries and edits the specs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Collection, Iterable, Mapping

from generators.catalog_labels import TARGET_LABELS, declared_labels
from generators.errors import SpecError
from generators.yamlload import Located

DAY_SECONDS = 86400
DEFAULT_SERVICE_LABEL = "client_service"


@dataclass(frozen=True)
class GraphSource:
    """One family of service-graph series: its metric, the labels naming caller and callee, extra
    matchers, and the label that splits one call into several series counting the same request."""

    name: str
    metric: str
    client_label: str
    server_label: str
    matchers: str = ""
    duplicate_label: str | None = None
    placeholder: str | None = None  # the name the source gives a workload it could not identify

    def query(self) -> str:
        """Requests per (caller, callee) during the day before each evaluation instant."""
        by = f"{self.client_label}, {self.server_label}"
        selector = f"{self.metric}{{{self.matchers}}}" if self.matchers else self.metric
        inner = f"increase({selector}[1d])"
        if self.duplicate_label is None:
            return f"sum by ({by}) ({inner})"
        # Istio reports a call twice (reporter="source" and "destination") when both ends are in the
        # mesh, once when only one is: the larger of the two is the call count, their sum is not.
        return f"max by ({by}) (sum by ({by}, {self.duplicate_label}) ({inner}))"


SERVICE_GRAPH_SOURCES: tuple[GraphSource, ...] = (
    GraphSource("istio", "istio_requests_total", "source_workload", "destination_workload",
                duplicate_label="reporter", placeholder="unknown"),
    GraphSource("linkerd", "response_total", "deployment", "dst_deployment", matchers='direction="outbound"'),
    # Tempo marks an edge to a database (server: the database system) or through a message queue (client:
    # the producer, server: the consumer, which the producer does not call) with connection_type; the
    # first is a technology, the second no dependency of the client.
    GraphSource("tempo", "traces_service_graph_request_total", "client", "server",
                matchers='connection_type!~"database|messaging_system"'),
)


@dataclass(frozen=True)
class TechnologyProbe:
    """What the catalog's ``discovery:`` block of one technology says (generators/catalog.py validates it)."""

    technology: str
    metric: str
    instance_label: str
    service_label: str

    def query(self) -> str:
        """One series per (instance, using service) that had samples during the day before each instant."""
        by = f"{self.instance_label}, {self.service_label}" if self.service_label != self.instance_label \
            else self.instance_label
        return f"count by ({by}) (count_over_time({self.metric}[1d]))"


def technology_probe(technology: str, data: Mapping[str, Any]) -> TechnologyProbe | None:
    """The probe of a catalog file's data, or None when it declares no ``discovery:``."""
    block = data.get("discovery")
    if not block:
        return None
    return TechnologyProbe(technology, block["metric"], block["instance_label"],
                           block.get("service_label", DEFAULT_SERVICE_LABEL))


def lint_discovery(located: Located) -> list[SpecError]:
    """A catalog file's ``discovery:`` must name a metric its ``metric_labels`` declares, and labels that
    metric carries: the exporter's own, or target labels (instance, job, the file's ``target_labels``)."""
    block = located.data.get("discovery")
    if not block or "metric_labels" not in located.data:
        return []
    metric = block["metric"]
    declared = declared_labels(located.data, metric)
    if declared is None:
        return [located.error("/discovery/metric", f"discovery metric {metric} is not declared in metric_labels")]
    target = set(located.data.get("target_labels", ())) | TARGET_LABELS
    errors = []
    for key in ("instance_label", "service_label"):
        label = block.get(key, DEFAULT_SERVICE_LABEL)
        if label not in declared and label not in target:
            pointer = f"/discovery/{key}" if key in block else "/discovery"
            errors.append(located.error(pointer, (
                f"discovery {key} '{label}' is neither a label metric_labels declares for {metric} nor a target "
                "label (instance, job or one of target_labels)")))
    return errors


@dataclass(frozen=True)
class Edge:
    """A call from ``client`` to ``server`` over the span: its average rate and the days it was seen on."""

    client: str
    server: str
    rps: Decimal
    days_seen: int
    days: int
    sources: tuple[str, ...]

    @property
    def confidence(self) -> str:
        return confidence(self.days_seen, self.days)


@dataclass(frozen=True)
class TechnologyUse:
    """A technology instance seen with a service's label on ``days_seen`` days of ``days``."""

    service: str
    technology: str
    instance_label: str
    instance: str
    days_seen: int
    days: int

    @property
    def name(self) -> str:
        return dependency_name(self.instance)

    @property
    def confidence(self) -> str:
        return confidence(self.days_seen, self.days)


def confidence(days_seen: int, days: int) -> str:
    """high: seen on at least 80 % of the days; medium: at least 30 %; low: less (a one-off batch call,
    a test run, a migration)."""
    share = Decimal(days_seen) / Decimal(days) if days else Decimal(0)
    return "high" if share >= Decimal("0.8") else "medium" if share >= Decimal("0.3") else "low"


_NOT_NAME = re.compile(r"[^a-z0-9]+")


def dependency_name(instance: str) -> str:
    """A dependency name from an instance label value: lower case, every other run of characters one
    hyphen (``Orders_DB`` → ``orders-db``). A value too long for a name stays too long: the spec's
    validation then says so and nothing is written."""
    return _NOT_NAME.sub("-", instance.lower()).strip("-")


def _day_values(values: Iterable[tuple[Any, Any]]) -> list[Decimal]:
    return [Decimal(str(value)) for _t, value in values]


def graph_edges(source: GraphSource, series: Iterable[tuple[Mapping[str, str], Iterable[tuple[Any, Any]]]],
                days: int) -> list[Edge]:
    """Edges from one source's daily request counts (labels, [(t, requests during the day before t)])."""
    edges = []
    for labels, values in series:
        client, server = labels.get(source.client_label, ""), labels.get(source.server_label, "")
        if not client or not server or client == server or source.placeholder in (client, server):
            continue
        daily = _day_values(values)
        seen = sum(1 for value in daily if value > 0)
        if seen == 0:
            continue
        rps = sum(daily, Decimal(0)) / Decimal(days * DAY_SECONDS)
        edges.append(Edge(client, server, rps, seen, days, (source.name,)))
    return edges


def merge_edges(edges: Iterable[Edge]) -> list[Edge]:
    """One edge per (client, server): sources that see the same calls are not added up (a mesh and traces
    count the same request); the largest rate and days seen stand, every source is named."""
    merged: dict[tuple[str, str], Edge] = {}
    for edge in edges:
        key = (edge.client, edge.server)
        held = merged.get(key)
        if held is None:
            merged[key] = edge
            continue
        merged[key] = Edge(edge.client, edge.server, max(held.rps, edge.rps), max(held.days_seen, edge.days_seen),
                           edge.days, tuple(sorted(set(held.sources) | set(edge.sources))))
    return [merged[key] for key in sorted(merged)]


def technology_uses(probe: TechnologyProbe, series: Iterable[tuple[Mapping[str, str], Iterable[tuple[Any, Any]]]],
                    days: int) -> list[TechnologyUse]:
    """Uses from one probe's daily series counts. A service label may name several services separated by
    commas (an instance shared by several services); an instance whose series name no service gives one use
    with service "" (it is visible, so ``--prune`` may judge entries that name it)."""
    seen: dict[tuple[str, str], int] = {}
    for labels, values in series:
        instance = labels.get(probe.instance_label, "")
        days_with_samples = sum(1 for value in _day_values(values) if value > 0)
        if not instance or not days_with_samples:
            continue
        services = [part.strip() for part in labels.get(probe.service_label, "").split(",") if part.strip()]
        for service in services or [""]:
            key = (service, instance)
            seen[key] = max(seen.get(key, 0), days_with_samples)
    return [TechnologyUse(service, probe.technology, probe.instance_label, instance, count, days)
            for (service, instance), count in sorted(seen.items())]


@dataclass(frozen=True)
class Proposal:
    """The changes discovery proposes to one spec's ``dependencies``."""

    service: str
    add_upstream: tuple[Edge, ...] = ()
    remove_upstream: tuple[str, ...] = ()
    add_technologies: tuple[TechnologyUse, ...] = ()
    remove_technologies: tuple[tuple[int, str], ...] = ()  # (index into dependencies.technologies, "type name")
    kept: tuple[str, ...] = field(default=())  # hand-written upstreams discovery did not see (no --prune)
    caller_seen: bool = False  # some service-graph source shows this service calling: --prune may remove

    @property
    def changes(self) -> bool:
        return bool(self.add_upstream or self.remove_upstream or self.add_technologies or self.remove_technologies)


def _matches(entry: Mapping[str, Any], use: TechnologyUse) -> bool:
    """Is a spec's technology entry the instance ``use`` saw (same type; same name or selector value)?"""
    if entry.get("type") != use.technology:
        return False
    selector = entry.get("selector") or {}
    return entry.get("name") == use.name or str(selector.get(use.instance_label, "")) in (use.instance,
                                                                                         f"={use.instance}")


def propose(spec: Mapping[str, Any], edges: Iterable[Edge], uses: Iterable[TechnologyUse], *,
            min_rps: Decimal, prune: bool, callers: Collection[str],
            visible: Mapping[str, tuple[str, Collection[str]]]) -> Proposal:
    """What to add to (and with ``prune``, remove from) one spec's dependencies.

    ``edges`` and ``uses`` are everything discovered (those of other services are ignored), edges already
    limited to callees that have a spec. Pruning removes only what discovery could have seen: an upstream
    only when the service shows up as a caller in some service-graph source (``callers``; a service outside
    the mesh and untraced keeps its list), a technology entry only when its instance has series
    (``visible``: technology → (instance label, instances seen)) that are not tied to this service.
    """
    name = spec["service"]
    deps = spec.get("dependencies") or {}
    upstream = list(deps.get("upstream") or [])
    techs = list(deps.get("technologies") or [])
    mine = [e for e in edges if e.client == name and e.rps >= min_rps]
    called = {e.server for e in mine}
    add_upstream = tuple(e for e in mine if e.server not in upstream)
    unseen = tuple(u for u in upstream if u not in called)
    remove_upstream = unseen if prune and name in callers else ()
    kept = () if remove_upstream else unseen
    my_uses = [u for u in uses if u.service == name]
    add_techs: list[TechnologyUse] = []
    for use in my_uses:
        if not any(_matches(entry, use) for entry in techs) and \
                not any(u.technology == use.technology and u.name == use.name for u in add_techs):
            add_techs.append(use)
    remove_techs: list[tuple[int, str]] = []
    for index, entry in enumerate(techs if prune else ()):
        label, instances = visible.get(entry.get("type", ""), ("", ()))
        shown = any(_matches(entry, TechnologyUse("", entry["type"], label, i, 0, 0)) for i in instances)
        if shown and not any(_matches(entry, use) for use in my_uses):
            remove_techs.append((index, f"{entry['type']} {entry.get('name')}"))
    return Proposal(name, add_upstream, remove_upstream, tuple(add_techs), tuple(remove_techs), kept,
                    name in callers)


__all__ = ["lint_discovery", "GraphSource", "SERVICE_GRAPH_SOURCES", "TechnologyProbe", "technology_probe", "Edge",
           "TechnologyUse", "Proposal", "confidence", "dependency_name", "graph_edges", "merge_edges", "technology_uses", "propose"]
