"""The deploy gate (``check-deploy`` and ``POST /api/v1/deploys/check``): approve, block, or say it cannot
decide, from the worst SLO's remaining budget.

Policy numbers come from the tier table (generators/tiers.py) only:
``gate_block_below_percent``, ``gate_warn_below_percent`` and ``gate_on_unknown``.
The decision uses the WORST SLO (lowest remaining budget %), never an average:
one SLO in trouble is enough. A deploy is also blocked while a recent deploy of
the same service is correlated above 0.8 with an incident that is still open.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Sequence

from generators.errors import UserError
from generators.model import Service
from nthlayer.buildsys.project import load_services, with_slo_plugins
from nthlayer.ops.budget import BudgetReport, evaluate, percent_text
from nthlayer.ops.composites import Bound, gate_composites
from nthlayer.state.correlation import Correlation, dependency_edges, open_incident_suspects
from nthlayer.state.db import Opener, StateUnavailable, format_time, insert_audit

if TYPE_CHECKING:  # imported where used: the build's report task decides gates without it
    from nthlayer.integrations import prometheus as prom

EXIT_APPROVE = 0
EXIT_BLOCK = 2
EXIT_UNKNOWN = 3
EXIT_CODES = {"approve": EXIT_APPROVE, "block": EXIT_BLOCK, "unknown": EXIT_UNKNOWN}
RECENT_DEPLOY_SECONDS = 24 * 3600


@dataclass
class Decision:
    service: str
    tier: int
    result: str  # approve | block | unknown
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    worst: BudgetReport | None = None
    undecided: bool = False  # the facts did not decide; `on_unknown` did (or nothing did: exit 3)
    on_unknown: str | None = None  # how an undecided gate was resolved, and by what

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.result]

    def as_dict(self, budgets: list[BudgetReport], suspects: list[Correlation]) -> dict[str, Any]:
        return {
            "service": self.service, "tier": self.tier, "decision": self.result, "exit_code": self.exit_code,
            "reasons": self.reasons, "warnings": self.warnings, "undecided": self.undecided,
            "on_unknown": self.on_unknown,
            "worst_slo": None if self.worst is None else self.worst.slo,
            "budgets": [b.as_dict() for b in budgets],
            "suspect_deploys": [{"version": c.version, "deployed_at": format_time(c.deployed_at),
                                 "incident": c.incident_key, "incident_service": c.incident_service,
                                 "confidence": c.confidence, "factors": c.factors} for c in suspects],
        }


def _budget_line(report: BudgetReport) -> str:
    return (f"{report.title} ({percent_text(report.objective)} over {report.window_days}d) has "
            f"{report.remaining_percent}% of its error budget left")


def decide(service: Service, budgets: list[BudgetReport] | None, unavailable: str | None,
           suspects: list[Correlation], on_unknown: str | None, state_problem: str | None = None) -> Decision:
    """The gate's verdict. ``budgets`` is None when Prometheus could not answer (``unavailable`` says why).
    ``state_problem`` says why the state database (recent deploys, open incidents) could not be read:
    then no suspect can be ruled out, and only a budget block still decides.

    ``on_unknown``: None (exit 3 when undecided), "approve", "block", or "tier" (the tier table's default).
    """
    tier = service.tier
    decision = Decision(service.name, tier.number, "approve")
    for c in suspects:
        decision.reasons.append(
            f"deploy {c.version} of {c.service} ({format_time(c.deployed_at)}) is correlated "
            f"{c.confidence * 100:.0f}% with open incident {c.incident_key} on {c.incident_service}")
    known = [b for b in budgets or [] if b.remaining_percent is not None]
    missing = [b for b in budgets or [] if b.remaining_percent is None]
    if known:
        decision.worst = min(known, key=lambda b: (b.remaining_percent, b.slo))
    worst = decision.worst
    blocked_by_budget = worst is not None and worst.remaining_percent < tier.gate_block_below_percent  # type: ignore[operator]
    if blocked_by_budget:
        assert worst is not None
        decision.reasons.append(f"{_budget_line(worst)}; tier {tier.number} ({tier.name}) blocks below "
                                f"{tier.gate_block_below_percent}%")
    if suspects or blocked_by_budget:
        decision.result = "block"
        return decision
    if not service.slos:
        # `slos: []`: nothing to judge by but the open-incident check above.
        decision.reasons.append(f"{service.name} has no SLOs (slos: []): no error budget judges its deploys")
        if state_problem is None:
            return decision
    unknown_reasons = []
    if state_problem is not None:
        unknown_reasons.append(f"cannot read recent deploys and incidents: {state_problem}")
    if unavailable is not None:
        unknown_reasons.append(f"cannot read error budgets: {unavailable}")
    for b in missing:
        whose = f"the {b.title}" if b.composite else f"the {b.slo} SLO of {b.service}"
        unknown_reasons.append(f"no data for {whose} in Prometheus "
                               f"(no matching series, or no traffic in {b.window_days}d)")
    if unknown_reasons:
        decision.reasons.extend(unknown_reasons)
        decision.undecided = True
        if on_unknown is None:
            decision.result = "unknown"
            decision.warnings.append(f"tier {tier.number} ({tier.name}) default for an undecided gate is "
                                     f"'{tier.gate_on_unknown}'; pass --on-unknown tier to apply it")
            return decision
        if on_unknown == "tier":
            decision.result = tier.gate_on_unknown
            decision.on_unknown = f"tier {tier.number} ({tier.name}) default: {tier.gate_on_unknown}"
        else:
            decision.result = on_unknown
            decision.on_unknown = f"--on-unknown {on_unknown}"
        return decision
    assert worst is not None
    decision.reasons.append(f"{_budget_line(worst)} (worst of {len(known)} SLO{'s' if len(known) != 1 else ''})")
    if worst.remaining_percent < tier.gate_warn_below_percent:  # type: ignore[operator]
        decision.warnings.append(f"below tier {tier.number}'s warning level of {tier.gate_warn_below_percent}%: "
                                 "deploy with care")
    return decision


def render(decision: Decision) -> str:
    """Human-readable verdict: one headline, then the reasons and warnings."""
    headline = {"approve": "APPROVE", "block": "BLOCK", "unknown": "CANNOT DECIDE"}[decision.result]
    lines = [f"{headline}: deploy of {decision.service} (tier {decision.tier})"]
    lines += [f"  - {reason}" for reason in decision.reasons]
    if decision.on_unknown:
        lines.append(f"  undecided; applied {decision.on_unknown}")
    lines += [f"  warning: {w}" for w in decision.warnings]
    return "\n".join(lines)


def service_and_graph(services_dir: str, name: str) -> tuple[Service, list[Service]]:
    """The named service and every service of the folder (the dependency graph the gate looks at)."""
    everyone = load_services(services_dir) if os.path.isdir(services_dir) else []
    matches = [s for s in everyone if s.name == name]
    if not matches:
        raise UserError(f"no spec for service '{name}' in {services_dir}")
    return matches[0], everyone


def spec_and_graph(services_dir: str, spec_path: str) -> tuple[Service, list[Service]]:
    """The service of the spec file ``spec_path`` (SLO plugins applied) and the graph around it: every
    service of ``services_dir`` but its namesake, then the service itself."""
    from generators.spec import load_spec

    everyone = load_services(services_dir) if os.path.isdir(services_dir) else []
    if not os.path.isfile(spec_path):
        raise UserError(f"no such spec file: {spec_path}")
    service = with_slo_plugins(load_spec(spec_path)).service
    return service, [s for s in everyone if s.name != service.name] + [service]


@dataclass
class GateOutcome:
    decision: Decision
    budgets: list[BudgetReport]
    suspects: list[Correlation]
    recorded: bool  # False: the state database could not be used, the audit trail misses this decision
    service: Service | None = None  # the service judged

    @property
    def blocked(self) -> bool:
        return self.decision.exit_code == EXIT_BLOCK

    @property
    def exit_code(self) -> int:
        return self.decision.exit_code

    def as_dict(self) -> dict[str, Any]:
        return self.decision.as_dict(self.budgets, self.suspects)

    def text(self) -> str:
        return render(self.decision)


def check_gate(service: Service, everyone: list[Service], at: datetime, client: prom.PrometheusClient | None,
               on_unknown: str | None, opener: Opener, version: str | None = None,
               actor: str | None = None, composites: Sequence[Bound] = ()) -> GateOutcome:
    """Evaluate the gate for ``service`` at ``at``: its budgets from Prometheus (``client`` None: no
    Prometheus configured, which is "cannot decide"), and those of ``composites`` (the composite SLOs it
    is a component of: nthlayer.ops.composites.composites_of), open incidents its recent deploys may have
    caused."""
    from nthlayer.integrations.prometheus import PrometheusError

    budgets: list[BudgetReport] | None = None
    unavailable = None
    if client is None:
        unavailable = "no Prometheus URL configured"
    else:
        try:
            budgets = evaluate(client, [service], at, composites)
        except PrometheusError as exc:
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
        return GateOutcome(decision, budgets or [], suspects, True, service)
    except StateUnavailable as exc:
        # Without the state no open incident can be ruled out: "cannot decide" (exit 3, or --on-unknown),
        # unless the budget alone blocks. There is nowhere to record the decision.
        decision = decide(service, budgets, unavailable, [], on_unknown, state_problem=str(exc))
        return GateOutcome(decision, budgets or [], [], False, service)


def check_deploy(services_dir: str, at: datetime, client: prom.PrometheusClient | None, on_unknown: str | None,
                 opener: Opener, *, name: str | None = None, spec_path: str | None = None,
                 version: str | None = None, actor: str | None = None) -> GateOutcome:
    """The gate's verdict on a deploy of one service: named (``name``, from ``services_dir``) or given by its
    own spec file (``spec_path``), judged with the composite SLOs it belongs to and the dependency graph of
    ``services_dir``. What `check-deploy` and ``POST /api/v1/deploys/check`` both answer."""
    if (name is None) == (spec_path is None):
        raise UserError("the gate judges one service: give its name or its spec file")
    service, everyone = service_and_graph(services_dir, name) if name is not None \
        else spec_and_graph(services_dir, str(spec_path))
    return check_gate(service, everyone, at, client, on_unknown, opener, version=version, actor=actor,
                      composites=gate_composites(services_dir, service, everyone))
