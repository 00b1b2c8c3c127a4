"""The rules catalog: loading, lint checks with exact locations, promtool test generation, list/show/test."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from generators import catalog as catalog_module
from generators.catalog import (
    load_catalog,
    load_technologies,
    load_technology,
    load_technology_cached,
    promtool_test_document,
    promtool_test_files,
)
from generators.errors import SpecErrors, UserError
from tests.conftest import ROOT, requires_promtool

FIXTURE = str(ROOT / "tests" / "fixtures" / "catalog")

HEAD = """apiVersion: nthlayer.dev/v1
kind: TechnologyRules
technology: {tech}
display_name: Test
category: other
exporter:
  name: test_exporter
rules:
"""

TESTS = """    tests:
      - name: fires
        series:
          - {series: 'x_up{instance="a"}', values: '0x10'}
        alerts:
          - {instance: a}
      - name: silent
        series:
          - {series: 'x_up{instance="a"}', values: '1x10'}
        alerts: []
"""


def rule(name: str, expr: str, metrics: str, extra: str = "") -> str:
    return (f"  - name: {name}\n    expr: '{expr}'\n    for: 1m\n    severity: warning\n    tiers: [1]\n"
            f"    summary: s\n    description: d\n    metrics: {metrics}\n{extra}{TESTS}")


def write_tech(folder: Path, tech: str, *rules: str) -> str:
    path = folder / f"{tech}.yaml"
    path.write_text(HEAD.format(tech=tech) + "".join(rules), encoding="utf-8")
    return str(path)


def error_lines(path: str) -> list[str]:
    with pytest.raises(SpecErrors) as caught:
        load_technology(path)
    return caught.value.lines()


def test_fixture_catalog_loads() -> None:
    catalog = load_catalog(FIXTURE)
    assert sorted(catalog) == ["postgres", "redis"]
    assert [r["name"] for r in catalog["redis"].rules] == ["RedisDown", "RedisRejectingConnections",
                                                          "RedisMemoryNearLimit"]
    assert catalog["postgres"].test_cases == 6
    assert not catalog["postgres"].imported


def test_catalog_is_parsed_once_per_process() -> None:
    path = os.path.join(FIXTURE, "redis.yaml")
    assert load_technology(path) is load_technology(path)


def test_valid_rule_passes_lint(tmp_path: Path) -> None:
    path = write_tech(tmp_path, "ok", rule("XDown", "x_up == 0", "[x_up]"))
    assert load_technology(path).rules[0]["name"] == "XDown"


def test_metrics_must_equal_what_expr_reads(tmp_path: Path) -> None:
    path = write_tech(tmp_path, "metrics", rule("XDown", "x_up == 0 and x_ready == 1", "[x_up, x_gone]"))
    assert error_lines(path) == [
        f"{path}:16:14: /rules/0/metrics: XDown: expr reads x_ready but metrics does not list it; "
        "metrics lists x_gone but expr does not read it",
    ]


def test_raw_counter_is_an_error_and_points_at_the_expr(tmp_path: Path) -> None:
    path = write_tech(tmp_path, "counters",
                      rule("XOk", "rate(x_requests_total[5m]) > 1", "[x_requests_total]"),
                      rule("XBad", "x_errors_total > 5 and histogram_quantile(0.9, x_seconds_bucket) > 1",
                           "[x_errors_total, x_seconds_bucket]"))
    line = 10 + 18  # the second rule's expr line
    assert error_lines(path) == [
        f"{path}:{line}:11: /rules/1/expr: XBad: counter {name} is used raw; wrap it in rate(), irate() or "
        "increase() (or list it under gauges if the exporter documents it as a gauge)"
        for name in ("x_errors_total", "x_seconds_bucket")
    ]


def test_gauges_declares_counter_named_gauges(tmp_path: Path) -> None:
    path = write_tech(tmp_path, "gauges", rule("XBusy", "x_activity_count > 5", "[x_activity_count]",
                                               "    gauges: [x_activity_count]\n"))
    assert load_technology(path).rules[0]["gauges"] == ["x_activity_count"]
    other = write_tech(tmp_path, "gauges2", rule("XBusy2", "x_activity_count > 5", "[x_activity_count]",
                                                 "    gauges: [x_other_count]\n"))
    assert error_lines(other) == [
        f"{other}:10:11: /rules/0/expr: XBusy2: counter x_activity_count is used raw; wrap it in rate(), "
        "irate() or increase() (or list it under gauges if the exporter documents it as a gauge)",
        f"{other}:17:13: /rules/0/gauges: XBusy2: gauges names x_other_count, not in metrics",
    ]


def test_unparsable_expr_and_unnamed_selector(tmp_path: Path) -> None:
    path = write_tech(tmp_path, "parse",
                      rule("XBroken", "sum(x_up", "[x_up]"),
                      rule("XRegex", '{__name__=~"x_.*"} > 1', "[x_up]"))
    assert error_lines(path) == [
        f"{path}:10:11: /rules/0/expr: XBroken: expr is not valid PromQL: unclosed left parenthesis",
        f"{path}:28:11: /rules/1/expr: XRegex: selector {{__name__=~\"x_.*\"}} has no fixed metric name, "
        "so its metrics cannot be checked",
        f"{path}:34:14: /rules/1/metrics: XRegex: metrics lists x_up but expr does not read it",
    ]


def test_rule_needs_a_firing_and_a_silent_test(tmp_path: Path) -> None:
    text = rule("XDown", "x_up == 0", "[x_up]").replace("        alerts:\n          - {instance: a}\n",
                                                        "        alerts: []\n")
    path = write_tech(tmp_path, "tests", text)
    assert error_lines(path) == [
        f"{path}:18:7: /rules/0/tests: rule XDown needs at least one test where it fires and one where it "
        "stays silent",
    ]


def test_duplicate_rule_names_across_files(tmp_path: Path) -> None:
    first = write_tech(tmp_path, "aaa", rule("XDown", "x_up == 0", "[x_up]"))
    second = write_tech(tmp_path, "bbb", rule("YDown", "x_up == 0", "[x_up]"), rule("XDown", "x_up == 0", "[x_up]"))
    with pytest.raises(SpecErrors) as caught:
        load_catalog(str(tmp_path))
    assert caught.value.lines() == [f"{second}:27:11: /rules/1/name: duplicate rule name XDown (also {first}:9)"]


def test_load_technologies_loads_only_what_is_asked(tmp_path: Path) -> None:
    write_tech(tmp_path, "good", rule("XDown", "x_up == 0", "[x_up]"))
    write_tech(tmp_path, "broken", rule("YDown", "y_up ==", "[y_up]"))
    assert list(load_technologies(str(tmp_path), ["good"])) == ["good"]
    with pytest.raises(UserError) as caught:
        load_technologies(str(tmp_path), ["goood", "nope"])
    assert str(caught.value) == (f"unknown technology 'goood' (did you mean 'good'?), 'nope' in catalog {tmp_path}; "
                                 "'nthlayer catalog list' shows the known ones")


def test_validated_catalog_files_are_kept_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, cache = tmp_path / "catalog", str(tmp_path / "state" / "catalog")
    folder.mkdir()
    path = write_tech(folder, "good", rule("XDown", "x_up == 0", "[x_up]"))
    first = load_technology_cached(path, cache)
    assert first.data == load_technology(path).data and os.listdir(cache) == ["good.json"]

    def no_validation(*args: object) -> None:
        raise AssertionError("validated again")

    catalog_module._CACHED.clear()  # as a new process would
    with monkeypatch.context() as patch:
        patch.setattr(catalog_module, "_validated", no_validation)
        again = load_technology_cached(path, cache)
    assert again.data == first.data and again.located is None

    # An edit is validated again (with its line marks), whatever the cache holds.
    catalog_module._CACHED.clear()
    write_tech(folder, "good", rule("XDown", "x_up ==", "[x_up]"))
    with pytest.raises(SpecErrors) as caught:
        load_technology_cached(path, cache)
    load_technology.cache_clear()
    assert caught.value.lines() == error_lines(path)
    # So is a damaged cache entry.
    catalog_module._CACHED.clear()
    write_tech(folder, "good", rule("XDown", "x_up == 1", "[x_up]"))
    (tmp_path / "state" / "catalog" / "good.json").write_text("{not json")
    assert load_technology_cached(path, cache).rules[0]["expr"] == "x_up == 1"
    assert load_technologies(str(folder), ["good"], cache)["good"].rules[0]["expr"] == "x_up == 1"


def test_promtool_test_document_for_one_rule() -> None:
    tech = load_catalog(FIXTURE)["redis"]
    document = promtool_test_document(tech, "RedisDown.rules.yaml", only="RedisDown")
    assert document == {
        "rule_files": ["RedisDown.rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "RedisDown: unreachable",
                "interval": "1m",
                "input_series": [{"series": 'redis_up{instance="cache-1:9121"}', "values": "0x10"}],
                "alert_rule_test": [{
                    "eval_time": "6m",
                    "alertname": "RedisDown",
                    "exp_alerts": [{"exp_labels": {"instance": "cache-1:9121", "severity": "critical",
                                                   "technology": "redis"}}],
                }],
            },
            {
                "name": "RedisDown: reachable",
                "interval": "1m",
                "input_series": [{"series": 'redis_up{instance="cache-1:9121"}', "values": "1x10"}],
                "alert_rule_test": [{"eval_time": "6m", "alertname": "RedisDown", "exp_alerts": []}],
            },
        ],
    }
    assert len(promtool_test_document(tech, "all.yaml")["tests"]) == 6


def test_promtool_files_one_rule_per_unit_test_and_annotations_only_in_the_checked_file() -> None:
    tech = load_catalog(FIXTURE)["redis"]
    files = promtool_test_files(tech, "out")
    assert sorted(files) == [
        "out/redis.rules.yaml",
        "out/redis/RedisDown.rules.yaml", "out/redis/RedisDown.test.yaml",
        "out/redis/RedisMemoryNearLimit.rules.yaml", "out/redis/RedisMemoryNearLimit.test.yaml",
        "out/redis/RedisRejectingConnections.rules.yaml", "out/redis/RedisRejectingConnections.test.yaml",
    ]
    checked = yaml.safe_load(files["out/redis.rules.yaml"])["groups"][0]["rules"]
    unit = yaml.safe_load(files["out/redis/RedisDown.rules.yaml"])["groups"][0]["rules"]
    assert [r["alert"] for r in checked] == ["RedisDown", "RedisRejectingConnections", "RedisMemoryNearLimit"]
    assert checked[0]["annotations"] == {"summary": "Redis {{ $labels.instance }} is down",
                                         "description": "redis_exporter cannot reach the Redis server."}
    assert unit == [{k: v for k, v in checked[0].items() if k != "annotations"}]
    assert yaml.safe_load(files["out/redis/RedisDown.test.yaml"])["rule_files"] == ["RedisDown.rules.yaml"]


def test_list_summary_and_list(run_cli) -> None:
    assert run_cli("catalog", "--catalog", FIXTURE, "list", "--summary") == (
        0, "2 technologies, 6 rules, 12 test cases\n", "")
    code, out, _ = run_cli("catalog", "--catalog", FIXTURE, "list")
    assert code == 0
    assert out.splitlines() == [
        "postgres  database         3 rules     6 tests  PostgreSQL",
        "redis     cache            3 rules     6 tests  Redis",
        "2 technologies, 6 rules, 12 test cases",
    ]


def test_show(run_cli) -> None:
    code, out, _ = run_cli("catalog", "--catalog", FIXTURE, "show", "redis")
    assert code == 0
    assert out.splitlines()[:8] == [
        f"Redis (redis, cache) — {FIXTURE}/redis.yaml",
        "exporter: redis_exporter <https://github.com/oliver006/redis_exporter>",
        "",
        "RedisDown  critical  tiers 1,2,3  for 1m  2 tests",
        "    redis_up == 0",
        "  Redis {{ $labels.instance }} is down",
        "  metrics: redis_up",
        "",
    ]
    assert run_cli("catalog", "--catalog", FIXTURE, "show", "reddis") == (
        1, "", "nthlayer catalog: error: unknown technology 'reddis'; did you mean 'redis'?\n")


def test_lint_errors_reach_the_cli_as_located_lines(run_cli, tmp_path: Path) -> None:
    path = write_tech(tmp_path, "bad", rule("XDown", "x_total > 0", "[x_total]"))
    code, out, err = run_cli("catalog", "--catalog", str(tmp_path), "list", "--summary")
    assert (code, out) == (1, "")
    assert err == (f"{path}:10:11: /rules/0/expr: XDown: counter x_total is used raw; wrap it in rate(), irate() or "
                   "increase() (or list it under gauges if the exporter documents it as a gauge)\n")


@requires_promtool
def test_catalog_test_passes_on_fixture(run_cli, tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    code, out, err = run_cli("catalog", "--catalog", FIXTURE, "test", "--keep", str(keep))
    assert (code, err) == (0, "")
    assert out == ("catalog test passed: 2 technologies, 6 rules, 12 test cases "
                   "(promtool check rules: ok, promtool test rules: ok)\n")
    assert sorted(os.listdir(keep)) == ["postgres", "postgres.rules.yaml", "redis", "redis.rules.yaml"]
    assert len(os.listdir(keep / "redis")) == 6


@requires_promtool
def test_catalog_test_fails_when_a_case_is_wrong(run_cli, tmp_path: Path) -> None:
    # Same rule, but the "silent" case really fires: promtool must catch it.
    text = rule("XDown", "x_up == 0", "[x_up]").replace("values: '1x10'", "values: '0x10'")
    write_tech(tmp_path, "wrong", text)
    code, out, err = run_cli("catalog", "--catalog", str(tmp_path), "test")
    assert code == 1
    assert out == ("catalog test FAILED: 1 technology, 1 rule, 2 test cases "
                   "(promtool check rules: ok, promtool test rules: failed)\n")
    assert "XDown: silent" in err


@requires_promtool
def test_catalog_test_runs_check_rules_on_annotations(run_cli, tmp_path: Path) -> None:
    text = rule("XDown", "x_up == 0", "[x_up]").replace("summary: s", "summary: '{{ $labels.instance '")
    write_tech(tmp_path, "tmpl", text)
    code, out, _ = run_cli("catalog", "--catalog", str(tmp_path), "test")
    assert code == 1
    assert "promtool check rules: failed" in out


@requires_promtool
def test_real_catalog_passes_promtool(run_cli) -> None:
    """The shipped catalog: every rule file checks and every test case passes (what CI enforces)."""
    code, out, err = run_cli("catalog", "--catalog", str(ROOT / "rules_catalog"), "test")
    assert code == 0, err
    assert out.startswith("catalog test passed: ")


def test_fast_validation_accepts_only_what_jsonschema_accepts() -> None:
    """The catalog's fast path (generators.spec.enable_fast_validation) on every shipped file and on
    each with one rule broken in the ways the schema forbids."""
    import copy
    import glob

    from generators import spec as spec_module
    from generators.yamlload import load_yaml

    spec_module.enable_fast_validation("catalog.schema.json")
    breakages = [("severity", "page"), ("severity", True), ("tiers", [1, 1]), ("tiers", [True]), ("tiers", []),
                 ("tiers", [4]), ("for", "5 minutes"), ("name", "lower"), ("metrics", "x"), ("unknown", 1)]
    checked = 0
    for path in sorted(glob.glob(str(ROOT / "rules_catalog" / "*.yaml"))) + [os.path.join(FIXTURE, "redis.yaml")]:
        data = load_yaml(path).data
        documents = [data]
        for key, value in breakages:
            broken = copy.deepcopy(data)
            broken["rules"][0][key] = value
            documents.append(broken)
        for document in documents:
            fast = spec_module._fast_valid("catalog.schema.json", document)
            valid = not list(spec_module._validator("catalog.schema.json").iter_errors(document))
            assert not fast or valid, (path, document is data)
            checked += fast
    assert checked >= 40  # the shipped files themselves take the fast path
