"""Record deploys and correlate them with incidents: what ``record-deploy``, ``correlate-deploy``
and ``POST /api/v1/deploys[/correlate]`` do."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from generators.errors import UserError
from generators.slo_maths import duration_seconds
from nthlayer.buildsys.project import load_services
from nthlayer.ops.evidence import NO_PROMETHEUS, Change, metric_evidence
from nthlayer.state.correlation import (BLOCK_ABOVE, DEPENDENCY_WEIGHT, FULL_STEP, HISTORY_WEIGHT, METRICS_WEIGHT,
                                        MIN_STEP, TIME_WEIGHT, Correlation, SliStep, changes_of, correlations_of,
                                        dependency_edges, metric_points, score)
from nthlayer.state.events import Deploy, insert_deploys
from nthlayer.ops.gate import EXIT_APPROVE, EXIT_BLOCK
from nthlayer.state.db import Opener, format_time, insert_audit, to_db, utc_now

if TYPE_CHECKING:
    import duckdb

    from nthlayer.integrations.prometheus import PrometheusClient

DURATION = re.compile(r"^[1-9][0-9]*[smhdw]$")


def deploy_text(deploy: Deploy, added: bool) -> str:
    """The line ``record-deploy`` (and ``record-change``) prints."""
    what = "" if deploy.kind == "deploy" else f"{deploy.kind} change "
    return f"{'recorded' if added else 'already recorded'}: {what}{deploy.service} {deploy.version} at " \
           f"{format_time(deploy.deployed_at)}"


def record_deploys(con: duckdb.DuckDBPyConnection, deploys: Sequence[Deploy], actor: str | None = None
                   ) -> list[bool]:
    """Insert deploys (one statement however many) with an audit row each; per deploy, whether it was new.

    A deploy already stored (same service, version and time), or repeated earlier in ``deploys``, is
    "already recorded". Batching is what lets one server absorb many pipelines: one commit for all."""
    if not deploys:
        return []
    keys = [(d.service, d.version, to_db(d.deployed_at)) for d in deploys]
    stored = {tuple(row) for row in con.execute(
        "SELECT d.service, d.version, d.deployed_at FROM deploys d JOIN "
        "(SELECT unnest($s) AS s, unnest($v) AS v, unnest($t) AS t) k "
        "ON d.service = k.s AND d.version = k.v AND d.deployed_at = k.t",
        {"s": [k[0] for k in keys], "v": [k[1] for k in keys], "t": [k[2] for k in keys]}).fetchall()}
    added: list[bool] = []
    for key in keys:
        added.append(key not in stored)
        stored.add(key)
    insert_deploys(con, deploys)
    for deploy, new in zip(deploys, added):
        details = {"version": deploy.version, "commit": deploy.commit_sha,
                   "deployed_at": format_time(deploy.deployed_at)}
        if deploy.kind != "deploy":
            details["kind"] = deploy.kind
        insert_audit(con, "record-deploy" if deploy.kind == "deploy" else "record-change", deploy.service,
                     "recorded" if new else "already recorded", details, actor=actor)
    return added


def record_deploy(opener: Opener, deploy: Deploy, actor: str | None = None) -> bool:
    """:func:`record_deploys` for one deploy, in its own short connection: whether it was new."""
    with opener() as con:
        return record_deploys(con, [deploy], actor)[0]


def _hops_text(hops: Any) -> str:
    if hops is None:
        return "not downstream"
    return "same service" if hops == 0 else f"{hops} hop{'s' if hops != 1 else ''}"


def _number(value: Any) -> str:
    """0.30 → 0.3, 0.0 → 0: the shortest exact text of a factor."""
    text = format(Decimal(str(value)).normalize(), "f")
    return "0" if text in ("-0", "0.0") else text


def factors_text(factors: dict[str, Any]) -> str:
    """Every factor of a pair as ``value/weight`` (the weight: the most it can add to this pair)."""
    weights = factors.get("weights", {})  # rows scored before weights were stored: today's weights
    metrics = factors.get("metrics")
    parts = [f"time {_number(factors['time'])}/{_number(weights.get('time', TIME_WEIGHT))}",
             f"dependency {_number(factors['dependency'])}/{_number(weights.get('dependency', DEPENDENCY_WEIGHT))}",
             f"blast radius {_number(factors.get('blast_radius', 0))}/{_number(weights.get('blast_radius', 0))} "
             f"({_hops_text(factors.get('hops'))})",
             f"history {_number(factors['history'])}/{_number(weights.get('history', HISTORY_WEIGHT))}",
             f"metrics {'unavailable' if metrics is None else _number(metrics)}/"
             f"{_number(weights.get('metrics', METRICS_WEIGHT))}"]
    return ", ".join(parts)


@dataclass(frozen=True)
class MetricSummary:
    """A change's own metric evidence: the largest SLI step of its service and dependants, or why none."""
    steps: list[SliStep]
    unavailable: str | None

    @property
    def worst(self) -> SliStep | None:
        return max(self.steps, key=lambda s: (s.step, s.service, s.slo)) if self.steps else None

    @property
    def alarming(self) -> bool:
        """A step at the fast-burn paging rate: strong evidence even before an incident is opened."""
        worst = self.worst
        return worst is not None and worst.step >= FULL_STEP

    def as_dict(self) -> dict[str, Any]:
        worst = self.worst
        return {"unavailable": self.unavailable,
                "points": None if worst is None else metric_points(worst.step),
                "worst": None if worst is None else worst.as_dict(),
                "steps": [s.as_dict() for s in self.steps]}

    def text(self) -> str:
        worst = self.worst
        if worst is None:
            return f"metrics: unavailable: {self.unavailable}"
        verdict = "step up" if worst.step >= MIN_STEP else "flat"
        return (f"metrics: {verdict}: {worst.service} {worst.slo} burn rate {worst.burn_before:.2f} → "
                f"{worst.burn_after:.2f} in the 30m after vs before ({_number(metric_points(worst.step))}/"
                f"{METRICS_WEIGHT})")


