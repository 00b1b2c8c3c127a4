"""Budget history: each SLO's remaining error budget over its own window and over 1d, 7d, 28d and 30d,
one row per (service, SLO, instant) in the ``budget_history`` table (state migration 4).

Two ways in, one table:

- :func:`sample_history` — one instant (each ``track-budget`` run and ``--interval`` tick): one instant
  query per SLO group, every range at once.
- :func:`backfill_history` — a span of the past (``track-budget --backfill 30d --step 1h``): per SLO group
  and batch of steps, ONE ``query_range`` asking for the bad and total amounts of each step
  (``increase(counter[step])``, ``sum_over_time(recorded[step])``). The range figures are then window sums
  of those per-step amounts, computed here, so the query cost grows with the span, never with the
  window length (a 30-day ``increase`` at each of 720 steps would read every sample 720 times).

Grouping is track-budget's (nthlayer.ops.budget): services whose SLOs read the same metric with the same
matchers share one query that aggregates ``by`` the label telling them apart; the SLO kinds whose queries
are the spec's own (events, ratio_query, threshold) read the 5m series their recording rules keep, as
those rules do for windows of a day or more: counted kinds sum ``slo:sli_errors:rate5m`` and
``slo:sli_requests:rate5m``, the others average ``slo:sli_error:ratio_rate5m`` / ``slo:sli_bad_slice:bool``.

Remaining budget is a share, independent of the range's length: ``100 × (1 − error ratio ÷ (1 −
objective))``, in float64 like the amounts Prometheus computes, rounded to 0.01 % (a million figures per
backfill: Decimal arithmetic cost more than every query).
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator

from generators.model import Service
from generators.promql import le_matcher, selector
from generators.sli_queries import BAD_SLICE_SERIES
from generators.slo_maths import duration_seconds
from nthlayer.integrations import prometheus as prom
from nthlayer.ops.budget import regex_escape, split_selector
from nthlayer.state.history import HISTORY_RANGES, WRITE_ROWS, Columns, HistoryPoint, empty_columns

PART_LABEL = "nthlayer_part"
# Steps per query_range: well under Prometheus' 11,000 points per series; and at most BATCH_POINTS points
# in all (series × steps), so that one answer stays a few megabytes and within the per-request timeout
# however many services a group holds (a thousand: 50 steps a query).
BATCH_STEPS = 240
BATCH_POINTS = 100_000
IDENTITY = ("service", "slo")


@dataclass(frozen=True)
class HistoryGroup:
    """One query's worth of SLOs: templates of its 'bad' (or 'good') and 'total' amounts over ``$R``
    (a counter's increase) or ``$S`` (a sum of recorded samples: a left-open range in step queries, so
    that a sample on a step boundary is counted once)."""
    kind: str  # availability | latency | counted | mean
    by: tuple[str, ...]  # the labels that tell the group's SLOs apart
    parts: dict[str, str]  # part name → PromQL template
    members: dict[tuple[str, ...], tuple[str, str, Decimal, int]]  # label values → (service, slo, objective, days)


def _sum(by: tuple[str, ...], inner: str) -> str:
    return f"sum by ({', '.join(by)}) ({inner})" if by else f"sum ({inner})"


def plan_history(services: Iterable[Service]) -> list[HistoryGroup]:
    """Group every (service, SLO) as track-budget does, into as few queries as their metrics allow."""
    raw: dict[tuple[Any, ...], dict[tuple[str, ...], tuple[str, str, Decimal, int]]] = {}
    recorded: dict[str, dict[tuple[str, ...], tuple[str, str, Decimal, int]]] = {}
    for service in sorted(services, key=lambda s: s.name):
        for slo in service.slos:
            member = (service.name, slo.name, slo.objective, slo.window_days)
            if slo.kind not in ("availability", "latency"):
                family = "counted" if slo.counted else (
                    "slices" if slo.kind == "threshold" else "ratios")
                recorded.setdefault(family, {})[(service.name, slo.name)] = member
                continue
            sli = slo.sli_of(service)
            key, value, others = split_selector(sli.selector)
            parts = ((sli.requests_metric, sli.error_matchers) if slo.kind == "availability"
                     else (sli.latency_histogram, slo.threshold_seconds))
            signature: tuple[Any, ...] = (slo.kind, parts, key, others)
            members = raw.setdefault(signature, {}) if key is not None and value is not None else None
            if members is None or (value,) in members:
                # No equality matcher to group by, or two specs select the same series: a query of its own.
                raw.setdefault((slo.kind, parts, None, sli.selector, service.name, slo.name), {})[()] = member
                continue
            members[(value,)] = member  # type: ignore[index]
    groups = [_raw_group(signature, members) for signature, members in raw.items()]
    groups += [_recorded_group(family, members) for family, members in sorted(recorded.items())]
    return groups


def _raw_group(signature: tuple[Any, ...], members: dict[tuple[str, ...], tuple[str, str, Decimal, int]]
               ) -> HistoryGroup:
    kind, sli_parts, key, scope_matchers = signature[:4]
    by: tuple[str, ...] = (key,) if key else ()
    scope = tuple(scope_matchers)
    if key:
        values = sorted(v for (v,) in members)
        scope = ((key, "=", values[0]),) + scope if len(values) == 1 else \
            ((key, "=~", "|".join(regex_escape(v) for v in values)),) + scope

    def increase(metric: str, extra: tuple[Any, ...] = ()) -> str:
        return _sum(by, f"increase({selector(metric, scope + extra)}[$R])")

    if kind == "availability":
        metric, error_matchers = sli_parts
        parts = {"bad": increase(metric, tuple(error_matchers)), "total": increase(metric)}
    else:
        histogram, threshold = sli_parts
        parts = {"good": increase(f"{histogram}_bucket", (le_matcher(threshold),)),
                 "total": increase(f"{histogram}_count")}
    return HistoryGroup(kind, by, parts, dict(members))


def _recorded_group(family: str, members: dict[tuple[str, ...], tuple[str, str, Decimal, int]]) -> HistoryGroup:
    scope = (("service", "=~", "|".join(regex_escape(s) for s in sorted({s for s, _ in members}))),
             ("slo", "=~", "|".join(regex_escape(n) for n in sorted({n for _, n in members}))))

    def over_time(function: str, series: str) -> str:
        return _sum(IDENTITY, f"{function}({selector(series, scope)}[$S])")

    if family == "counted":
        parts = {"bad": over_time("sum_over_time", "slo:sli_errors:rate5m"),
                 "total": over_time("sum_over_time", "slo:sli_requests:rate5m")}
        return HistoryGroup("counted", IDENTITY, parts, dict(members))
    series = BAD_SLICE_SERIES if family == "slices" else "slo:sli_error:ratio_rate5m"
    parts = {"bad": over_time("sum_over_time", series), "total": over_time("count_over_time", series)}
    return HistoryGroup("mean", IDENTITY, parts, dict(members))


def _fill(template: str, increase_range: str, sum_range: str) -> str:
    return template.replace("$R", increase_range).replace("$S", sum_range)


def _tagged(expr: str, tag: str) -> str:
    return f'label_replace({expr}, "{PART_LABEL}", "{tag}", "", "")'


def _percent(group: HistoryGroup, amounts: dict[str, float], budget: float) -> float | None:
    """Budget left (percent, 0.01 precision) from a group's amounts over one range; None without traffic.
    A missing 'bad' amount is none (no error series at all); a missing 'good' one means every event was
    bad. float64, as Prometheus computes the amounts; Python's round() is correctly rounded."""
    total = amounts.get("total")
    if total is None or not math.isfinite(total) or total <= 0:
        return None
    bad = total - amounts.get("good", 0.0) if "good" in group.parts else amounts.get("bad", 0.0)
    if not math.isfinite(bad):
        return None
    return round(100.0 * (1.0 - bad / total / budget), 2) + 0.0  # + 0.0: no -0.0


