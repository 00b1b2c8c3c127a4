"""Budget history (track-budget ticks and --backfill) against the real Prometheus of tests/prom_fixture.py,
whose figures are known exactly: every value below is worked out from the fixture's table."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from prom_fixture import (END, START, PrometheusServer, fixture_specs, prometheus, prometheus_blocks,  # noqa: F401
                          requires_prometheus)
from nthlayer.buildsys.project import load_services
from nthlayer.ops.budget_history import plan_history, sample_history, step_grid
from nthlayer.state.history import RANGE_NAMES, HistoryPoint, read_history, record_history
from nthlayer.integrations.prometheus import PrometheusClient
from nthlayer.state.db import connect

AT = datetime.fromtimestamp(END, timezone.utc)
HOUR = 3600


def _all(value: str) -> dict[str, Decimal]:
    return {name: Decimal(value) for name in RANGE_NAMES}


# beta (objective 0.995) at END: 1200 bad of 1000 per 5 minutes, all in the last hour.
# 1d: 1200/288000 → 1 − 0.8333… = 16.67 %; 7d: /2016000 → 88.10 %; 28d: /8064000 → 97.02 %;
# 30d (= its window): /8640000 → 97.22 %.
BETA_AT_END = {"window": Decimal("97.22"), "1d": Decimal("16.67"), "7d": Decimal("88.10"),
               "28d": Decimal("97.02"), "30d": Decimal("97.22")}
EXPECTED_AT_END = {
    ("alpha", "availability"): _all("50.00"),  # 1 of 2000 bad, budget 0.1 %
    ("alpha", "latency"): _all("90.00"),  # 10 of 2000 slow, budget 5 %
    ("beta", "availability"): BETA_AT_END,
    ("beta", "latency"): _all("100.00"),
    ("delta", "availability"): _all("-100.00"),  # 0.2 % bad of a 0.1 % budget
    ("epsilon", "availability"): _all("20.00"),  # 0.4 % of 0.5 %
    ("gamma", "availability"): _all("100.00"),  # no 5xx series at all
}


def _by_key(points: list[HistoryPoint]) -> dict[tuple[str, str], dict[str, Decimal | None]]:
    return {(p.service, p.slo): p.remaining for p in points}


def test_history_groups_follow_track_budgets_grouping(fixture_specs: Path) -> None:  # noqa: F811
    groups = plan_history(load_services(str(fixture_specs)))
    # availability: one query for all six services; latency: one per threshold.
    assert sorted((g.kind, sorted(m[0] for m in g.members.values())) for g in groups) == [
        ("availability", ["alpha", "beta", "delta", "epsilon", "gamma", "silent"]),
        ("latency", ["alpha", "delta", "silent"]),
        ("latency", ["beta", "epsilon"]),
        ("latency", ["gamma"]),
    ]


def test_step_grid_is_aligned_to_the_step() -> None:
    end = datetime.fromtimestamp(END + 1234, timezone.utc)
    assert step_grid(end, 3 * HOUR, HOUR) == [END - 2 * HOUR, END - HOUR, END]


@requires_prometheus
def test_one_instant_has_every_range(prometheus: PrometheusServer, fixture_specs: Path) -> None:  # noqa: F811
    client = PrometheusClient(prometheus.url, environ={})
    points = sample_history(client, load_services(str(fixture_specs)), AT)
    assert client.requests_sent == 4  # one instant query per group
    found = _by_key(points)
    for key, expected in EXPECTED_AT_END.items():
        assert found[key] == expected, key
    assert not [p for p in points if p.service == "silent"]  # no series: no history


@requires_prometheus
def test_backfill_matches_the_data_and_the_instant_figures(
        prometheus: PrometheusServer, fixture_specs: Path, run_cli, tmp_path: Path) -> None:  # noqa: F811
    state = tmp_path / "state.duckdb"
    code, out, err = run_cli("track-budget", "--all", "--services", str(fixture_specs), "--prometheus",
                             prometheus.url, "--at", str(END), "--backfill", "2d", "--step", "1h",
                             "--state", str(state))
    assert (code, err) == (0, "")
    assert out == ("budget history from 2024-04-29T13:00:00Z to 2024-05-01T12:00:00Z every 1h: "
                   "480 points for 12 SLOs\n")  # 48 instants × 10 SLOs with data (silent has none)
    with connect(str(state)) as con:
        history = read_history(con)
    assert {p.source for p in history} == {"backfill"}
    at_end = _by_key([p for p in history if p.at == AT])
    for key, expected in EXPECTED_AT_END.items():
        assert at_end[key] == expected, key
    # An hour earlier beta had not failed yet; at every instant alpha is at its steady 50 %.
    before = _by_key([p for p in history if p.at == datetime.fromtimestamp(END - HOUR, timezone.utc)])
    assert before[("beta", "availability")] == _all("100.00")
    assert {p.remaining["1d"] for p in history if (p.service, p.slo) == ("alpha", "availability")} == \
        {Decimal("50.00")}
    # A tick at END (track-budget --at END) agrees with the backfill's point and replaces it: same key.
    code, out, err = run_cli("track-budget", "--all", "--services", str(fixture_specs), "--prometheus",
                             prometheus.url, "--at", str(END), "--state", str(state))
    assert code == 0, err
    with connect(str(state)) as con:
        after_tick = read_history(con)
    assert len(after_tick) == len(history)
    assert _by_key([p for p in after_tick if p.at == AT]) == _by_key([p for p in history if p.at == AT])
    assert {p.source for p in after_tick if p.at == AT} == {"track-budget"}


@requires_prometheus
def test_backfill_rerun_is_idempotent(prometheus: PrometheusServer, fixture_specs: Path,  # noqa: F811
                                      run_cli, tmp_path: Path) -> None:
    state = str(tmp_path / "state.duckdb")
    args = ("track-budget", "--all", "--services", str(fixture_specs), "--prometheus", prometheus.url,
            "--at", str(END), "--step", "6h", "--state", state)
    assert run_cli(*args, "--backfill", "3d")[0] == 0
    with connect(state) as con:
        first = read_history(con)
    # The same span again, then an overlapping shorter one ending at a time off the step grid.
    assert run_cli(*args, "--backfill", "3d")[0] == 0
    assert run_cli(*args[:-4], "--at", str(END + 1800), "--step", "6h", "--state", state, "--backfill", "1d")[0] == 0
    with connect(state) as con:
        again = read_history(con)
    assert again == first
    assert len(first) == 12 * 10  # 3 days every 6 h × 10 SLOs with data


@requires_prometheus
def test_backfill_before_the_data_keeps_only_the_part_with_data(
        prometheus: PrometheusServer, fixture_specs: Path, run_cli, tmp_path: Path) -> None:  # noqa: F811
    state = str(tmp_path / "state.duckdb")
    # 35 days back from END: the fixture's series start at START = END − 30d.
    code, out, err = run_cli("track-budget", "--service", "alpha", "--services", str(fixture_specs),
                             "--prometheus", prometheus.url, "--at", str(END), "--backfill", "35d",
                             "--step", "1h", "--state", state)
    assert code == 0, err
    with connect(state) as con:
        history = read_history(con)
    availability = [p for p in history if p.slo == "availability"]
    # The first instant with data is an hour after START (the step ending at START holds one sample).
    assert [p.at for p in availability] == [datetime.fromtimestamp(START + h * HOUR, timezone.utc)
                                            for h in range(1, 30 * 24 + 1)]
    assert all(p.remaining == _all("50.00") for p in availability)


def test_history_rows_round_trip(tmp_path: Path) -> None:
    point = HistoryPoint("svc", "availability", AT, Decimal("0.999"), 28,
                         {"window": Decimal("-1234567.5"), "1d": None, "7d": Decimal("12.34"),
                          "28d": Decimal("100.00"), "30d": Decimal("0.00")}, "backfill")
    with connect(str(tmp_path / "s.duckdb")) as con:
        record_history(con, [point])
        record_history(con, [point])
        assert read_history(con) == [point]
        assert read_history(con, ["other"]) == []


@pytest.mark.parametrize("args, message", [
    (("--backfill", "30d", "--step", "7h"), "--step 7h must divide a day"),
    (("--backfill", "30", "--step", "1h"), "--backfill '30' is not a duration such as 30d, 6h or 5m"),
    (("--backfill", "30m", "--step", "1h"), "--backfill 30m is shorter than one --step (1h)"),
])
def test_backfill_arguments(fixture_specs: Path, run_cli, args: tuple[str, ...], message: str) -> None:  # noqa: F811
    code, out, err = run_cli("track-budget", "--all", "--services", str(fixture_specs), "--prometheus",
                             "http://127.0.0.1:9", *args)
    assert code == 1 and message in err and out == ""


@requires_prometheus
def test_backfill_queries_per_group_and_batch_not_per_point(prometheus: PrometheusServer,  # noqa: F811
                                                            fixture_specs: Path) -> None:  # noqa: F811
    from nthlayer.ops.budget_history import backfill_history

    client = PrometheusClient(prometheus.url, environ={})
    chunks: list[int] = []
    count = backfill_history(client, load_services(str(fixture_specs)), AT, 2 * 86400, HOUR,
                             lambda columns: chunks.append(len(columns["service"])), batch_steps=500)
    # 48 instants plus 30 days before them (the longest window) = 768 steps: 2 batches of ≤ 500, 4 groups.
    assert client.requests_sent == 4 * 2
    assert count == sum(chunks) == 480