@dataclass(frozen=True)
class CorrelationOutcome:
    service: str
    version: str
    time_window: str
    found: list[Correlation]
    blocked: bool
    kind: str = "deploy"
    metrics: MetricSummary = MetricSummary([], "not evaluated")

    @property
    def action(self) -> str:
        if self.blocked:
            return "BLOCK"
        if any(c.action == "INVESTIGATE" for c in self.found) or self.metrics.alarming:
            return "INVESTIGATE"
        return "NONE"

    @property
    def exit_code(self) -> int:
        return EXIT_BLOCK if self.blocked else EXIT_APPROVE

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service, "version": self.version, "kind": self.kind, "time_window": self.time_window,
            "action": self.action, "metrics": self.metrics.as_dict(),
            "incidents": [{"id": c.incident_key, "service": c.incident_service, "severity": c.severity,
                           "title": c.title, "started_at": format_time(c.started_at),
                           "deployed_at": format_time(c.deployed_at), "confidence": c.confidence,
                           "factors": c.factors, "action": c.action} for c in self.found],
        }

    def text(self) -> str:
        n = len(self.found)
        what = "" if self.kind == "deploy" else f" ({self.kind} change)"
        lines = [f"{self.service} {self.version}{what}: {n} correlated incident{'s' if n != 1 else ''} "
                 f"within {self.time_window}; action: {self.action}", f"  {self.metrics.text()}"]
        for c in self.found:
            lines.append(f"  {c.incident_key}  {c.incident_service}  {c.severity}  started "
                         f"{format_time(c.started_at)}  confidence {c.confidence * 100:.0f}%  {c.action}")
            lines.append(f"    factors: {factors_text(c.factors)}")
        return "\n".join(lines)


def window_seconds(time_window: str) -> int:
    if not DURATION.fullmatch(time_window):
        raise UserError(f"--time-window {time_window!r} is not a duration such as 30m, 1h or 2d")
    return duration_seconds(time_window)


def correlate(con: duckdb.DuckDBPyConnection, service: str, version: str, time_window: str,
              edges: Iterable[tuple[str, str]], actor: str | None = None,
              evidence: dict[int, list[SliStep] | str] | None = None) -> CorrelationOutcome:
    """Score a recorded change against the incidents after it, record the verdict in the audit trail.
    ``evidence``: its metric evidence per change id (nthlayer.ops.evidence); None: unavailable."""
    window = window_seconds(time_window)
    changes = changes_of(con, service, version)
    if not changes:
        raise UserError(f"no recorded deploy or change of {service} version {version}; record it with "
                        "'nthlayer record-deploy', 'nthlayer record-change' or 'nthlayer import-events'")
    ids = [c[0] for c in changes]
    score(con, edges, window, ids, evidence=evidence)
    found = [c for c in correlations_of(con, ids) if c.confidence > 0]
    blocked = any(c.confidence > BLOCK_ABOVE for c in found)
    newest = evidence.get(ids[-1]) if evidence else None
    summary = MetricSummary(list(newest), None) if isinstance(newest, list) and newest else \
        MetricSummary([], newest if isinstance(newest, str) else NO_PROMETHEUS)
    insert_audit(con, "correlate-deploy", service, "block" if blocked else "ok",
                 {"version": version, "time_window": time_window,
                  "top_confidence": str(found[0].confidence) if found else None}, actor=actor)
    return CorrelationOutcome(service, version, time_window, found, blocked, kind=changes[-1][2], metrics=summary)


def correlate_deploy(opener: Opener, services_dir: str, service: str, version: str, time_window: str,
                     actor: str | None = None, client: PrometheusClient | None = None) -> CorrelationOutcome:
    """:func:`correlate` with the dependency graph of the specs in ``services_dir`` (none: no graph) and,
    with a Prometheus ``client``, the SLI evidence of the change (read with no database connection held)."""
    window_seconds(time_window)  # a bad duration is refused before any spec is read
    services = load_services(services_dir) if os.path.isdir(services_dir) else []
    edges = dependency_edges(services)
    with opener() as con:
        changes = [Change(i, service, at) for i, at, _kind in changes_of(con, service, version)]
    evidence = metric_evidence(client, services, edges, changes, utc_now())
    with opener() as con:
        return correlate(con, service, version, time_window, edges, actor=actor, evidence=evidence)
