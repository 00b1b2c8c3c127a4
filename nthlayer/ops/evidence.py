"""Metric evidence for change ↔ incident correlation: did the SLIs of a changed service, or of the services
that depend on it, step up right after the change?

For a change of S at time T, for S and each service up to nthlayer.state.correlation.MAX_HOPS downstream
of it, and each of their SLOs that counts events (availability, latency, events, ratio_query), the bad
ratio over the 30 minutes before T and over the 30 minutes after it, read with the same PromQL the SLO's
recording rules use (generators.sli_queries.raw_ratio), divided by the SLO's error budget: two burn rates.
The scoring (nthlayer.state.correlation) turns the step between them into points.

Nothing here fails a command: without a Prometheus URL, with Prometheus unreachable, before enough time has
passed, or when no series exist, a change's metric evidence is a sentence saying why it is unavailable.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Iterable, Sequence

from generators.model import Service
from generators.sli_queries import raw_ratio
from nthlayer.integrations.prometheus import PrometheusClient, PrometheusError
from nthlayer.state.correlation import EVIDENCE_MINUTES, MAX_HOPS, SliStep, downstream

# The SLI kinds whose bad ratio raw_ratio reads (threshold SLOs are time slices of a recorded series).
EVIDENCE_KINDS = ("availability", "latency", "events", "ratio_query")
MIN_AFTER = timedelta(minutes=5)  # less SLI data than this after a change says nothing yet
NO_PROMETHEUS = "no Prometheus URL given"


@dataclass(frozen=True)
class Change:
    """What evidence is gathered for: a recorded change (its ``deploys`` row id), its service and time."""
    id: int
    service: str
    at: datetime


def _ratio(client: PrometheusClient, promql: str, at: datetime) -> Decimal | None:
    samples = client.query(promql, at)
    values = [s.value for s in samples if s.value.is_finite()]  # 0/0 (no traffic) is NaN: no evidence
    return max(values) if values else None


def _window(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def sli_steps(client: PrometheusClient, service: Service, at: datetime, after: timedelta) -> list[SliStep]:
    """The burn rates of each counted SLO of ``service`` over the 30 minutes before ``at`` and ``after``
    it (SLOs without data left out)."""
    before_window = _window(EVIDENCE_MINUTES * 60)
    after_window = _window(int(after.total_seconds()))
    steps = []
    for slo in service.slos:
        if slo.kind not in EVIDENCE_KINDS:
            continue
        before = _ratio(client, raw_ratio(service, slo, before_window), at)
        after_ratio = _ratio(client, raw_ratio(service, slo, after_window), at + after)
        if before is None or after_ratio is None:
            continue
        budget = slo.error_budget
        steps.append(SliStep(service.name, slo.name, float(before / budget), float(after_ratio / budget)))
    return steps


def metric_evidence(client: PrometheusClient | None, services: Iterable[Service], edges: Iterable[tuple[str, str]],
                    changes: Sequence[Change], now: datetime) -> dict[int, list[SliStep] | str]:
    """Per change id: the SLI steps of its service and of its dependants, or why there are none."""
    if client is None:
        return {c.id: NO_PROMETHEUS for c in changes}
    by_name = {s.name: s for s in services}
    reach: dict[str, list[str]] = {}
    for deployed, affected, _hops in downstream(edges, MAX_HOPS):
        reach.setdefault(deployed, []).append(affected)
    result: dict[int, list[SliStep] | str] = {}
    for change in changes:
        after = min(timedelta(minutes=EVIDENCE_MINUTES), now - change.at)
        if after < MIN_AFTER:
            result[change.id] = (f"too early: {max(0, int(after.total_seconds()) // 60)}m of SLI data after the "
                                 f"change, {int(MIN_AFTER.total_seconds()) // 60}m needed")
            continue
        names = [change.service] + reach.get(change.service, [])
        try:
            steps = [step for name in names if name in by_name
                     for step in sli_steps(client, by_name[name], change.at, after)]
        except PrometheusError as exc:  # unreachable, or an answer that is no use: the factor, not the command
            result[change.id] = f"Prometheus: {exc}"
            continue
        result[change.id] = steps or f"no SLI data in Prometheus for {change.service} or its dependants"
    return result
