"""``nthlayer cost`` (docs/cost.md): incidents, pages and budget minutes from a real DuckDB state file whose
budget history a real Prometheus filled (tests/prom_fixture.py: every figure below is worked out from its
table), the money figure with and without ``[cost]``, and bad configuration."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from prom_fixture import (END, PrometheusServer, fixture_specs, prometheus, prometheus_blocks,  # noqa: F401
                          requires_prometheus)
from nthlayer.ops.cost import budget_pieces, period_days
from generators.errors import UserError

AT = datetime.fromtimestamp(END, timezone.utc)  # 2024-05-01T12:00:00Z
PRICES = '[cost]\ncurrency = "EUR"\n\n[cost.incident_minute]\ncritical = 50\nstandard = 12.5\nlow = 2\n'


def _incidents(run_cli, state: str) -> None:
    """alpha: a critical incident of 90 minutes in the period, and a high one that started a day before the
    period and lasted into it 30 minutes (not a page of this period); beta: a medium one still open at END
    (60 minutes so far); epsilon: an info one resolved before the period (not counted)."""
    for args in (("alpha", "2024-04-30T10:00:00Z", "2024-04-30T11:30:00Z", "critical"),
                 ("alpha", "2024-03-31T11:00:00Z", "2024-04-01T12:30:00Z", "high"),
                 ("beta", "2024-05-01T11:00:00Z", None, "medium"),
                 ("epsilon", "2024-03-01T00:00:00Z", "2024-03-01T01:00:00Z", "info")):
        service, started, resolved, severity = args
        code, _, err = run_cli("record-incident", "--service", service, "--started-at", started, "--severity",
                               severity, *(("--resolved-at", resolved) if resolved else ()), "--state", state)
        assert code == 0, err


@pytest.fixture
def cost_state(run_cli, prometheus: PrometheusServer, fixture_specs: Path,  # noqa: F811
               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A state file with 30 days of budget history (one point an hour, from the real Prometheus) and incidents;
    the working directory is a project without nthlayer.toml."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NTHLAYER_CONFIG", raising=False)
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    state = str(tmp_path / "state" / "nthlayer.duckdb")
    code, _, err = run_cli("track-budget", "--all", "--services", str(fixture_specs), "--prometheus",
                           prometheus.url, "--at", str(END), "--backfill", "30d", "--step", "1h", "--state", state)
    assert code == 0, err
    _incidents(run_cli, state)
    return state


# Budget minutes spent over 30 days (error ratio × 43,200 min, from the history's remaining share):
# alpha 0.05 % × 43200 = 21.6 (availability) + 0.5 % × 43200 = 216 (latency) → 237.60;
# beta 97.22 % left of 0.5 % → 0.0278 × 0.005 × 43200 = 6.00; gamma and silent 0 (no errors; no data);
# delta 0.2 % → 86.40; epsilon 0.4 % → 172.80.
# Budget minutes over 30 days: tier 1: 0.1 % + 5 % of 43200 = 2203.20; tier 2: 0.5 % + 5 % = 2376.00;
# tier 3: 1 % + 5 % = 2592.00.
TABLE_30D = """\
cost from 2024-04-01T12:00:00Z to 2024-05-01T12:00:00Z (30 days)

SERVICE  TEAM       TIER  INCIDENTS  INCIDENT(min)  PAGES  BUDGET SPENT(min)  BUDGET(min)  COST  SERIES
alpha    t-alpha    1             2         120.00      1             237.60      2203.20     -       -
beta     t-beta     2             1          60.00      0               6.00      2376.00     -       -
delta    t-delta    1             0           0.00      0              86.40      2203.20     -       -
epsilon  t-epsilon  2             0           0.00      0             172.80      2376.00     -       -
gamma    t-gamma    3             0           0.00      0               0.00      2592.00     -       -
silent   t-silent   1             0           0.00      0         no history      2203.20     -       -
"""


@requires_prometheus
def test_cost_table_from_state(run_cli, cost_state: str, fixture_specs: Path) -> None:  # noqa: F811
    code, out, err = run_cli("cost", "--all", "--services", str(fixture_specs), "--at", str(END),
                             "--state", cost_state)
    assert (code, err) == (0, "")
    assert out.startswith(TABLE_30D)
    assert out.endswith(
        "no money figure: nthlayer.toml has no [cost] table (docs/cost.md)\n"
        "series: not measured (pass --prometheus URL to count the series NthLayer's recording rules create)\n")


@requires_prometheus
def test_cost_per_team_with_money(run_cli, cost_state: str, fixture_specs: Path, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "nthlayer.toml").write_text(PRICES, encoding="utf-8")
    code, out, err = run_cli("cost", "--team", "t-alpha", "--services", str(fixture_specs), "--at", str(END),
                             "--state", cost_state)
    assert (code, err) == (0, "")
    # 120 incident minutes of a tier-1 (critical) service at 50 EUR a minute.
    assert out == """\
