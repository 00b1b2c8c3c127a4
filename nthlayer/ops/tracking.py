"""Tracking error budgets: one sample, a sampling loop, or a backfill of the past, recorded in the state.

What `track-budget` does and what ``GET /api/v1/error-budgets`` answers with: the services and composite
SLOs in scope (:func:`budget_scope`), their budgets evaluated at one instant and recorded
(:func:`track_budget`), every interval (:func:`track_every`), or their budget history filled from range
queries (:func:`backfill`).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from generators.errors import UserError
from generators.model import Service
from generators.slo_maths import duration_seconds
from nthlayer.buildsys.project import load_services
from nthlayer.integrations import prometheus as prom
from nthlayer.ops.budget import BudgetReport, evaluate, record_budgets
from nthlayer.ops.budget_history import backfill_history, sample_history, step_grid
from nthlayer.ops.composites import Bound, budget_composites
from nthlayer.state.db import Opener, Writer, format_time, utc_now
from nthlayer.state.history import Columns, record_history, write_columns

_DURATION = re.compile(r"^[1-9][0-9]*[smhdw]$")


@dataclass(frozen=True)
class BudgetScope:
    """The services whose budgets are tracked, and the composite SLOs built from them."""
    services: list[Service]
    composites: list[Bound]


def budget_scope(services_dir: str, names: list[str] | None = None) -> BudgetScope:
    """The services named (None: every service) of ``services_dir``, and their composite SLOs."""
    return BudgetScope(load_services(services_dir, names), budget_composites(services_dir, names))


def track_budget(client: prom.PrometheusClient, scope: BudgetScope, at: datetime, write: Writer, *,
                 history: bool = True) -> list[BudgetReport]:
    """Every SLO's budget in ``scope`` (composites too) at ``at``, recorded in the state database through
    ``write`` (:func:`nthlayer.state.db.writer`, or the server's batching store); with ``history``, also one
    budget-history point per SLO (what the reports' trend lines are drawn from). The API answers without
    the history point: how often clients ask must not shape the trend lines."""
    client.restart_deadline()  # the deadline bounds one evaluation (one sample, one request), not a process
    reports = evaluate(client, scope.services, at, scope.composites)
    points = sample_history(client, scope.services, at) if history else None

    def record(con: Any) -> None:
        record_budgets(con, reports)
        if points is not None:
            record_history(con, points)

    write(record)
    return reports


def interval_seconds(text: str) -> int:
    """--interval's sampling period in seconds."""
    if not _DURATION.fullmatch(text):
        raise UserError(f"--interval {text!r} is not a duration such as 30s, 5m or 1h")
    return duration_seconds(text)


def track_every(client: prom.PrometheusClient, scope: BudgetScope, seconds: int, write: Writer,
                emit: Callable[[list[BudgetReport]], None], warn: Callable[[prom.PrometheusError], None]) -> None:
    """Sample every ``seconds`` until interrupted (KeyboardInterrupt reaches the caller), handing each
    sample to ``emit``. A monitoring loop outlives a Prometheus restart: a failed sample goes to ``warn``
    and the loop tries again next tick."""
    while True:
        started = time.monotonic()
        try:
            emit(track_budget(client, scope, utc_now().replace(microsecond=0), write))
        except prom.PrometheusError as exc:
            warn(exc)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))


@dataclass(frozen=True)
class BackfillSummary:
    """What a backfill wrote: ``points`` history points for ``slos`` SLOs, ``start`` to ``end``."""
    start: datetime
    end: datetime
    step: str
    slos: int
    points: int

    def as_dict(self) -> dict[str, Any]:
        return {"from": format_time(self.start), "to": format_time(self.end), "step": self.step,
                "slos": self.slos, "points": self.points}

    def text(self) -> str:
        return (f"budget history from {format_time(self.start)} to {format_time(self.end)} every {self.step}: "
                f"{self.points} point{'s' if self.points != 1 else ''} for {self.slos} "
                f"SLO{'s' if self.slos != 1 else ''}")


def backfill(client: prom.PrometheusClient, services: list[Service], end: datetime, span: str, step: str,
             opener: Opener) -> BackfillSummary:
    """The budget history of (end − ``span``, ``end``], one point every ``step`` (durations such as 30d and
    1h; the step divides a day), from Prometheus range queries, written chunk by chunk."""
    for option, value in (("--backfill", span), ("--step", step)):
        if not _DURATION.fullmatch(value):
            raise UserError(f"{option} {value!r} is not a duration such as 30d, 6h or 5m")
    span_seconds, step_seconds = duration_seconds(span), duration_seconds(step)
    if 86400 % step_seconds:
        raise UserError(f"--step {step} must divide a day (5m, 15m, 1h, 6h, 1d …): the history's "
                        "1d/7d/28d/30d figures are sums of whole steps")
    if span_seconds < step_seconds:
        raise UserError(f"--backfill {span} is shorter than one --step ({step})")
    instants = step_grid(end, span_seconds, step_seconds)

    def write(columns: Columns) -> None:
        with opener() as con:  # one short transaction per chunk: others may use the state between
            write_columns(con, columns)

    written = backfill_history(client, services, end, span_seconds, step_seconds, write)
    return BackfillSummary(datetime.fromtimestamp(instants[0], timezone.utc),
                           datetime.fromtimestamp(instants[-1], timezone.utc), step,
                           sum(len(s.slos) for s in services), written)