def _decimals(remaining: dict[str, float | None]) -> dict[str, Decimal | None]:
    return {name: None if value is None else Decimal(f"{value:.2f}") for name, value in remaining.items()}


def _windows(days: int) -> dict[str, str]:
    """Range name → PromQL duration of an SLO with a ``days`` window."""
    return {"window": f"{days}d", **{r: r for r in HISTORY_RANGES}}


# --- one instant --------------------------------------------------------------------------------

def sample_history(client: prom.PrometheusClient, services: list[Service], at: datetime,
                   source: str = "track-budget") -> list[HistoryPoint]:
    """Every SLO's remaining budget over each range at ``at``: one instant query per group."""
    points: list[HistoryPoint] = []
    for group in plan_history(services):
        durations = sorted({d for member in group.members.values() for d in _windows(member[3]).values()},
                           key=duration_seconds)
        promql = " or ".join(_tagged(_fill(template, d, d), f"{part}@{d}")
                             for d in durations for part, template in group.parts.items())
        amounts: dict[tuple[str, ...], dict[str, float]] = {}
        for sample in client.query(promql, at=at):
            key = tuple(sample.labels.get(label, "") for label in group.by)
            if key in group.members and sample.value.is_finite():
                amounts.setdefault(key, {})[sample.labels.get(PART_LABEL, "")] = float(sample.value)
        for key, (service, slo, objective, days) in sorted(group.members.items(), key=lambda m: m[1][:2]):
            found = amounts.get(key, {})
            remaining: dict[str, float | None] = {}
            for name, duration in _windows(days).items():
                parts = {part: found[f"{part}@{duration}"] for part in group.parts if f"{part}@{duration}" in found}
                remaining[name] = _percent(group, parts, float(1 - objective))
            if any(v is not None for v in remaining.values()):
                points.append(HistoryPoint(service, slo, at, objective, days, _decimals(remaining), source))
    return sorted(points, key=lambda p: (p.service, p.slo))


