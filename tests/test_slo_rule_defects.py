"""Issue 15 rule defects, each proven by promtool running the generated rules on crafted series."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from generators.alertmanager import PAGE_SEVERITIES
from generators.slo_rules import RULES_FILE, rule_groups
from generators.spec import load_spec
from tests.conftest import ROOT, requires_promtool

PAYMENT_API = ROOT / "tests" / "golden" / "slo" / "tier1-payment-api" / "spec.yaml"


def _service(spec: Path = PAYMENT_API):
    return load_spec(os.path.relpath(spec, ROOT), raw=spec.read_bytes()).service


def _promtool(tmp_path: Path, service, tests: list[dict[str, Any]], interval: str = "1m") -> str:
    """Run ``tests`` against the service's generated rules; return promtool's output (asserting success)."""
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(rule_groups(service), sort_keys=False))
    document = {"rule_files": [RULES_FILE], "evaluation_interval": interval, "tests": tests}
    (tmp_path / "case.test.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", "case.test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@requires_promtool
def test_long_windows_still_evaluate_after_a_team_change(tmp_path: Path) -> None:
    """5m series recorded under the old team label stay within the 1d/3d/30d ranges after a
    team change; the long-window rules must still produce one series per SLO (new labels)."""
    service = _service()
    old = {"service": "payment-api", "team": "old-team", "tier": "1"}
    series = []
    for slo in ("availability", "latency"):
        labels = ",".join(f'{k}="{v}"' for k, v in sorted({**old, "slo": slo}.items()))
        # Recorded by the previous rules for the first hour, then stale (no samples).
        series.append({"series": f"slo:sli_requests:rate5m{{{labels}}}", "values": "10x59"})
        series.append({"series": f"slo:sli_errors:rate5m{{{labels}}}", "values": "0.1x59"})
    # The raw counters, scraped from minute 60 on, now feed the rules with the new team label.
    series += [
        {"series": 'http_requests_total{job="payment-api",code="200"}', "values": "_x60 0+600x60"},
        {"series": 'http_requests_total{job="payment-api",code="500"}', "values": "_x60 0+0x60"},
        {"series": 'http_request_duration_seconds_bucket{job="payment-api",le="0.5"}', "values": "_x60 0+600x60"},
        {"series": 'http_request_duration_seconds_count{job="payment-api"}', "values": "_x60 0+600x60"},
    ]
    long_windows = '{__name__=~"slo:sli_error:ratio_rate(1d|3d|30d)",service="payment-api"}'
    checks = [{"expr": f"count by (slo, team) ({long_windows})", "eval_time": "90m",
               "exp_samples": [{"labels": f'{{slo="{slo}",team="{service.team}"}}', "value": 3}
                               for slo in ("availability", "latency")]}]
    _promtool(tmp_path, service, [{"interval": "1m", "input_series": series, "promql_expr_test": checks}])


def _budget_severities(service) -> dict[str, str]:
    return {rule["alert"]: rule["labels"]["severity"]
            for group in rule_groups(service)["groups"] for rule in group["rules"]
            if rule.get("alert", "").startswith("SLOErrorBudget")}


def test_budget_alerts_never_page_a_tier_3_service() -> None:
    service = _service(ROOT / "tests" / "golden" / "slo" / "tier3-latency-buckets" / "spec.yaml")
    assert service.tier.number == 3
    assert _budget_severities(service) == {"SLOErrorBudgetBelow25Percent": "warning",
                                           "SLOErrorBudgetBelow10Percent": "warning",
                                           "SLOErrorBudgetBelow5Percent": "warning"}
    assert not set(_budget_severities(service).values()) & set(PAGE_SEVERITIES)


def test_budget_alert_severities_come_from_the_tier_table() -> None:
    for spec in sorted((ROOT / "tests" / "golden" / "slo").glob("*/spec.yaml")):
        service = _service(spec)
        expected = {f"SLOErrorBudgetBelow{percent}Percent": severity
                    for percent, severity in service.tier.budget_alerts.items() if severity}
        assert _budget_severities(service) == expected, spec


def _availability_traffic(minutes_and_error_shares: list[tuple[int, float]], per_second: int = 10) -> list[dict]:
    """payment-api's request counters: per_second requests, the given share failing, phase after phase."""
    good, bad = ["0"], ["0"]
    good_total = bad_total = 0.0
    for minutes, share in minutes_and_error_shares:
        good_step, bad_step = per_second * 60 * (1 - share), per_second * 60 * share
        good.append(f"{good_total + good_step:g}+{good_step:g}x{minutes - 1}")
        bad.append(f"{bad_total + bad_step:g}+{bad_step:g}x{minutes - 1}")
        good_total += good_step * minutes
        bad_total += bad_step * minutes
    return [{"series": 'http_requests_total{job="payment-api",code="200"}', "values": " ".join(good)},
            {"series": 'http_requests_total{job="payment-api",code="500"}', "values": " ".join(bad)}]


