"""The plan → apply → report flow that setup-pagerduty and setup-datadog share.

Each vendor plans its own objects (nthlayer.ops.pagerduty, nthlayer.ops.datadog) and formats its own plan;
what is common is here: the specs a setup run accepts, the plan's header, applying the plans in order,
the lines that say what was done, the closing count, and one audit record per service, also when the
apply stops half-way (a rerun finishes the job: every applier finds what an earlier run made).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Protocol, Sequence, TypeVar

from generators.errors import SpecErrors, UserError
from generators.spec import LoadedSpec, validate_specs
from nthlayer.state.db import Opener, insert_audit

Say = Callable[[str], None]
StepT = TypeVar("StepT")


@dataclass
class ServicePlan(Generic[StepT]):
    """What a setup run does to one service's objects in a vendor's system, step by step."""
    service: str
    source: str  # the service's spec file
    steps: list[StepT]


class ApplyFailed(UserError):
    """Applying a plan stopped: the vendor refused or failed (the message says what was being done)."""


class Applier(Protocol):
    """Carries out plans; ``done`` lists what it did, one line each (``created …`` / ``updated …``)."""
    done: list[str]

    def apply(self, plan: Any) -> None: ...


@dataclass(frozen=True)
class Target:
    """The system a setup run writes to."""
    action: str  # the command, also the audit trail's action: setup-pagerduty
    noun: str  # PagerDuty
    url: str  # the API's base URL, or "not contacted"
    unread: str  # the header's note when nothing could be read (no credentials): " (no API key: …)"
    error_lists_done: bool  # the apply error already names what was done before it (else it is printed)


def valid_specs(paths: Sequence[str], retries: int, backoff: float, timeout: float) -> list[LoadedSpec]:
    """The valid specs of ``paths`` (SpecErrors / UserError otherwise), once the retry settings are sane."""
    result = validate_specs(list(paths), None)
    if result.errors:
        raise SpecErrors(result.errors)
    if not result.specs:
        raise UserError(f"no service specs in {', '.join(paths)}")
    if retries < 0 or backoff < 0 or timeout <= 0:
        raise UserError("--retries and --backoff must be >= 0 and --timeout > 0")
    return result.specs


def show_plan(target: Target, plan_lines: list[str], contacted: bool, say: Say) -> None:
    """The plan under its header: what it is for, and where it goes."""
    say(f"{target.noun} plan{'' if contacted else target.unread} — {target.url}")
    for line in plan_lines:
        say(line)


def _audit(opener: Opener, target: Target, plans: Sequence[ServicePlan[Any]], result: str, details: dict[str, Any]) -> None:
    """One audit record per service (no secrets: keys never enter ``details``)."""
    with opener() as con:
        for plan in plans:
            insert_audit(con, target.action, plan.service, result, details)


def apply_plans(target: Target, plans: Sequence[ServicePlan[Any]], applier: Applier, writes: Callable[[], int],
                opener: Opener, say: Say) -> None:
    """Apply ``plans`` in order, say what was done and how much, and audit it; a failure is audited with
    what was done before it, then raised."""
    try:
        for plan in plans:
            applier.apply(plan)
    except BaseException as exc:
        if not target.error_lists_done:
            for line in applier.done:
                say(f"  {line}")
        # A user-facing error (an API's answer) is worth keeping; anything else is named, not quoted.
        error = str(exc) if isinstance(exc, UserError) else type(exc).__name__
        _audit(opener, target, plans, "failed", {"error": error, "done": list(applier.done), "api_url": target.url})
        raise
    for line in applier.done:
        say(f"  {line}")
    created = sum(1 for d in applier.done if d.startswith("created"))
    updated = sum(1 for d in applier.done if d.startswith("updated"))
    say(f"Apply complete: {created} created, {updated} updated, {writes()} write requests.")
    _audit(opener, target, plans, "applied", {"created": created, "updated": updated, "writes": writes(),
                                              "api_url": target.url})
