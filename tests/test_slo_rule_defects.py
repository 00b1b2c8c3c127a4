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
