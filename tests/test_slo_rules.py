"""Prometheus SLO rules: golden files, exact PromQL, and promtool proving the generated tests."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from generators.model import SLO
from generators.slo_rules import (alert_names, enabled_burn_windows, ratio_windows, rule_groups, scrape_config,
                                  slo_rule_files)
from generators.slo_tests import concrete_labels, promtool_tests, sample_value, sustained_share
from generators.spec import load_spec
from nthlayer.integrations import promtool
from tests.conftest import ROOT, UPDATE_GOLDEN, requires_promtool

GOLDEN = ROOT / "tests" / "golden" / "slo"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "spec.yaml").is_file())
OUTPUTS = ("slo.rules.yaml", "slo-rules.test.yaml", "slo-burst.test.yaml", "scrape.yaml")


def _service(spec: Path):
    relative = os.path.relpath(spec, ROOT)
    return load_spec(relative, raw=spec.read_bytes()).service


def _rules(service) -> dict[tuple[str, str], dict]:
    """(group slo, record-or-alert name) → rule; burn alerts are unique per SLO."""
    found = {}
    for group in rule_groups(service)["groups"]:
        slo = group["name"].rsplit(":", 1)[1]
        for rule in group["rules"]:
            found[(slo, rule.get("record") or rule["alert"])] = rule
    return found


def test_golden_cases_cover_every_tier_and_a_7d_window() -> None:
    services = [_service(GOLDEN / case / "spec.yaml") for case in CASES]
    assert sorted({s.tier.number for s in services}) == [1, 2, 3]
    assert 7 in {s.slos[0].window_days for s in services}


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    case_dir = GOLDEN / case
    service = _service(case_dir / "spec.yaml")
    files = slo_rule_files(service, os.path.relpath(case_dir, ROOT))
    assert sorted(Path(p).name for p in files) == sorted(OUTPUTS)
    for path, data in files.items():
        expected = ROOT / path
        if UPDATE_GOLDEN:
            expected.write_bytes(data)
        assert expected.read_bytes() == data, f"{path} differs; rerun with NTHLAYER_UPDATE_GOLDEN=1 and review the diff"


@requires_promtool
@pytest.mark.parametrize("case", CASES)
def test_promtool_checks_and_runs_the_generated_tests(case: str) -> None:
    case_dir = GOLDEN / case
    checked = promtool.check_rules(["slo.rules.yaml"], cwd=str(case_dir))
    assert checked.ok, checked.output
    tested = promtool.test_rules(["slo-rules.test.yaml", "slo-burst.test.yaml"], cwd=str(case_dir))
    assert tested.ok, tested.output


def _promtool_test(tmp_path: Path, rules_text: str, case: str = "tier1-payment-api") -> subprocess.CompletedProcess:
    (tmp_path / "slo.rules.yaml").write_text(rules_text)
    shutil.copy(GOLDEN / case / "slo-rules.test.yaml", tmp_path)
    shutil.copy(GOLDEN / case / "slo-burst.test.yaml", tmp_path)
    return subprocess.run(["promtool", "test", "rules", "slo-rules.test.yaml", "slo-burst.test.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)


@requires_promtool
def test_generated_tests_catch_a_missing_low_traffic_guard(tmp_path: Path) -> None:
    rules = (GOLDEN / "tier1-payment-api" / "slo.rules.yaml").read_text()
    unguarded = re.sub(r"\n\s*and\n\s*avg_over_time\([^\n]*", "", rules)
    assert unguarded != rules
    result = _promtool_test(tmp_path, unguarded)
    assert result.returncode == 1
    assert "low traffic" in result.stdout + result.stderr


@requires_promtool
def test_generated_tests_catch_a_ticket_threshold_that_is_too_high(tmp_path: Path) -> None:
    rules = (GOLDEN / "tier1-payment-api" / "slo.rules.yaml").read_text()
    # The 1x drift alert raised to 3x no longer fires under the sustained 2x burn.
    result = _promtool_test(tmp_path, rules.replace("> 0.0005\n", "> 0.0015\n"))
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "sustained" in output and "SLOBurnRateDrift" in output


@requires_promtool
def test_generated_tests_catch_a_wrong_latency_bucket(tmp_path: Path) -> None:
    rules = (GOLDEN / "tier3-latency-buckets" / "slo.rules.yaml").read_text()
    result = _promtool_test(tmp_path, rules.replace('le="0.75"', 'le="0.5"'), "tier3-latency-buckets")
    assert result.returncode == 1


def test_payment_api_fast_burn_alert_is_exact() -> None:
    rules = _rules(_service(ROOT / "services" / "payment-api.yaml"))
    assert rules[("availability", "SLOBurnRateFast")]["expr"] == (
        "(\n"
        '  slo:sli_error:ratio_rate1h{service="payment-api",slo="availability"} > 0.0072\n'
        "and\n"
        '  slo:sli_error:ratio_rate5m{service="payment-api",slo="availability"} > 0.0072\n'
        ")\n"
        "and\n"
        '  avg_over_time(slo:sli_requests:rate5m{service="payment-api",slo="availability"}[1h]) >= 0.05')
    assert rules[("availability", "SLOBurnRateFast")]["for"] == "1m"
    assert rules[("availability", "SLOBurnRateDrift")]["expr"] == (
        "(\n"
        '  slo:sli_error:ratio_rate3d{service="payment-api",slo="availability"} > 0.0005\n'
        "and\n"
        '  slo:sli_error:ratio_rate6h{service="payment-api",slo="availability"} > 0.0005\n'
        ")")
    assert rules[("latency", "SLOBurnRateMedium")]["expr"].startswith(
        '(\n  slo:sli_error:ratio_rate6h{service="payment-api",slo="latency"} > 0.3\n')


def test_ratio_expressions_are_ratios_of_sums() -> None:
    rules = _rules(_service(ROOT / "services" / "payment-api.yaml"))
    assert rules[("availability", "slo:sli_error:ratio_rate5m")]["expr"] == (
        '(sum(rate(http_requests_total{job="payment-api",code=~"5.."}[5m])) or vector(0))\n'
        "/\n"
        'sum(rate(http_requests_total{job="payment-api"}[5m]))')
    assert rules[("availability", "slo:sli_error:ratio_rate30d")]["expr"] == (
        'sum by (service, slo) (sum_over_time(slo:sli_errors:rate5m{service="payment-api",slo="availability"}[30d]))\n'
        "/\n"
        'sum by (service, slo) (sum_over_time(slo:sli_requests:rate5m{service="payment-api",slo="availability"}[30d]))')
    assert rules[("latency", "slo:sli_error:ratio_rate1h")]["expr"] == (
        "1 - (\n"
        'sum(rate(http_request_duration_seconds_bucket{job="payment-api",le=~"0.5"}[1h]))\n'
        "/\n"
        'sum(rate(http_request_duration_seconds_count{job="payment-api"}[1h]))\n'
        ")".replace('le=~"0.5"', 'le="0.5"'))
    assert rules[("latency", "slo:sli_errors:rate5m")]["expr"] == (
        '(sum(rate(http_request_duration_seconds_count{job="payment-api"}[5m])) - '
        'sum(rate(http_request_duration_seconds_bucket{job="payment-api",le="0.5"}[5m])))')


def test_budget_and_burn_rate_records_use_exact_decimals() -> None:
    rules = _rules(_service(ROOT / "services" / "payment-api.yaml"))
    assert rules[("availability", "slo:objective:ratio")]["expr"] == "vector(0.9995)"
    assert rules[("availability", "slo:error_budget:ratio")]["expr"] == "vector(0.0005)"
    assert rules[("availability", "slo:period_burn_rate:ratio")]["expr"] == (
        'slo:sli_error:ratio_rate30d{service="payment-api",slo="availability"} / 0.0005')
    assert rules[("availability", "slo:current_burn_rate:ratio")]["expr"] == (
        'slo:sli_error:ratio_rate5m{service="payment-api",slo="availability"} / 0.0005')
    # The spend is judged against the whole window: scaled by the share of it the history covers.
    assert rules[("availability", "slo:error_budget_remaining:ratio")]["expr"] == (
        "1 - (\n"
        'slo:period_burn_rate:ratio{service="payment-api",slo="availability"}\n'
        "* on (service, slo) group_left\n"
        "clamp_max((time() - min by (service, slo) (min_over_time("
        'slo:sli_requests:timestamp{service="payment-api",slo="availability"}[30d]))) / 2592000, 1)\n'
        ")")
    assert [rules[("latency", name)]["expr"] for name in
            ("SLOErrorBudgetBelow25Percent", "SLOErrorBudgetBelow10Percent", "SLOErrorBudgetBelow5Percent")] == [
        f'slo:error_budget_remaining:ratio{{service="payment-api",slo="latency"}} < {t}' for t in ("0.25", "0.1", "0.05")]


def test_every_recorded_series_and_alert_carries_the_slo_labels() -> None:
    service = _service(GOLDEN / "tier2-grpc" / "spec.yaml")
    for group in rule_groups(service)["groups"]:
        slo = group["name"].rsplit(":", 1)[1]
        for rule in group["rules"]:
            labels = rule["labels"]
            assert {k: labels[k] for k in ("service", "slo", "team", "tier")} == {
                "service": "checkout-worker", "slo": slo, "team": "commerce", "tier": "2"}
            if "record" in rule:  # Sloth's identity labels, for its Grafana dashboards
                assert {k: labels[k] for k in ("sloth_id", "sloth_service", "sloth_slo")} == {
                    "sloth_id": f"checkout-worker-{slo}", "sloth_service": "checkout-worker", "sloth_slo": slo}


def test_recorded_windows_include_the_slo_window_once() -> None:
    assert ratio_windows(SLO("availability", Decimal("0.999"), 30)) == ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")
    assert ratio_windows(SLO("availability", Decimal("0.999"), 7)) == ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "7d")
    assert ratio_windows(SLO("availability", Decimal("0.999"), 3)) == ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def test_alerts_follow_the_tier_table() -> None:
    by_case = {case: _service(GOLDEN / case / "spec.yaml") for case in CASES}
    severities = {case: [(w.name, sev) for w, sev in enabled_burn_windows(s, s.slos[0])] for case, s in by_case.items()}
    assert severities == {
        "histogram-count-requests": [("fast", "page"), ("medium", "page"), ("slow", "ticket")],
        "tier1-payment-api": [("fast", "page"), ("medium", "page"), ("slow", "ticket"), ("drift", "ticket")],
        "tier2-grpc": [("fast", "page"), ("medium", "page"), ("slow", "ticket")],
        "tier3-latency-buckets": [("fast", "page"), ("medium", "ticket"), ("slow", "ticket")],
        # 7 days: the 1d and 3d windows would fire below a 1x burn, so they are not generated.
        "window-7d": [("fast", "page"), ("medium", "page")],
    }
    rules = _rules(by_case["window-7d"])
    assert "> 0.00336\n" in rules[("availability", "SLOBurnRateFast")]["expr"]  # 3.36 x 0.001
    assert "> 0.0014\n" in rules[("availability", "SLOBurnRateMedium")]["expr"]  # 1.4 x 0.001
    # Only page alerts carry the low-traffic guard.
    tier3 = _rules(by_case["tier3-latency-buckets"])
    assert "avg_over_time" in tier3[("availability", "SLOBurnRateFast")]["expr"]
    assert "avg_over_time" not in tier3[("availability", "SLOBurnRateMedium")]["expr"]
    assert alert_names(by_case["window-7d"]) == [
        "SLOBurnRateFast", "SLOBurnRateMedium", "SLOErrorBudgetBelow10Percent", "SLOErrorBudgetBelow25Percent",
        "SLOErrorBudgetBelow5Percent", "SLOMetricsAbsent"]


def test_absent_alert_and_custom_sli() -> None:
    service = _service(GOLDEN / "tier2-grpc" / "spec.yaml")
    rules = _rules(service)
    assert rules[("availability", "SLOMetricsAbsent")]["expr"] == 'absent(grpc_server_handled_total{job="checkout-worker"})'
    assert rules[("latency", "SLOMetricsAbsent")]["expr"] == 'absent(grpc_server_handling_seconds_count{job="checkout-worker"})'
    assert rules[("availability", "SLOMetricsAbsent")]["annotations"]["runbook_url"] == (
        "https://runbooks.example.com/checkout-worker")


def test_test_series_come_from_the_model() -> None:
    service = _service(GOLDEN / "tier2-grpc" / "spec.yaml")
    tests = promtool_tests(service, "slo.rules.yaml")
    series = {s["series"] for s in tests["tests"][1]["input_series"]}
    assert series == {
        'grpc_server_handled_total{grpc_code="Unknown",job="checkout-worker"}',
        'grpc_server_handled_total{grpc_code="200",job="checkout-worker"}',
        'grpc_server_handling_seconds_bucket{job="checkout-worker",le="1"}',
        'grpc_server_handling_seconds_count{job="checkout-worker"}',
    }
    # min_request_rate 0.5 req/s → test traffic of 5 req/s, sampled every 2 minutes in the long scenarios.
    count = next(s for s in tests["tests"][1]["input_series"] if "_count" in s["series"])
    assert count["values"].startswith("0 600+600x")


def test_sample_values_satisfy_and_violate_matchers() -> None:
    assert sample_value([("code", "=~", "5..")]) == "500"
    assert sample_value([], violate=("code", "=~", "5..")) == "200"
    assert sample_value([("grpc_code", "=~", "^(Unknown|Internal)$")]) == "Unknown"
    assert sample_value([("le", "=~", "1(\\.0)?")]) == "1"
    assert concrete_labels((("job", "=", "a"), ("env", "!=", "dev"))) == {"env": "200", "job": "a"}
    assert concrete_labels((("job", "=", "a"),), violate=("code", "=~", "5..")) == {"code": "200", "job": "a"}
    with pytest.raises(ValueError, match="cannot invent"):
        sample_value([("x", "=", "a"), ("x", "=", "b")])


def test_sustained_share_is_twice_the_slowest_threshold_unless_that_hits_the_next() -> None:
    tier1 = _service(ROOT / "services" / "payment-api.yaml")
    assert sustained_share(tier1, tier1.slo("availability")) == Decimal("0.001")  # 2 x 0.0005
    tier3 = _service(GOLDEN / "tier3-latency-buckets" / "spec.yaml")
    # 3x (0.03) is the slowest; 6x (0.06) would equal the medium alert's threshold: halfway, 4.5x.
    assert sustained_share(tier3, tier3.slo("availability")) == Decimal("0.045")


def test_short_windows_have_no_burn_tests_when_no_alert_can_exist(tmp_path: Path) -> None:
    spec = tmp_path / "daily.yaml"
    spec.write_text("service: daily\ntier: 1\nteam: t\nobservability: {window: 1d}\n")
    service = load_spec(str(spec)).service
    names = [t["name"].split(":")[0] for t in promtool_tests(service, "slo.rules.yaml")["tests"]]
    assert names == ["steady", "absent"]
    assert alert_names(service) == ["SLOErrorBudgetBelow10Percent", "SLOErrorBudgetBelow25Percent",
                                    "SLOErrorBudgetBelow5Percent", "SLOMetricsAbsent"]


def test_scrape_config_discovers_the_service_by_dns() -> None:
    service = _service(ROOT / "services" / "payment-api.yaml")
    assert scrape_config(service) == {"scrape_configs": [{
        "job_name": "payment-api", "metrics_path": "/metrics",
        "dns_sd_configs": [{"names": ["payment-api"], "type": "A", "port": 9090}]}]}


def test_generate_slo_dry_run_writes_nothing(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run_cli("generate-slo", str(ROOT / "services" / "payment-api.yaml"), "--output", str(out),
                              "--format", "prometheus", "--dry-run")
    assert code == 0
    assert [line.split(" (")[0] for line in stdout.splitlines()] == [
        f"would create {out}/scrape.yaml", f"would create {out}/slo-burst.test.yaml",
        f"would create {out}/slo-rules.test.yaml", f"would create {out}/slo.rules.yaml"]
    assert not out.exists()


def test_generate_slo_writes_both_formats(tmp_path: Path, run_cli) -> None:
    spec = str(ROOT / "services" / "payment-api.yaml")
    code, stdout, _ = run_cli("generate-slo", spec, "--output", str(tmp_path / "p"), "--format", "prometheus")
    assert code == 0 and stdout.count("wrote ") == 4
    assert sorted(os.listdir(tmp_path / "p")) == ["scrape.yaml", "slo-burst.test.yaml", "slo-rules.test.yaml",
                                                  "slo.rules.yaml"]
    code, stdout, _ = run_cli("generate-slo", spec, "--output", str(tmp_path / "o"), "--format", "openslo")
    assert code == 0
    assert sorted(os.listdir(tmp_path / "o")) == ["openslo.yaml"]  # every document in one stream
    code, stdout, _ = run_cli("generate-slo", spec, "--output", str(tmp_path / "o"), "--format", "openslo")
    assert stdout.count("unchanged ") == 1


def test_generate_slo_reports_spec_errors(tmp_path: Path, run_cli) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("service: bad\ntier: 7\nteam: t\n")
    code, stdout, stderr = run_cli("generate-slo", str(spec), "--output", str(tmp_path / "o"))
    assert code == 1 and stdout == ""
    assert stderr.startswith(f"{spec}:2:7: /tier: ")


@requires_promtool
def test_setup_prometheus_counts_one_service_in_the_singular(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "out"
    service = _service(GOLDEN / "tier1-payment-api" / "spec.yaml")
    for path, data in slo_rule_files(service, str(out / service.name / "prometheus")).items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    code, stdout, stderr = run_cli("setup-prometheus", "--out", str(out))
    assert code == 0, stderr
    assert stdout.splitlines()[0] == f"wrote {out}/prometheus/prometheus.yml: 1 rule file, 1 scrape job"


def test_setup_prometheus_writes_a_checked_fragment(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "out"
    for case in ("tier1-payment-api", "window-7d"):
        service = _service(GOLDEN / case / "spec.yaml")
        for path, data in slo_rule_files(service, str(out / service.name / "prometheus")).items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
    code, stdout, stderr = run_cli("setup-prometheus", "--out", str(out))
    assert code == 0, stderr
    assert stdout.splitlines() == [
        f"wrote {out}/prometheus/prometheus.yml: 2 rule files, 2 scrape jobs", "promtool check config: ok"]
    fragment = yaml.safe_load((out / "prometheus" / "prometheus.yml").read_text())
    assert fragment["rule_files"] == ["../ledger-api/prometheus/*.rules.yaml", "../payment-api/prometheus/*.rules.yaml"]
    assert [job["job_name"] for job in fragment["scrape_configs"]] == ["ledger-api", "payment-api"]
    # A broken rule file matched by the globs fails the check.
    (out / "payment-api" / "prometheus" / "broken.rules.yaml").write_text("groups: [{name: x, rules: [{record: 'a b', expr: '1'}]}]\n")
    code, _, stderr = run_cli("setup-prometheus", "--out", str(out), "--output", str(tmp_path / "prometheus.yml"))
    assert code == 1
    assert "broken.rules.yaml" in stderr


def test_setup_prometheus_needs_a_built_out_folder(tmp_path: Path, run_cli) -> None:
    code, _, stderr = run_cli("setup-prometheus", "--out", str(tmp_path / "missing"))
    assert code == 1
    assert "is not a folder" in stderr
