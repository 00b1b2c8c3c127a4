"""The deploy gate: ``check-deploy`` and ``POST /api/v1/deploys/check``."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from generators.errors import UserError
from generators.model import Service
from nthlayer import prometheus as prom
from nthlayer.budget import BudgetReport, evaluate, load_services
from nthlayer.correlation import Correlation, dependency_edges, open_incident_suspects
from nthlayer.gate import RECENT_DEPLOY_SECONDS, Decision, decide, render
from nthlayer.ops.deploys import Opener
from nthlayer.state import StateUnavailable, format_time, insert_audit


def service_and_graph(services_dir: str, name: str) -> tuple[Service, list[Service]]:
    """The named service and every service of the folder (the dependency graph the gate looks at)."""
    everyone = load_services(services_dir) if os.path.isdir(services_dir) else []
    matches = [s for s in everyone if s.name == name]
    if not matches:
        raise UserError(f"no spec for service '{name}' in {services_dir}")
    return matches[0], everyone


@dataclass
class GateOutcome:
    decision: Decision
    budgets: list[BudgetReport]
    suspects: list[Correlation]
    recorded: bool  # False: the state database could not be used, the audit trail misses this decision

    @property
    def exit_code(self) -> int:
        return self.decision.exit_code

    def as_dict(self) -> dict[str, Any]:
        return self.decision.as_dict(self.budgets, self.suspects)

    def text(self) -> str:
        return render(self.decision)


def check_gate(service: Service, everyone: list[Service], at: datetime, client: prom.PrometheusClient | None,
               on_unknown: str | None, opener: Opener, version: str | None = None,
               actor: str | None = None) -> GateOutcome:
    """Evaluate the gate for ``service`` at ``at``: its budgets from Prometheus (``client`` None: no
    Prometheus configured, which is "cannot decide"), open incidents its recent deploys may have caused."""
    budgets: list[BudgetReport] | None = None
    unavailable = None
    if client is None:
        unavailable = "no Prometheus URL configured"
    else:
        try:
            budgets = evaluate(client, [service], at)
        except prom.PrometheusError as exc:
            unavailable = str(exc)
    edges = dependency_edges(everyone)
    try:
        with opener() as con:
            suspects = open_incident_suspects(con, service.name, edges, at, RECENT_DEPLOY_SECONDS)
            decision = decide(service, budgets, unavailable, suspects, on_unknown)
            insert_audit(con, "check-deploy", service.name, decision.result, {
                "version": version, "at": format_time(at), "exit_code": decision.exit_code,
                "reasons": decision.reasons, "warnings": decision.warnings, "on_unknown": decision.on_unknown,
                "worst_slo": decision.worst.slo if decision.worst else None,
                "worst_remaining_percent": str(decision.worst.remaining_percent) if decision.worst else None,
                "prometheus": client.display_url if client else None,
            }, actor=actor)
        return GateOutcome(decision, budgets or [], suspects, True)
    except StateUnavailable as exc:
        # Without the state no open incident can be ruled out: "cannot decide" (exit 3, or --on-unknown),
        # unless the budget alone blocks. There is nowhere to record the decision.
        decision = decide(service, budgets, unavailable, [], on_unknown, state_problem=str(exc))
        return GateOutcome(decision, budgets or [], [], False)