def _budget_checks(service, minute: int, firing: set[str]) -> list[dict[str, Any]]:
    """Expect exactly the budget alerts in ``firing`` (availability SLO) at ``minute``."""
    group = next(g for g in rule_groups(service)["groups"] if g["name"].endswith(":availability"))
    recorded_labels = next(r["labels"] for r in group["rules"] if r.get("record") == "slo:error_budget_remaining:ratio")
    checks = []
    for rule in group["rules"]:
        if rule.get("alert", "").startswith("SLOErrorBudget"):
            expected = [{"exp_labels": {**recorded_labels, **rule["labels"]}, "exp_annotations": rule["annotations"]}]
            checks.append({"eval_time": f"{minute}m", "alertname": rule["alert"],
                           "exp_alerts": expected if rule["alert"] in firing else []})
    return checks


@requires_promtool
def test_a_short_incident_right_after_loading_does_not_fire_budget_alerts(tmp_path: Path) -> None:
    """20 minutes of 1.5 % errors (30x the 0.05 % budget) spend 1.4 % of a 30-day budget: no budget alert."""
    service = _service()
    series = _availability_traffic([(20, 0.015), (60, 0.0)])
    checks = [check for minute in (20, 35, 60, 79) for check in _budget_checks(service, minute, set())]
    _promtool(tmp_path, service, [{"interval": "1m", "input_series": series, "alert_rule_test": checks}])


@requires_promtool
def test_budget_alerts_fire_when_the_window_allowance_is_spent(tmp_path: Path) -> None:
    """10 % errors (200x the budget) spend the 30-day budget in 3.6 h: under 25 % left after 2.7 h,
    under 10 % after 3.24 h, under 5 % after 3.42 h; each alert fires 15 minutes later."""
    service = _service()
    series = _availability_traffic([(250, 0.1)])
    checks = (_budget_checks(service, 150, set())
              + _budget_checks(service, 185, {"SLOErrorBudgetBelow25Percent"})
              + _budget_checks(service, 240, {"SLOErrorBudgetBelow25Percent", "SLOErrorBudgetBelow10Percent",
                                              "SLOErrorBudgetBelow5Percent"}))
    _promtool(tmp_path, service, [{"interval": "1m", "input_series": series, "alert_rule_test": checks}])


@requires_promtool
def test_sloth_dashboard_series_exist_under_sloth_names_and_labels(tmp_path: Path) -> None:
    """The series Sloth's Grafana dashboards read, selected the way they select them (sloth_* labels)."""
    service = _service()
    series = _availability_traffic([(31, 0.01)])  # 1 % errors: 20x the 0.05 % budget
    identity = {"service": "payment-api", "slo": "availability", "team": "payments", "tier": "1",
                "sloth_id": "payment-api-availability", "sloth_service": "payment-api", "sloth_slo": "availability"}
    sloth = 'sloth_service="payment-api",sloth_slo="availability"'

    def labels(**extra: str) -> str:
        return "{" + ",".join(f'{k}="{v}"' for k, v in sorted({**identity, **extra}.items())) + "}"

    checks = [
        {"expr": f"slo:time_period:days{{{sloth}}}", "eval_time": "30m",
         "exp_samples": [{"labels": "slo:time_period:days" + labels(), "value": 30}]},
        {"expr": f"slo:objective:ratio{{{sloth}}}", "eval_time": "30m",
         "exp_samples": [{"labels": "slo:objective:ratio" + labels(), "value": 0.9995}]},
        {"expr": 'sloth_slo_info{sloth_id="payment-api-availability"}', "eval_time": "30m",
         "exp_samples": [{"labels": "sloth_slo_info" + labels(objective="0.9995", sloth_objective="99.95"),
                          "value": 1}]},
        # Sloth's current burn rate is the 5m error ratio over the budget.
        {"expr": f"round(slo:current_burn_rate:ratio{{{sloth}}}, 0.01)", "eval_time": "30m",
         "exp_samples": [{"labels": labels(), "value": 20}]},
        {"expr": f"round(slo:sli_error:ratio_rate5m{{{sloth}}}, 0.0001)", "eval_time": "30m",
         "exp_samples": [{"labels": labels(), "value": 0.01}]},
        # 29 minutes of history at 20x spend 20 x 29 / 43200 of the 30-day budget.
        {"expr": f"count(slo:period_error_budget_remaining:ratio{{{sloth}}} > 0.986 < 0.987)", "eval_time": "30m",
         "exp_samples": [{"labels": "{}", "value": 1}]},
    ]
    _promtool(tmp_path, service, [{"interval": "1m", "input_series": series, "promql_expr_test": checks}])