cost from 2024-04-01T12:00:00Z to 2024-05-01T12:00:00Z (30 days)

SERVICE  TEAM     TIER  INCIDENTS  INCIDENT(min)  PAGES  BUDGET SPENT(min)  BUDGET(min)         COST  SERIES
alpha    t-alpha  1             2         120.00      1             237.60      2203.20  6000.00 EUR       -

TEAM     SERVICES  INCIDENTS  INCIDENT(min)  PAGES  BUDGET SPENT(min)  BUDGET(min)         COST  SERIES
t-alpha         1          2         120.00      1             237.60      2203.20  6000.00 EUR       -

cost: incident minutes × the tier's price per minute (critical 50, standard 12.5, low 2 EUR)
series: not measured (pass --prometheus URL to count the series NthLayer's recording rules create)
"""


@requires_prometheus
def test_cost_json_shape(run_cli, cost_state: str, fixture_specs: Path, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "nthlayer.toml").write_text(PRICES, encoding="utf-8")
    code, out, err = run_cli("cost", "--service", "beta", "--service", "alpha", "--since", "1w", "--json",
                             "--services", str(fixture_specs), "--at", str(END), "--state", cost_state)
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert list(document) == ["cost"]
    cost = document["cost"]
    assert list(cost) == ["period", "currency", "incident_minute", "series_measured_at", "prometheus",
                          "services", "teams"]
    assert cost["period"] == {"from": "2024-04-24T12:00:00Z", "to": "2024-05-01T12:00:00Z", "days": 7}
    assert cost["currency"] == "EUR"
    assert cost["incident_minute"] == {"critical": 50, "standard": 12.5, "low": 2}
    # Over 7 days: alpha's 90-minute critical incident only; beta's open one (60 minutes at 12.5).
    # Budget spent over 7d: alpha (0.05 % + 0.5 %) × 10080 = 5.04 + 50.40; beta 88.10 % left of 0.5 %:
    # 0.119 × 0.005 × 10080 = 5.9976. Budget over 7d: tier 1 (0.1 % + 5 %) × 10080 = 514.08; tier 2 554.40.
    assert cost["services"] == [
        {"service": "alpha", "team": "t-alpha", "tier": 1, "incidents": 1, "incident_minutes": 90, "pages": 1,
         "budget_minutes": 514.08, "budget_spent_minutes": 55.44, "money": 4500, "series": None,
         "series_by_metric": None},
        {"service": "beta", "team": "t-beta", "tier": 2, "incidents": 1, "incident_minutes": 60, "pages": 0,
         "budget_minutes": 554.4, "budget_spent_minutes": 6, "money": 750, "series": None,
         "series_by_metric": None},
    ]
    assert [t["team"] for t in cost["teams"]] == ["t-alpha", "t-beta"]
    assert cost["teams"][0] == {"team": "t-alpha", "services": 1, "incidents": 1, "incident_minutes": 90,
                                "pages": 1, "budget_minutes": 514.08, "budget_spent_minutes": 55.44, "money": 4500,
                                "series": None}


@requires_prometheus
def test_cost_over_a_period_cut_into_history_ranges(run_cli, cost_state: str, fixture_specs: Path) -> None:  # noqa: F811
    # 10 days: the 7d figure at END, then the 1d figures at END − 7d, − 8d, − 9d (beta's errors are all in
    # the last hour, so its 10 days spent what its 7 days did).
    code, out, err = run_cli("cost", "--service", "beta", "--since", "10d", "--json", "--services",
                             str(fixture_specs), "--at", str(END), "--state", cost_state)
    assert (code, err) == (0, "")
    assert json.loads(out)["cost"]["services"][0]["budget_spent_minutes"] == 6
    # More days than the history holds: unknown, not zero.
    code, out, err = run_cli("cost", "--service", "beta", "--since", "60d", "--services", str(fixture_specs),
                             "--at", str(END), "--state", cost_state)
    assert code == 0 and "beta     t-beta  2             1          60.00      0         no history" in out


def test_budget_pieces_and_period() -> None:
    assert budget_pieces(30, 30) == [(0, "30d")]
    assert budget_pieces(28, 30) == [(0, "28d")]
    assert budget_pieces(10, 30) == [(0, "7d"), (7, "1d"), (8, "1d"), (9, "1d")]
    assert budget_pieces(14, 14) == [(0, "window")]
    assert budget_pieces(65, 30) == [(0, "30d"), (30, "30d"), (60, "1d"), (61, "1d"), (62, "1d"), (63, "1d"),
                                     (64, "1d")]
    assert period_days("4w") == 28
    with pytest.raises(UserError, match=r"^--since '36h' is not a number of days or weeks such as 30d or 4w$"):
        period_days("36h")


def test_cost_without_state_creates_none(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "web.yaml").write_text("service: web\ntier: 3\nteam: shop\ntype: api\n")
    state = tmp_path / "none" / "nthlayer.duckdb"
    code, out, err = run_cli("cost", "--at", "2024-05-01T00:00:00Z", "--state", str(state))
    assert (code, err) == (0, "")
    assert "web      shop  3             0           0.00      0         no history      2592.00     -       -" in out
    assert not state.exists()


@pytest.mark.parametrize("toml, message", [
    ('[cost]\ncurrency = "euro"\n', 'nthlayer.toml:2:1: /cost/currency: currency must be a three-letter ISO 4217 '
                                    'code such as "EUR"'),
    ('[cost]\nincident_minute = { critical = 1, standard = 1, low = 1 }\n',
     'nthlayer.toml:1:1: /cost/currency: missing: name the currency, e.g. currency = "EUR"'),
    ('[cost]\ncurrency = "EUR"\n', "nthlayer.toml:1:1: /cost/incident_minute: must be a table of the cost of one "
                                   "incident minute per tier, e.g. [cost.incident_minute] with critical = …, "
                                   "standard = …, low = …"),
    ('[cost]\ncurrency = "EUR"\n[cost.incident_minute]\ncritical = 10\nstandard = -1\nlow = 1\n',
     "nthlayer.toml:5:1: /cost/incident_minute/standard: -1 is not an amount (a number ≥ 0)"),
    ('[cost]\ncurrency = "EUR"\n[cost.incident_minute]\ncritical = inf\nstandard = 1\nlow = 1\n',
     "nthlayer.toml:4:1: /cost/incident_minute/critical: inf is not an amount (a number ≥ 0)"),
    ('[cost]\ncurrency = "EUR"\n[cost.incident_minute]\ncritical = "10"\nstandard = 1\nlow = 1\n',
     "nthlayer.toml:4:1: /cost/incident_minute/critical: '10' is not an amount (a number ≥ 0)"),
    ('[cost]\ncurrency = "EUR"\nincident_minute = 5\n',
     "nthlayer.toml:3:1: /cost/incident_minute: must be a table of the cost of one incident minute per tier, "
     "e.g. [cost.incident_minute] with critical = …, standard = …, low = …"),
    ('cost = 3\n', "nthlayer.toml:1:1: /cost: cost must be a table ([cost]), not a single value"),
    ('[cost]\ncurrency = "EUR"\n[cost.incident_minute]\ncritical = 10\nstandard = 2\n',
     "nthlayer.toml:3:1: /cost/incident_minute: no price for tier 'low': every tier needs one "
     "(critical, standard, low)"),
    ('[cost]\ncurrency = "EUR"\n[cost.incident_minute]\ncritical = 10\nstandard = 2\nlow = 1\ntier4 = 1\n',
     "nthlayer.toml:7:1: /cost/incident_minute/tier4: unknown tier 'tier4' (tiers: critical, standard, low)"),
    ('[cost]\ncurrency = "EUR"\nper_page = 3\n',
     "nthlayer.toml:3:1: /cost/per_page: unknown key 'per_page' (known: currency, incident_minute)"),
])
def test_bad_cost_config_is_one_clear_line(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           toml: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "web.yaml").write_text("service: web\ntier: 3\nteam: shop\ntype: api\n")
    (tmp_path / "nthlayer.toml").write_text(toml, encoding="utf-8")
    code, out, err = run_cli("cost", "--at", "2024-05-01T00:00:00Z")
    assert (code, out) == (1, "")
    assert err == f"nthlayer cost: error: {message}\n"


def test_bad_arguments(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "web.yaml").write_text("service: web\ntier: 3\nteam: shop\ntype: api\n")
    assert run_cli("cost", "--since", "36h")[0:3:2] == (
        1, "nthlayer cost: error: --since '36h' is not a number of days or weeks such as 30d or 4w\n")
    assert run_cli("cost", "--team", "payments")[0:3:2] == (1, "nthlayer cost: error: no service of team 'payments' in services\n")
    assert run_cli("cost", "--service", "nope")[0] == 1
