"""Error budgets: ``track-budget`` and ``GET /api/v1/error-budgets``."""
from __future__ import annotations

from datetime import datetime

from generators.model import Service
from nthlayer import prometheus as prom
from nthlayer.budget import BudgetReport, evaluate, record_budgets
from nthlayer.ops.deploys import Opener


def track_budget(client: prom.PrometheusClient, services: list[Service], at: datetime, opener: Opener
                 ) -> list[BudgetReport]:
    """Every SLO's budget of ``services`` at ``at``, recorded in the state database."""
    client.restart_deadline()  # the deadline bounds one evaluation (one sample, one request), not a process
    reports = evaluate(client, services, at)
    with opener() as con:
        record_budgets(con, reports)
    return reports
