"""benchmarks/catalog_mutation.py: mutants are what they claim to be, and promtool's verdicts are read right."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "benchmarks" / "catalog_mutation.py"
FIXTURE = ROOT / "tests" / "fixtures" / "mutation_catalog"

sys.path.insert(0, str(ROOT / "benchmarks"))
import catalog_mutation  # noqa: E402

sys.path.remove(str(ROOT / "benchmarks"))


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), "--catalog", str(FIXTURE), *args],
                          capture_output=True, text=True, timeout=300, check=False)


def test_well_tested_rule_kills_every_mutant_and_weak_tests_leave_survivors() -> None:
    completed = run_tool("--json")
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout)
    # DemoQueueDeep: > 100 doubled and halved, the consumers guard dropped, for tripled, for dropped
    # (its still-pending case at 3m): all killed; its `> 0` guard threshold gives two equivalent
    # mutants. DemoErrors: its two cases are far from the threshold and evaluated long after `for`,
    # with no case still pending, so nothing it says is pinned.
    assert [(s["rule"], s["operator"], s["before"], s["after"]) for s in summary["survivors"]] == [
        ("DemoErrors", "threshold*2", "> 10", "> 20"),
        ("DemoErrors", "threshold/2", "> 10", "> 5"),
        ("DemoErrors", "for*3", "for: 1m", "for: 3m"),
        ("DemoErrors", "for-drop", "for: 1m", "for: 0m"),
    ]
    assert summary["overall"] == {"killed": 5, "total": 9, "equivalent": 2, "kill_rate": 55.6}
    assert summary["operators"]["guard-drop"] == {"killed": 1, "total": 1, "equivalent": 0, "kill_rate": 100.0}
    assert summary["operators"]["for-drop"] == {"killed": 1, "total": 2, "equivalent": 0, "kill_rate": 50.0}
    # A rule whose own tests fail says nothing about its mutants: reported, not counted.
    assert summary["broken_rules"] == ["demo/DemoConsumersGone"]


def test_text_report_lists_survivors_and_fail_under_sets_the_exit_code() -> None:
    completed = run_tool("--list-survivors", "--fail-under", "50")
    lines = completed.stdout.splitlines()
    assert "survivor: demo/DemoErrors  threshold/2  > 10 -> > 5" in lines
    assert "broken: demo/DemoConsumersGone: its own tests fail, mutants not counted" in lines
    assert "survivor: demo/DemoErrors  for-drop  for: 1m -> for: 0m" in lines
    assert lines[-1] == "catalog mutation: 5 of 9 mutants killed (55.6 %), 2 equivalent not run, 4 survived"
    assert completed.returncode == 1  # the broken rule fails --fail-under whatever the rate


def test_unknown_technology_is_a_clear_error() -> None:
    completed = run_tool("nosuch")
    assert (completed.returncode, completed.stdout) == (1, "")
    assert completed.stderr == "catalog_mutation: error: unknown technology: nosuch\n"


@pytest.mark.parametrize("expr, expected", [
    ('x{a="q\\""} - time() < 7 * 86400', [
        ("threshold*2", "< 7 * 86400", "< 1209600", '(x{a="q\\""} - time()) < (1209600)'),
        ("threshold/2", "< 7 * 86400", "< 302400", '(x{a="q\\""} - time()) < (302400)'),
    ]),
    ("0.5 >= rate(z_total[5m]) unless on (j) y > bool 0", [
        ("threshold*2", "0.5 >=", "1 >=", "(1) >= (rate(z_total{}[5m])) unless on (j) y{} > bool 0"),
        ("threshold/2", "0.5 >=", "0.25 >=", "(0.25) >= (rate(z_total{}[5m])) unless on (j) y{} > bool 0"),
        ("threshold*2", "> bool 0", "> bool 0", None),
        ("threshold/2", "> bool 0", "> bool 0", None),
        ("guard-drop", "unless on (j) y{} > bool 0", "(dropped)", "(0.5 >= rate(z_total{}[5m]))"),
    ]),
    ("a / b > 0.9 and b > 10 and c == 1", [
        ("threshold*2", "> 0.9", "> 1.8", "(a{} / b{}) > (1.8) and b{} > 10 and c{} == 1"),
        ("threshold/2", "> 0.9", "> 0.45", "(a{} / b{}) > (0.45) and b{} > 10 and c{} == 1"),
        ("threshold*2", "> 10", "> 20", "a{} / b{} > 0.9 and (b{}) > (20) and c{} == 1"),
        ("threshold/2", "> 10", "> 5", "a{} / b{} > 0.9 and (b{}) > (5) and c{} == 1"),
        ("threshold*2", "== 1", "== 2", "a{} / b{} > 0.9 and b{} > 10 and (c{}) == (2)"),
        ("threshold/2", "== 1", "== 0.5", "a{} / b{} > 0.9 and b{} > 10 and (c{}) == (0.5)"),
        ("guard-drop", "and c{} == 1", "(dropped)", "(a{} / b{} > 0.9 and b{} > 10)"),
        ("guard-drop", "and b{} > 10", "(dropped)", "(a{} / b{} > 0.9) and c{} == 1"),
    ]),
])
def test_mutants_change_exactly_one_thing(expr: str, expected: list[tuple[str, str, str, str | None]]) -> None:
    found = [*catalog_mutation.threshold_mutants(expr), *catalog_mutation.guard_mutants(expr)]
    assert found == expected


def test_promtool_verdicts_tell_failed_cases_from_files_promtool_cannot_load(tmp_path: Path) -> None:
    rule = "groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: {expr}\n"
    test = ("rule_files: [{name}.rules.yaml]\nevaluation_interval: 1m\ntests:\n"
            "- interval: 1m\n  input_series: [{{series: 'up{{job=\"a\"}}', values: '0x5'}}]\n"
            "  alert_rule_test: [{{eval_time: 2m, alertname: Down, exp_alerts: [{{exp_labels: {{job: a}}}}]}}]\n")
    for name, expr in (("fires", "up == 0"), ("silent", "up == 1"), ("broken", "up == (")):
        (tmp_path / f"{name}.rules.yaml").write_text(rule.format(expr=f"'{expr}'"))
        (tmp_path / f"{name}.test.yaml").write_text(test.format(name=name))
    verdicts = catalog_mutation._promtool_verdicts(
        str(tmp_path), ["fires.test.yaml", "silent.test.yaml", "broken.test.yaml"])
    assert verdicts["fires.test.yaml"] == "passed"
    assert verdicts["silent.test.yaml"] == "failed"
    assert verdicts["broken.test.yaml"].startswith("error: FAILED: broken.rules.yaml: ")
    assert "could not parse expression" in verdicts["broken.test.yaml"]


@pytest.mark.parametrize("for_, expected", [("5m", ("for: 15m", "15m", False)), ("90s", ("for: 270s", "270s", False)),
                                            ("1h", ("for: 3h", "3h", False)), ("0m", ("for: 0m", "0m", True))])
def test_for_is_tripled_and_zero_is_equivalent(for_: str, expected: tuple[str, str, bool]) -> None:
    from generators.catalog import Technology

    tech = Technology("demo", "demo.yaml", {"rules": []})
    rule = {"name": "R", "expr": "up == 0", "for": for_}
    (mutant,) = [m for m in catalog_mutation.rule_mutants(tech, rule) if m.operator == "for*3"]
    assert (mutant.after, mutant.for_, mutant.equivalent) == expected


@pytest.mark.parametrize("for_, equivalent", [("5m", False), ("90s", False), ("0m", True)])
def test_for_is_dropped_and_zero_is_equivalent(for_: str, equivalent: bool) -> None:
    from generators.catalog import Technology

    tech = Technology("demo", "demo.yaml", {"rules": []})
    rule = {"name": "R", "expr": "up == 0", "for": for_}
    (mutant,) = [m for m in catalog_mutation.rule_mutants(tech, rule) if m.operator == "for-drop"]
    assert (mutant.before, mutant.after, mutant.for_, mutant.equivalent) == (f"for: {for_}", "for: 0m", "0m", equivalent)
