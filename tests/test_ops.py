"""The operations the commands and the API handlers share (nthlayer.ops), called directly: the gate by name or
by spec file, budget tracking (one sample, history or not, a backfill and its checks), and the setup flow
that setup-pagerduty and setup-datadog share. Prometheus is the real fixture server, the state a real
DuckDB file."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from prom_fixture import (END, PrometheusServer, fixture_specs, prometheus, prometheus_blocks,  # noqa: F401
                          requires_prometheus)
from generators.errors import UserError
from nthlayer.integrations.prometheus import PrometheusClient
from nthlayer.ops.gate import EXIT_BLOCK, check_deploy
from nthlayer.ops.setup import ApplyFailed, ServicePlan, Target, apply_plans
from nthlayer.ops.setup_datadog import DatadogSetup, setup_datadog
from nthlayer.ops.tracking import backfill, budget_scope, interval_seconds, track_budget
from nthlayer.state.db import connect, writer
from nthlayer.state.history import read_history

AT = datetime.fromtimestamp(END, timezone.utc)


def _client(server: PrometheusServer) -> PrometheusClient:
    return PrometheusClient(server.url, environ={})


# --- the gate ------------------------------------------------------------------------------------------

@requires_prometheus
def test_check_deploy_by_name_and_by_spec_file_agree(prometheus: PrometheusServer, fixture_specs: Path,  # noqa: F811
                                                     tmp_path: Path) -> None:
    opener = partial(connect, str(tmp_path / "s.duckdb"))
    by_name = check_deploy(str(fixture_specs), AT, _client(prometheus), None, opener, name="delta", version="v9")
    by_file = check_deploy(str(fixture_specs), AT, _client(prometheus), None, opener,
                           spec_path=str(fixture_specs / "delta.yaml"), version="v9", actor="ci")
    for outcome in (by_name, by_file):
        assert (outcome.exit_code, outcome.blocked, outcome.recorded) == (EXIT_BLOCK, True, True)
        assert outcome.service is not None and outcome.service.name == "delta"
        assert outcome.text().splitlines()[0] == "BLOCK: deploy of delta (tier 1)"
    assert by_name.as_dict() == by_file.as_dict()
    with connect(str(tmp_path / "s.duckdb")) as con:
        rows = con.execute("SELECT action, service, result, actor, json_extract_string(details, '$.version') "
                           "FROM audit ORDER BY id").fetchall()
    assert [r[:3] for r in rows] == [("check-deploy", "delta", "block")] * 2
    assert (rows[1][3], rows[1][4]) == ("ci", "v9")


def test_check_deploy_needs_exactly_one_service(tmp_path: Path) -> None:
    opener = partial(connect, str(tmp_path / "s.duckdb"))
    for given in ({}, {"name": "a", "spec_path": "a.yaml"}):
        with pytest.raises(UserError, match="^the gate judges one service: give its name or its spec file$"):
            check_deploy(str(tmp_path / "services"), AT, None, None, opener, **given)
    with pytest.raises(UserError, match=f"^no such spec file: {tmp_path}/missing.yaml$"):
        check_deploy(str(tmp_path / "services"), AT, None, None, opener, spec_path=str(tmp_path / "missing.yaml"))


# --- budgets ---------------------------------------------------------------------------------------------

@requires_prometheus
def test_track_budget_records_budgets_and_history_unless_told(prometheus: PrometheusServer,  # noqa: F811
                                                              fixture_specs: Path, tmp_path: Path) -> None:
    scope = budget_scope(str(fixture_specs), ["alpha"])
    assert [s.name for s in scope.services] == ["alpha"] and scope.composites == []
    with_history, without = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    reports = track_budget(_client(prometheus), scope, AT, writer(partial(connect, str(with_history))))
    assert [(r.slo, str(r.remaining_percent)) for r in reports] == [("availability", "50.00"), ("latency", "90.00")]
    again = track_budget(_client(prometheus), scope, AT, writer(partial(connect, str(without))), history=False)
    assert [r.as_dict() for r in again] == [r.as_dict() for r in reports]
    for path, points in ((with_history, 2), (without, 0)):
        with connect(str(path)) as con:
            assert con.execute("SELECT count(*) FROM error_budgets").fetchall() == [(2,)]
            assert len(read_history(con)) == points


@requires_prometheus
def test_backfill_summary_and_its_checks(prometheus: PrometheusServer, fixture_specs: Path,  # noqa: F811
                                         tmp_path: Path) -> None:
    scope = budget_scope(str(fixture_specs), ["alpha"])
    opener = partial(connect, str(tmp_path / "s.duckdb"))
    summary = backfill(_client(prometheus), scope.services, AT, "3h", "1h", opener)
    assert summary.as_dict() == {"from": "2024-05-01T10:00:00Z", "to": "2024-05-01T12:00:00Z", "step": "1h",
                                 "slos": 2, "points": 6}
    assert summary.text() == "budget history from 2024-05-01T10:00:00Z to 2024-05-01T12:00:00Z every 1h: " \
                             "6 points for 2 SLOs"
    for span, step, message in (
            ("3x", "1h", "--backfill '3x' is not a duration such as 30d, 6h or 5m"),
            ("1d", "7h", "--step 7h must divide a day (5m, 15m, 1h, 6h, 1d …): the history's 1d/7d/28d/30d "
                         "figures are sums of whole steps"),
            ("1h", "6h", "--backfill 1h is shorter than one --step (6h)")):
        with pytest.raises(UserError) as caught:
            backfill(_client(prometheus), scope.services, AT, span, step, opener)
        assert str(caught.value) == message
    assert interval_seconds("5m") == 300
    with pytest.raises(UserError, match="^--interval '0m' is not a duration such as 30s, 5m or 1h$"):
        interval_seconds("0m")


# --- the setup flow of setup-pagerduty and setup-datadog ---------------------------------------------------

class _Applier:
    """Carries out plans of steps that are plain words; a step "fail" stops it (the Applier protocol)."""

    def __init__(self) -> None:
        self.done: list[str] = []

    def apply(self, plan: ServicePlan[str]) -> None:
        for step in plan.steps:
            if step == "fail":
                raise ApplyFailed(f"the vendor refused {plan.service}")
            self.done.append(f"{step} {plan.service}")


def _audit(path: Path) -> list[tuple[Any, ...]]:
    with connect(str(path)) as con:
        return con.execute("SELECT action, service, result, details FROM audit ORDER BY id").fetchall()


@pytest.mark.parametrize("lists_done", [True, False])
def test_apply_plans_reports_counts_and_audits(tmp_path: Path, lists_done: bool) -> None:
    target = Target("setup-x", "X", "https://x.test", " (no key)", error_lists_done=lists_done)
    plans = [ServicePlan("a", "a.yaml", ["created thing", "updated other"]), ServicePlan("b", "b.yaml", [])]
    said: list[str] = []
    apply_plans(target, plans, _Applier(), lambda: 3, partial(connect, str(tmp_path / "s.duckdb")), said.append)
    assert said == ["  created thing a", "  updated other a", "Apply complete: 1 created, 1 updated, 3 write requests."]
    details = '{"api_url":"https://x.test","created":1,"updated":1,"writes":3}'
    assert _audit(tmp_path / "s.duckdb") == [("setup-x", "a", "applied", details), ("setup-x", "b", "applied", details)]


@pytest.mark.parametrize("lists_done", [True, False])
def test_a_failed_apply_is_audited_with_what_was_done(tmp_path: Path, lists_done: bool) -> None:
    target = Target("setup-x", "X", "https://x.test", " (no key)", error_lists_done=lists_done)
    plans = [ServicePlan("a", "a.yaml", ["created thing"]), ServicePlan("b", "b.yaml", ["fail"])]
    said: list[str] = []
    with pytest.raises(ApplyFailed, match="^the vendor refused b$"):
        apply_plans(target, plans, _Applier(), lambda: 1, partial(connect, str(tmp_path / "s.duckdb")), said.append)
    # An error that names what was done already is not preceded by the same lines on stdout.
    assert said == ([] if lists_done else ["  created thing a"])
    details = '{"api_url":"https://x.test","done":["created thing a"],"error":"the vendor refused b"}'
    assert _audit(tmp_path / "s.duckdb") == [("setup-x", "a", "failed", details), ("setup-x", "b", "failed", details)]


def test_setup_datadog_dry_run_without_keys_says_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DD_API_KEY", "DD_APP_KEY", "DD_API_KEY_FILE", "DD_APP_KEY_FILE", "DD_SITE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "checkout.yaml"
    spec.write_text("service: checkout\ntier: 2\nteam: shop\ntype: api\ndatadog:\n  slos:\n    availability:\n"
                    "      good: \"sum:shop.ok{*}.as_count()\"\n      total: \"sum:shop.all{*}.as_count()\"\n",
                    encoding="utf-8")
    plain = tmp_path / "plain.yaml"
    plain.write_text("service: plain\ntier: 3\nteam: shop\ntype: api\n", encoding="utf-8")
    said: list[str] = []
    assert setup_datadog(DatadogSetup([str(spec), str(plain)], dry_run=True), said.append) == 0
    assert said == [f"Skipped {plain}: no datadog settings in the spec",
                    "Datadog plan (no keys: nothing read) — https://api.datadoghq.com",
                    f"checkout ({spec}):",
                    '  + service definition "checkout" (not looked up: no keys)',
                    '  + SLO "checkout availability" (not looked up: no keys)',
                    *(f'  + monitor "checkout availability SLOBurnRate{speed}" (not looked up: no keys)'
                      for speed in ("Fast", "Medium", "Slow")),
                    "Plan: 5 to create, 0 to update, 0 unchanged.",
                    "Dry run: nothing was changed."]
    with pytest.raises(UserError, match="^no Datadog API key and application key: set DD_API_KEY"):
        setup_datadog(DatadogSetup([str(spec)]), said.append)