# --- a span of the past -----------------------------------------------------------------------------

def step_grid(end: datetime, span_seconds: int, step_seconds: int) -> list[int]:
    """The history instants of a backfill: multiples of the step in (end − span, end], as unix seconds.
    On the step grid, a rerun with a later ``end`` lands on the same instants (idempotent rows)."""
    last = int(end.timestamp()) // step_seconds * step_seconds
    count = span_seconds // step_seconds
    return [last - (count - 1 - i) * step_seconds for i in range(count)]


def backfill_history(client: prom.PrometheusClient, services: list[Service], end: datetime, span_seconds: int,
                     step_seconds: int, write: Callable[[Columns], None],
                     batch_steps: int = BATCH_STEPS) -> int:
    """Fill the history of (end − span, end] every ``step_seconds``, handing rows to ``write`` in chunks
    of columns (see :func:`write_columns`); returns how many rows were written.

    The amounts of each step (bad and total over the step) are fetched for the span plus the longest
    range before it, one ``query_range`` per group and batch of at most ``batch_steps`` steps (fewer
    where the group is large, see BATCH_POINTS); every range's
    figure at every instant is then a window sum of them. ``--prometheus-deadline`` bounds each query.
    """
    instants = step_grid(end, span_seconds, step_seconds)
    written = 0
    for group in plan_history(services):
        longest = max(duration_seconds(d) for member in group.members.values()
                      for d in _windows(member[3]).values())
        first = instants[0] - longest + step_seconds  # the first step whose amount a window at instants[0] sums
        count = (instants[-1] - first) // step_seconds + 1
        steps = max(1, min(batch_steps, BATCH_POINTS // (len(group.members) * len(group.parts))))
        amounts = _step_amounts(client, group, first, count, step_seconds, steps)
        chunk = empty_columns()
        for columns in _columns_from_steps(group, amounts, first, instants, step_seconds):
            for name, values in columns.items():
                chunk[name].extend(values)
            if len(chunk["service"]) >= WRITE_ROWS:
                write(chunk)
                written += len(chunk["service"])
                chunk = empty_columns()
        if chunk["service"]:
            write(chunk)
            written += len(chunk["service"])
    return written


def _step_amounts(client: prom.PrometheusClient, group: HistoryGroup, first: int, count: int, step: int,
                  batch_steps: int) -> dict[tuple[tuple[str, ...], str], array]:
    """(member key, part) → the amount of each step (NaN where Prometheus had none)."""
    # A counter's increase over [step] shares its boundary samples with the next step (both ends are
    # in a Prometheus 2 range), which is what makes the steps add up; a sum over recorded samples must
    # not count a boundary sample twice, so it reads a range one millisecond shorter.
    promql = " or ".join(_tagged(_fill(template, f"{step}s", f"{step * 1000 - 1}ms"), part)
                         for part, template in group.parts.items())
    amounts: dict[tuple[tuple[str, ...], str], array] = {}
    for offset in range(0, count, batch_steps):
        start = first + offset * step
        end = first + (min(count, offset + batch_steps) - 1) * step
        client.restart_deadline()  # the deadline bounds each batch's query, not the whole backfill
        for series in client.query_range(promql, _utc(start), _utc(end), step, number=float):
            key = tuple(series.labels.get(label, "") for label in group.by)
            if key not in group.members:
                continue
            values = amounts.setdefault((key, series.labels.get(PART_LABEL, "")), array("d", [math.nan]) * count)
            for timestamp, value in series.values:
                index = (int(timestamp) - first) // step
                if 0 <= index < count and math.isfinite(value):
                    values[index] = value
    return amounts


def _prefix(values: array | None, count: int) -> tuple[list[float], list[int]]:
    """Running sums of the amounts and of how many steps had one (prefix[i]: steps before i)."""
    sums, seen = [0.0] * (count + 1), [0] * (count + 1)
    if values is not None:
        for i, value in enumerate(values):
            present = not math.isnan(value)
            sums[i + 1] = sums[i] + (value if present else 0.0)
            seen[i + 1] = seen[i] + present
    return sums, seen


def _columns_from_steps(group: HistoryGroup, amounts: dict[tuple[tuple[str, ...], str], array], first: int,
                        instants: list[int], step: int) -> Iterator[Columns]:
    """Each member's rows: for every instant, the budget left over each range, from window sums."""
    count = (instants[-1] - first) // step + 1
    ends = [(instant - first) // step + 1 for instant in instants]  # prefix index just after each instant
    times = [instant * 1000 for instant in instants]
    other = "good" if "good" in group.parts else "bad"
    for key, (service, slo, objective, days) in sorted(group.members.items(), key=lambda m: m[1][:2]):
        total_sum, total_seen = _prefix(amounts.get((key, "total")), count)
        if not total_seen[-1]:
            continue  # no traffic anywhere in the span: no history to keep
        other_sum, _ = _prefix(amounts.get((key, other)), count)
        budget = float(1 - objective)
        by_duration: dict[str, list[float | None]] = {}
        good = other == "good"
        for duration in _windows(days).values():
            if duration in by_duration:
                continue  # an SLO window of 30d is the 30d figure
            width = duration_seconds(duration) // step
            values: list[float | None] = []
            for end in ends:  # _percent's arithmetic, inlined: this loop runs a million times per backfill
                begin = end - width if end > width else 0
                total = total_sum[end] - total_sum[begin]
                if total_seen[end] == total_seen[begin] or not total > 0:
                    values.append(None)
                    continue
                amount = other_sum[end] - other_sum[begin]  # 0 where no step had the series
                bad = total - amount if good else amount
                values.append(round(100.0 * (1.0 - bad / total / budget), 2) + 0.0)
            by_duration[duration] = values
        columns = {f"remaining_{name}": by_duration[duration] for name, duration in _windows(days).items()}
        keep = [i for i in range(len(instants)) if any(columns[c][i] is not None for c in columns)]
        rows = len(keep)
        yield {"service": [service] * rows, "slo": [slo] * rows, "at_ms": [times[i] for i in keep],
               "objective": [str(objective)] * rows, "window_days": [days] * rows,
               **{name: [values[i] for i in keep] for name, values in columns.items()},
               "source": ["backfill"] * rows}


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)
