"""The ``budget_history`` table (state migration 4): per SLO and instant, the share of its error budget left
over its own window and over 1d, 7d, 28d and 30d. Written by nthlayer.ops.budget_history (track-budget's
ticks and backfills), read by the reliability report; one row per (service, slo, evaluated_at).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable

from nthlayer.state.db import from_db

# The figures kept per SLO besides its own window (named "window"): what a dashboard's range picker offers.
HISTORY_RANGES: tuple[str, ...] = ("1d", "7d", "28d", "30d")
RANGE_NAMES: tuple[str, ...] = ("window",) + HISTORY_RANGES
Columns = dict[str, list[Any]]


@dataclass(frozen=True)
class HistoryPoint:
    """One SLO's remaining budget (percent; None: no traffic in that range) at one instant."""
    service: str
    slo: str
    at: datetime
    objective: Decimal
    window_days: int
    remaining: dict[str, Decimal | None]  # RANGE_NAMES → percent
    source: str



_COLUMNS = ("service", "slo", "evaluated_at", "objective", "window_days") + tuple(
    f"remaining_{name}" for name in RANGE_NAMES) + ("source",)
_INPUTS = ("service", "slo", "at_ms", "objective", "window_days") + _COLUMNS[5:]
WRITE_ROWS = 200_000  # rows per upsert of a backfill: a bounded memory, few statements


def empty_columns() -> Columns:
    return {name: [] for name in _INPUTS}


def write_columns(con: Any, columns: Columns) -> None:
    """Upsert rows given as columns (``at_ms``: unix milliseconds; remaining: percent floats or None):
    one row per (service, slo, instant), a rerun replaces its own rows."""
    if not columns["service"]:
        return
    # Column lists unnested in one statement: a VALUES row per point costs DuckDB about 1 ms each.
    casts = {"at_ms": "epoch_ms({})", "objective": "{}::DECIMAL(12, 9)",
             **{f"remaining_{r}": "{}::DECIMAL(18, 2)" for r in RANGE_NAMES}}
    select = ", ".join(casts.get(name, "{}").format(f"unnest(${i})") for i, name in enumerate(_INPUTS, start=1))
    updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[3:])
    con.execute(f"INSERT INTO budget_history ({', '.join(_COLUMNS)}) SELECT {select} "
                f"ON CONFLICT (service, slo, evaluated_at) DO UPDATE SET {updates}",
                [columns[name] for name in _INPUTS])


def record_history(con: Any, points: list[HistoryPoint]) -> None:
    """Upsert ``points`` (a track-budget sample): one row per (service, slo, instant)."""
    columns = empty_columns()
    for p in points:
        for name, value in (("service", p.service), ("slo", p.slo), ("at_ms", int(p.at.timestamp() * 1000)),
                            ("objective", str(p.objective)), ("window_days", p.window_days), ("source", p.source)):
            columns[name].append(value)
        for name in RANGE_NAMES:
            value = p.remaining[name]
            columns[f"remaining_{name}"].append(None if value is None else float(value))
    write_columns(con, columns)


def read_history(con: Any, services: Iterable[str] | None = None) -> list[HistoryPoint]:
    """The stored history (of ``services``, default all), ordered by service, SLO and time."""
    where, params = "", []
    if services is not None:
        names = sorted(set(services))
        if not names:
            return []
        where, params = " WHERE service IN (SELECT unnest(?))", [names]
    rows = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM budget_history{where} "
                       "ORDER BY service, slo, evaluated_at", params).fetchall()
    return [HistoryPoint(row[0], row[1], from_db(row[2]), Decimal(row[3]), int(row[4]),  # type: ignore[arg-type]
                         {name: (None if row[5 + i] is None else Decimal(row[5 + i]))
                          for i, name in enumerate(RANGE_NAMES)}, row[-1])
            for row in rows]


def history_fingerprint(path: str, lock_timeout: float | None = None) -> str:
    """A hash of the budget history, deploys and incidents (content, not file times): doit's ``uptodate``
    for the reliability report, with the series counts that its cost sections show (nthlayer.state.cost).
    A missing database fingerprints as empty and is not created."""
    from nthlayer.state.db import connect
    from nthlayer.state.cost import series_digest
    from nthlayer.state.events import state_fingerprint

    history, series = "history:0:0", "series:0:0"
    if os.path.exists(path):
        with connect(path, timeout=lock_timeout) as con:
            # bit_xor of per-row hashes: order-independent, changes when any row's content changes.
            count, digest = con.execute(
                "SELECT count(*), coalesce(bit_xor(hash(service, slo, evaluated_at, objective, window_days, "
                f"{', '.join(f'remaining_{r}' for r in RANGE_NAMES)})), 0) FROM budget_history").fetchall()[0]
            history = f"history:{count}:{digest}"
            series = series_digest(con)
    return hashlib.sha256(f"{history}|{state_fingerprint(path, lock_timeout)}|{series}".encode()).hexdigest()
