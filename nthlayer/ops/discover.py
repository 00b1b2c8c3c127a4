"""``nthlayer discover``: propose each spec's dependencies from what Prometheus sees (docs/discovery.md).

Queries go through the Prometheus client (nthlayer.integrations.prometheus); what the answers mean is
generators.discovery (pure); the spec text is edited by nthlayer.ops.spec_edit. With ``--write`` every
edited text is validated as the build validates a spec before any file is replaced, each atomically.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable

from generators.catalog import load_technology, technology_files
from generators.discovery import (DAY_SECONDS, SERVICE_GRAPH_SOURCES, Edge, Proposal, TechnologyProbe, TechnologyUse,
                                  graph_edges, merge_edges, propose, technology_probe, technology_uses)
from generators.errors import SpecError, SpecErrors, UserError
from generators.render import write_if_changed
from generators.spec import load_spec
from nthlayer.buildsys.project import load_specs, select_specs
from nthlayer.integrations.prometheus import PrometheusClient
from nthlayer.ops.spec_edit import apply_proposal


@dataclass(frozen=True)
class SpecChange:
    """One spec file: what discovery proposes for it, and its text before and after."""

    path: str
    proposal: Proposal
    before: str
    after: str

    def diff(self) -> str:
        """A unified diff of the spec (empty when nothing changes)."""
        return "".join(difflib.unified_diff(self.before.splitlines(keepends=True),
                                            self.after.splitlines(keepends=True), self.path, self.path))


@dataclass(frozen=True)
class Discovery:
    """Everything one run found: per spec its change, and what was seen but cannot be written."""

    at: datetime
    days: int
    min_rps: Decimal
    sources: tuple[str, ...]  # service-graph sources that had data
    probed: tuple[str, ...]  # technologies whose discovery metric had series
    edges: tuple[Edge, ...]  # from the services looked at to services with a spec, at or above the floor
    uses: tuple[TechnologyUse, ...]
    changes: tuple[SpecChange, ...]
    unknown: tuple[Edge, ...] = ()  # to services without a spec (suggestions; never written)
    below_floor: tuple[Edge, ...] = ()

    @property
    def changed(self) -> tuple[SpecChange, ...]:
        return tuple(c for c in self.changes if c.before != c.after)


def _series(rows: Iterable[Any]) -> list[tuple[dict[str, str], list[tuple[Any, Any]]]]:
    return [(row.labels, row.values) for row in rows]


def probes(catalog_dir: str) -> tuple[list[TechnologyProbe], list[str]]:
    """The catalog's technology probes, and the technologies that declare none (not discoverable). Only
    files with a top-level ``discovery:`` line are validated (loading all of them costs a second)."""
    found, without = [], []
    for name, path in sorted(technology_files(catalog_dir).items()):
        with open(path, "rb") as handle:
            declares = b"\ndiscovery:" in handle.read()
        probe = technology_probe(name, load_technology(path).data) if declares else None
        if probe is None:
            without.append(name)
        else:
            found.append(probe)
    return found, without


def discover(client: PrometheusClient, services_dir: str, names: Iterable[str] | None, *, days: int,
             at: datetime, min_rps: Decimal, prune: bool, catalog_dir: str) -> Discovery:
    """Ask Prometheus for a day-by-day picture of ``days`` days ending at ``at``; propose spec changes."""
    everything = load_specs(services_dir)
    known = {spec.service.name for spec in everything}
    specs = [(spec.located.path, spec.located.data) for spec in select_specs(everything, names, services_dir)]
    looked_at = {data["service"] for _path, data in specs}
    start = at - timedelta(days=days - 1)
    edges: list[Edge] = []
    sources = []
    for source in SERVICE_GRAPH_SOURCES:
        found = graph_edges(source, _series(client.query_range(source.query(), start, at, DAY_SECONDS)), days)
        if found:
            sources.append(source.name)
        edges.extend(found)
    callers = {e.client for e in edges}
    merged = [e for e in merge_edges(edges) if e.client in looked_at]
    technology_probes, _without = probes(catalog_dir)
    uses: list[TechnologyUse] = []
    visible: dict[str, tuple[str, set[str]]] = {}
    for probe in technology_probes:
        found_uses = technology_uses(probe, _series(client.query_range(probe.query(), start, at, DAY_SECONDS)), days)
        if found_uses:
            visible[probe.technology] = (probe.instance_label, {u.instance for u in found_uses})
        uses.extend(u for u in found_uses if u.service in looked_at)
    to_known = [e for e in merged if e.server in known]
    changes = []
    for path, data in specs:
        proposal = propose(data, to_known, uses, min_rps=min_rps, prune=prune, callers=callers, visible=visible)
        with open(path, encoding="utf-8") as handle:
            before = handle.read()
        changes.append(SpecChange(path, proposal, before, apply_proposal(before, path, proposal)))
    return Discovery(
        at, days, min_rps, tuple(sources), tuple(sorted(visible)),
        tuple(e for e in to_known if e.rps >= min_rps), tuple(uses), tuple(changes),
        tuple(e for e in merged if e.server not in known and e.rps >= min_rps),
        tuple(e for e in merged if e.rps < min_rps))


def write_changes(changes: Iterable[SpecChange]) -> list[str]:
    """Validate every edited spec as the build would, then replace each file atomically; nothing is
    written when any edited text is invalid (SpecErrors, located in the edited text) or a file changed
    since it was read (UserError)."""
    pending = [c for c in changes if c.before != c.after]
    errors: list[SpecError] = []
    for change in pending:
        try:
            load_spec(change.path, change.after.encode("utf-8"))
        except SpecErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise SpecErrors(errors)
    for change in pending:
        with open(change.path, encoding="utf-8") as handle:
            if handle.read() != change.before:
                raise UserError(f"{change.path} changed while discovery ran; nothing written, run it again")
    written = []
    for change in pending:
        write_if_changed(change.path, change.after.encode("utf-8"))
        written.append(os.path.normpath(change.path))
    return written


__all__ = ["Discovery", "SpecChange", "discover", "write_changes", "probes"]
