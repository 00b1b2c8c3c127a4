"""What ``nthlayer cost`` reads and records in the state database (docs/cost.md).

Reads: the incidents that overlap a period, and budget-history points at given instants. Records: the
series counts measured from Prometheus (``series_counts``, migration 6 in nthlayer.state.schema), so that
the reliability report, which is built from state alone, can show the last measurement.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable

from nthlayer.state.db import from_db, to_db


@dataclass(frozen=True)
class IncidentSpan:
    """One incident of a service: when it started, and ended (None: still open)."""
    service: str
    severity: str
    started_at: datetime
    resolved_at: datetime | None


def incidents_between(con: Any, services: Iterable[str], start: datetime, end: datetime) -> list[IncidentSpan]:
    """The incidents of ``services`` that were open at some time in [start, end): started before ``end``
    and not resolved by ``start``; ordered by service and start."""
    names = sorted(set(services))
    rows = con.execute(
        "SELECT service, severity, started_at, resolved_at FROM incidents "
        "WHERE service IN (SELECT unnest(?)) AND started_at < ? AND (resolved_at IS NULL OR resolved_at > ?) "
        "ORDER BY service, started_at, incident_key", [names, to_db(end), to_db(start)]).fetchall()
    return [IncidentSpan(r[0], r[1], from_db(r[2]), from_db(r[3])) for r in rows]  # type: ignore[arg-type]


def latest_history_instants(con: Any, services: Iterable[str], end: datetime) -> dict[tuple[str, str], datetime]:
    """Per (service, SLO): its newest budget-history instant at or before ``end``."""
    rows = con.execute(
        "SELECT service, slo, max(evaluated_at) FROM budget_history "
        "WHERE service IN (SELECT unnest(?)) AND evaluated_at <= ? GROUP BY service, slo",
        [sorted(set(services)), to_db(end)]).fetchall()
    return {(r[0], r[1]): from_db(r[2]) for r in rows}  # type: ignore[misc]


def history_at(con: Any, wanted: list[tuple[str, str, datetime, str]]) -> dict[tuple[str, str, datetime, str],
                                                                                   Decimal | None]:
    """The remaining-budget percent of (service, SLO, instant, range) for each wanted key that is recorded
    (value None: recorded without traffic); ranges are nthlayer.state.history.RANGE_NAMES."""
    from nthlayer.state.history import RANGE_NAMES

    if not wanted:
        return {}
    keys = sorted({(s, slo, to_db(at)) for s, slo, at, _ in wanted})
    rows = con.execute(
        f"SELECT b.service, b.slo, b.evaluated_at, {', '.join(f'b.remaining_{r}' for r in RANGE_NAMES)} "
        "FROM budget_history b JOIN (SELECT unnest(?) AS service, unnest(?) AS slo, unnest(?) AS at) w "
        "ON b.service = w.service AND b.slo = w.slo AND b.evaluated_at = w.at",
        [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]]).fetchall()
    found = {}
    for row in rows:
        at = from_db(row[2])
        for i, name in enumerate(RANGE_NAMES):
            found[(row[0], row[1], at, name)] = None if row[3 + i] is None else Decimal(row[3 + i])
    return {key: found[key] for key in wanted if key in found}  # type: ignore[misc]


def record_series_counts(con: Any, measured_at: datetime, counts: dict[tuple[str, str], int]) -> None:
    """Store one measurement: (service, metric) → number of series; a rerun at the same instant replaces it."""
    if not counts:
        return
    keys = sorted(counts)
    con.execute(
        "INSERT INTO series_counts (measured_at, service, metric, series) "
        "SELECT ?, unnest(?), unnest(?), unnest(?) "
        "ON CONFLICT (measured_at, service, metric) DO UPDATE SET series = excluded.series",
        [to_db(measured_at), [k[0] for k in keys], [k[1] for k in keys], [counts[k] for k in keys]])


def latest_series_counts(con: Any, services: Iterable[str]) -> dict[str, tuple[datetime, dict[str, int]]]:
    """Per service: its newest measurement's instant and series per metric."""
    rows = con.execute(
        "SELECT c.service, c.measured_at, c.metric, c.series FROM series_counts c JOIN ("
        "SELECT service, max(measured_at) AS at FROM series_counts WHERE service IN (SELECT unnest(?)) "
        "GROUP BY service) m ON c.service = m.service AND c.measured_at = m.at ORDER BY c.service, c.metric",
        [sorted(set(services))]).fetchall()
    result: dict[str, tuple[datetime, dict[str, int]]] = {}
    for service, at, metric, series in rows:
        result.setdefault(service, (from_db(at), {}))[1][metric] = int(series)  # type: ignore[arg-type]
    return result


def series_digest(con: Any) -> str:
    """The recorded series counts' content as ``series:<rows>:<hash>`` (order-independent), for the
    report's ``uptodate`` (nthlayer.state.history.history_fingerprint)."""
    count, digest = con.execute("SELECT count(*), coalesce(bit_xor(hash(measured_at, service, metric, series)), 0) "
                                "FROM series_counts").fetchall()[0]
    return f"series:{count}:{digest}"
