"""Error-budget and burn-rate arithmetic, in Decimal.

The multi-window multi-burn-rate policy follows the Google SRE workbook
(chapter 5, "Alerting on SLOs"): each alert spends a share of the whole
budget over a long window and is confirmed by a short window of 1/12 the
length. The burn-rate factor is *derived*:

    factor = budget share × SLO window / long window

which gives the workbook's 14.4, 6, 3 and 1 for 30 days, and the right
numbers for 7-day or 28-day windows.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache


@dataclass(frozen=True)
class BurnWindow:
    name: str  # "fast" | "medium" | "slow" | "drift"
    long: str  # Prometheus duration
    short: str
    budget_share: Decimal
    for_: str  # how long the condition must hold before firing


BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow("fast", "1h", "5m", Decimal("0.02"), "1m"),
    BurnWindow("medium", "6h", "30m", Decimal("0.05"), "15m"),
    BurnWindow("slow", "1d", "2h", Decimal("0.10"), "1h"),
    BurnWindow("drift", "3d", "6h", Decimal("0.10"), "3h"),
)

# The windows recording rules are kept for (plus the SLO's whole window).
RATIO_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@lru_cache(maxsize=4096)  # pure, and asked for hundreds of times per service
def duration_seconds(duration: str) -> int:
    """Seconds in a simple Prometheus duration such as 5m, 6h or 30d."""
    return int(duration[:-1]) * _UNIT_SECONDS[duration[-1]]


@lru_cache(maxsize=4096)  # pure, and asked for hundreds of times per service
def burn_factor(window: BurnWindow, slo_window_days: int) -> Decimal:
    """Burn rate at which ``budget_share`` of the budget is spent within the long window."""
    factor = window.budget_share * slo_window_days * 86400 / duration_seconds(window.long)
    return clean(factor.quantize(Decimal("0.0001")))


@lru_cache(maxsize=4096)  # pure, and asked for hundreds of times per service
def burn_windows(slo_window_days: int) -> tuple[BurnWindow, ...]:
    """The burn windows that make sense for an SLO window.

    A factor below 1 would fire while the service is on track to meet its
    objective (e.g. the 3-day window of a 7-day SLO), so such alerts are not
    generated.
    """
    return tuple(w for w in BURN_WINDOWS if burn_factor(w, slo_window_days) >= 1
                 and duration_seconds(w.long) < slo_window_days * 86400)


def clean(value: Decimal) -> Decimal:
    """Drop trailing zeros so 14.40 prints as 14.4 and 1.0 as 1, keeping it exact."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


@lru_cache(maxsize=4096)  # pure, and asked for hundreds of times per service
def error_budget(objective: Decimal) -> Decimal:
    return clean(Decimal(1) - objective)


@lru_cache(maxsize=4096)  # pure, and asked for hundreds of times per service
def burn_threshold(window: BurnWindow, objective: Decimal, slo_window_days: int) -> Decimal:
    """The error ratio at which the alert fires: factor × (1 − objective)."""
    return clean(burn_factor(window, slo_window_days) * error_budget(objective))


@lru_cache(maxsize=4096)  # pure, and asked for hundreds of times per service
def budget_minutes(objective: Decimal, window_days: int) -> Decimal:
    return clean(error_budget(objective) * window_days * 24 * 60)


# A budget's status by the share of it left (track-budget, the gate's report and the Grafana overview):
# EXHAUSTED at or below 0, CRITICAL below 10 %, WARNING below 25 %, else HEALTHY.
STATUS_CRITICAL_BELOW_PERCENT = Decimal(10)
STATUS_WARNING_BELOW_PERCENT = Decimal(25)
