"""The tier table: the one place that says what tier 1, 2 and 3 mean.

Every policy that depends on a service's tier (SLO defaults, which burn-rate
alerts exist and how loud they are, which catalog severities apply, PagerDuty
urgency and escalation, the deploy gate) is read from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Tier:
    number: int
    name: str
    description: str
    availability: Decimal
    latency_ms: int
    latency_target: Decimal
    # Catalog alert severities that apply to services of this tier.
    catalog_severities: tuple[str, ...]
    # Severity of each multi-window burn-rate alert ("page", "ticket" or None
    # for "not generated"), keyed by the alert's name in slo_maths.BURN_WINDOWS.
    burn_alerts: dict[str, str | None]
    # Severity of each error-budget alert ("critical" pages, "warning" is a ticket, None for "not
    # generated"), keyed by the remaining share of the budget, in percent, below which it fires.
    budget_alerts: dict[int, str | None]
    # PagerDuty policy.
    pd_urgency: str  # "high" | "low" | "severity_based"
    pd_auto_resolve_seconds: int | None
    pd_ack_timeout_seconds: int | None
    pd_escalation_delays: tuple[int, ...]  # minutes before each escalation rule hands on
    # Deploy gate: block when the worst SLO's remaining budget (%) is below this.
    gate_block_below_percent: Decimal
    gate_warn_below_percent: Decimal
    gate_on_unknown: str  # "approve" | "block"
    # Alertmanager (group_wait, group_interval, repeat_interval) for the page and ticket routes.
    am_page_timing: tuple[str, str, str]
    am_ticket_timing: tuple[str, str, str]


TIERS: dict[int, Tier] = {
    1: Tier(
        number=1,
        name="critical",
        description="customer-facing, revenue-bearing; pages day and night",
        availability=Decimal("0.999"),
        latency_ms=500,
        latency_target=Decimal("0.95"),
        catalog_severities=("critical", "warning", "info"),
        burn_alerts={"fast": "page", "medium": "page", "slow": "ticket", "drift": "ticket"},
        budget_alerts={25: "warning", 10: "critical", 5: "critical"},
        # severity_based: pages arrive as critical events (high urgency), tickets as warnings (low).
        pd_urgency="severity_based",
        pd_auto_resolve_seconds=14400,
        pd_ack_timeout_seconds=1800,
        pd_escalation_delays=(10, 15, 30),
        gate_block_below_percent=Decimal("10"),
        gate_warn_below_percent=Decimal("25"),
        gate_on_unknown="block",
        am_page_timing=("30s", "5m", "1h"),
        am_ticket_timing=("5m", "30m", "12h"),
    ),
    2: Tier(
        number=2,
        name="standard",
        description="important internal services",
        availability=Decimal("0.995"),
        latency_ms=1000,
        latency_target=Decimal("0.95"),
        catalog_severities=("critical", "warning"),
        burn_alerts={"fast": "page", "medium": "page", "slow": "ticket", "drift": None},
        budget_alerts={25: "warning", 10: "critical", 5: "critical"},
        pd_urgency="severity_based",
        pd_auto_resolve_seconds=14400,
        pd_ack_timeout_seconds=3600,
        pd_escalation_delays=(15, 30),
        gate_block_below_percent=Decimal("5"),
        gate_warn_below_percent=Decimal("25"),
        gate_on_unknown="approve",
        am_page_timing=("30s", "5m", "2h"),
        am_ticket_timing=("10m", "1h", "24h"),
    ),
    3: Tier(
        number=3,
        name="low",
        description="best effort; never pages for a slow burn",
        availability=Decimal("0.990"),
        latency_ms=2000,
        latency_target=Decimal("0.95"),
        catalog_severities=("critical",),
        burn_alerts={"fast": "page", "medium": "ticket", "slow": "ticket", "drift": None},
        # Best effort: a spent budget is worth a ticket, never a page.
        budget_alerts={25: "warning", 10: "warning", 5: "warning"},
        pd_urgency="low",
        pd_auto_resolve_seconds=86400,
        pd_ack_timeout_seconds=None,
        pd_escalation_delays=(30,),
        gate_block_below_percent=Decimal("0"),
        gate_warn_below_percent=Decimal("10"),
        gate_on_unknown="approve",
        am_page_timing=("1m", "10m", "4h"),
        am_ticket_timing=("15m", "2h", "3d"),
    ),
}

TIER_ALIASES: dict[str, int] = {tier.name: tier.number for tier in TIERS.values()}


def resolve_tier(value: int | str) -> Tier:
    """Return the Tier for a validated spec value (1|2|3 or critical|standard|low)."""
    if isinstance(value, str):
        return TIERS[TIER_ALIASES[value]]
    return TIERS[value]
