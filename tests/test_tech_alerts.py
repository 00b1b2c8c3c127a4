"""Technology alerts: rule selection by tier, labels, runbooks, scoping with the PromQL parser, the CLI, golden."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from generators.catalog import load_catalog
from generators.errors import UserError
from generators.promql_scope import PromQLError, metric_names, parse, raw_counters, scope, selectors
from generators.spec import load_spec
from generators.tech_alerts import (
    alert_counts,
    catalog_paths,
    service_alert_document,
    service_alert_files,
    summary_lines,
)
from tests.conftest import ROOT, UPDATE_GOLDEN, requires_promtool

FIXTURE = str(ROOT / "tests" / "fixtures" / "catalog")
GOLDEN = ROOT / "tests" / "golden" / "tech-alerts"
GOLDEN_SPEC = GOLDEN / "services" / "payment-api.yaml"


def spec(text: str, path: str = "services/svc.yaml"):
    return load_spec(path, text.encode("utf-8")).service


def svc(tier: int = 1, technologies: str = "", extra: str = ""):
    deps = f"dependencies:\n  technologies:\n{technologies}" if technologies else ""
    # latency 1000 ms: a default bucket boundary for every tier (the spec loader insists on one).
    return spec(f"service: svc\ntier: {tier}\nteam: core\n{extra}"
                f"observability:\n  slo_overrides:\n    latency: 1000\n{deps}")


ORDERS = "    - {type: postgres, name: orders-db, selector: {cluster: orders}}\n"
BILLING = "    - {type: postgres, name: billing-db, selector: {cluster: billing}}\n"
CACHE = "    - {type: redis, name: cache}\n"


def names(document: dict) -> list[list[str]]:
    return [[rule["alert"] for rule in group["rules"]] for group in document["groups"]]


# --- golden -------------------------------------------------------------------------------------

def golden_files(out_dir: str) -> dict[str, bytes]:
    service = load_spec("services/payment-api.yaml", GOLDEN_SPEC.read_bytes()).service
    return service_alert_files(service, load_catalog(FIXTURE), out_dir)


def test_golden_payment_api_with_postgres_and_redis() -> None:
    files = golden_files("out/payment-api/prometheus")
    assert list(files) == ["out/payment-api/prometheus/alerts.rules.yaml"]
    expected = GOLDEN / "expected" / "payment-api" / "alerts.rules.yaml"
    if UPDATE_GOLDEN:
        expected.write_bytes(files["out/payment-api/prometheus/alerts.rules.yaml"])
    assert files["out/payment-api/prometheus/alerts.rules.yaml"].decode() == expected.read_text(encoding="utf-8")


@requires_promtool
def test_golden_output_passes_promtool_check(tmp_path: Path) -> None:
    path = tmp_path / "alerts.rules.yaml"
    path.write_bytes(golden_files(str(tmp_path))[str(path)])
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


@requires_promtool
def test_scoped_alerts_fire_only_for_their_instance(tmp_path: Path) -> None:
    """promtool evaluates the generated file: orders-db's outage pages, billing-db's does not."""
    (tmp_path / "alerts.rules.yaml").write_bytes(golden_files(str(tmp_path))[str(tmp_path / "alerts.rules.yaml")])
    labels = {"severity": "critical", "technology": "postgres", "service": "payment-api", "team": "payments",
              "tier": "1", "dependency": "orders-db", "env": "prod"}
    test = {
        "rule_files": ["alerts.rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": 'pg_up{cluster="orders",instance="orders-db-1:9187"}', "values": "0x10"},
                {"series": 'pg_up{cluster="orders",instance="orders-replica:9187"}', "values": "0x10"},
                {"series": 'pg_up{cluster="billing",instance="orders-db-2:9187"}', "values": "0x10"},
                {"series": 'redis_up{instance="other-cache:9121"}', "values": "0x10"},
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "PostgresDown", "exp_alerts": [{
                    "exp_labels": {**labels, "cluster": "orders", "instance": "orders-db-1:9187"},
                    "exp_annotations": {
                        "summary": "PostgreSQL orders-db-1:9187 is down",
                        "description": "The exporter has failed to reach the server for a minute.",
                        "runbook_url": "https://runbooks.example.com/payment-api/PostgresDown",
                    },
                }]},
                {"eval_time": "5m", "alertname": "RedisDown", "exp_alerts": []},
            ],
        }],
    }
    (tmp_path / "scope.test.yaml").write_text(yaml.safe_dump(test), encoding="utf-8")
    result = subprocess.run(["promtool", "test", "rules", "scope.test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- selection, labels, runbooks ----------------------------------------------------------------

@pytest.mark.parametrize(("tier", "expected"), [
    (1, [["PostgresDown", "PostgresConnectionsNearLimit", "PostgresDeadlocks"],
         ["RedisDown", "RedisRejectingConnections", "RedisMemoryNearLimit"]]),
    (2, [["PostgresDown", "PostgresConnectionsNearLimit"],
         ["RedisDown", "RedisRejectingConnections", "RedisMemoryNearLimit"]]),
    # RedisRejectingConnections lists tier 3 but is a warning: tier 3 only gets critical.
    (3, [["PostgresDown"], ["RedisDown"]]),
])
def test_rules_selected_by_tier_and_severity(tier: int, expected: list[list[str]]) -> None:
    service = svc(tier, ORDERS + CACHE)
    assert names(service_alert_document(service, load_catalog(FIXTURE))) == expected


def test_labels_and_group_names() -> None:
    service = svc(2, ORDERS, extra="labels:\n  env: staging\n  component: db\n")
    group = service_alert_document(service, load_catalog(FIXTURE))["groups"][0]
    assert group["name"] == "svc/postgres/orders-db"
    assert group["rules"][0] == {
        "alert": "PostgresDown",
        "expr": 'pg_up{cluster="orders"} == 0',
        "for": "1m",
        "labels": {"severity": "critical", "technology": "postgres", "service": "svc", "team": "core",
                   "tier": "2", "dependency": "orders-db", "component": "db", "env": "staging"},
        "annotations": {"summary": "PostgreSQL {{ $labels.instance }} is down",
                        "description": "The exporter has failed to reach the server for a minute."},
    }


def test_zero_for_is_left_out() -> None:
    group = service_alert_document(svc(1, CACHE), load_catalog(FIXTURE))["groups"][0]
    assert [("for" in r) for r in group["rules"]] == [True, False, True]


def test_unscoped_dependency_keeps_the_catalog_expression() -> None:
    group = service_alert_document(svc(1, CACHE), load_catalog(FIXTURE))["groups"][0]
    assert group["rules"][2]["expr"] == ("redis_memory_used_bytes / redis_memory_max_bytes > 0.9 and "
                                         "redis_memory_max_bytes > 0")


@pytest.mark.parametrize(("override", "service_url", "dep_url", "expected"), [
    ("https://cli.example/rb/", "https://svc.example", "https://dep.example", "https://cli.example/rb/PostgresDown"),
    (None, "https://svc.example", "https://dep.example/", "https://dep.example/PostgresDown"),
    (None, "https://svc.example/", None, "https://svc.example/PostgresDown"),
    (None, None, None, None),
])
def test_runbook_url_precedence(override, service_url, dep_url, expected) -> None:
    dep = "    - {type: postgres, name: db" + (f", runbook_url: '{dep_url}'" if dep_url else "") + "}\n"
    extra = f"runbook_url: {service_url}\n" if service_url else ""
    group = service_alert_document(svc(3, dep, extra), load_catalog(FIXTURE), override)["groups"][0]
    assert group["rules"][0]["annotations"].get("runbook_url") == expected


def test_two_instances_get_their_own_groups_and_dependency_label() -> None:
    service = svc(3, ORDERS + BILLING)
    document = service_alert_document(service, load_catalog(FIXTURE))
    assert [g["name"] for g in document["groups"]] == ["svc/postgres/orders-db", "svc/postgres/billing-db"]
    assert names(document) == [["PostgresDown"], ["PostgresDown"]]
    assert [g["rules"][0]["labels"]["dependency"] for g in document["groups"]] == ["orders-db", "billing-db"]
    assert [g["rules"][0]["expr"] for g in document["groups"]] == ['pg_up{cluster="orders"} == 0',
                                                                   'pg_up{cluster="billing"} == 0']
    assert alert_counts(service, load_catalog(FIXTURE)) == {"postgres": 2}
    assert summary_lines(service, load_catalog(FIXTURE)) == ["postgres: 2 alerts (2 instances)"]


def test_two_instances_without_distinct_selectors_are_refused() -> None:
    service = svc(1, ORDERS + "    - {type: postgres, name: copy-db, selector: {cluster: orders}}\n")
    with pytest.raises(UserError) as caught:
        service_alert_document(service, load_catalog(FIXTURE))
    assert str(caught.value) == ("services/svc.yaml: postgres dependencies 'orders-db' and 'copy-db' have the same "
                                 "selector; give each a selector that matches only its own instance")


def test_unknown_technology_is_a_user_error() -> None:
    service = svc(1, "    - {type: mongodb, name: docs}\n")
    with pytest.raises(UserError) as caught:
        service_alert_document(service, load_catalog(FIXTURE))
    assert str(caught.value) == ("services/svc.yaml: unknown technology 'mongodb'; "
                                 "'nthlayer catalog list' shows the known ones")
    with pytest.raises(UserError):
        catalog_paths(service, FIXTURE)


def test_catalog_paths_lists_only_used_files() -> None:
    assert catalog_paths(svc(1, CACHE), FIXTURE) == [os.path.join(FIXTURE, "redis.yaml")]
    assert catalog_paths(svc(1), FIXTURE) == []


def test_service_without_dependencies_gets_an_empty_rule_file() -> None:
    files = service_alert_files(svc(1), load_catalog(FIXTURE), "o")
    assert files == {"o/alerts.rules.yaml": b"# Generated by nthlayer from services/svc.yaml \xe2\x80\x94 do not edit.\n"
                                      b"groups: []\n"}


# --- the command --------------------------------------------------------------------------------

def test_cli_generate_alerts(run_cli, tmp_path: Path) -> None:
    args = ("generate-alerts", str(GOLDEN_SPEC), "--catalog", FIXTURE, "--output", str(tmp_path))
    code, out, err = run_cli(*args)
    assert (code, err) == (0, "")
    assert out == f"postgres: 3 alerts\nredis: 3 alerts\nwrote {tmp_path}/alerts.rules.yaml (6 alerts)\n"
    assert run_cli(*args)[1].endswith(f"unchanged {tmp_path}/alerts.rules.yaml (6 alerts)\n")
    code, _, _ = run_cli(*args, "--runbook-url", "https://rb.example/x")
    assert code == 0
    assert "runbook_url: https://rb.example/x/RedisDown" in (tmp_path / "alerts.rules.yaml").read_text()


def test_cli_generate_alerts_to_stdout(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """'--output -' writes the rule file to stdout (as generate-slo does), not into a folder named '-'."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("generate-alerts", str(GOLDEN_SPEC), "--catalog", FIXTURE, "--output", "-")
    assert (code, err) == (0, "")
    run_cli("generate-alerts", str(GOLDEN_SPEC), "--catalog", FIXTURE, "--output", str(tmp_path / "file"))
    assert out == (tmp_path / "file" / "alerts.rules.yaml").read_text()
    assert not (tmp_path / "-").exists()
    code, out, err = run_cli("generate-alerts", str(GOLDEN_SPEC), "--output", "-", "--check")
    assert (code, out) == (64, "")
    assert err.splitlines()[-1] == ("nthlayer generate-alerts: error: --check runs promtool on the written file; "
                                    "with --output - nothing is written")


@requires_promtool
def test_cli_generate_alerts_check(run_cli, tmp_path: Path) -> None:
    code, out, _ = run_cli("generate-alerts", str(GOLDEN_SPEC), "--catalog", FIXTURE, "--output", str(tmp_path),
                           "--check")
    assert code == 0
    assert out.endswith("promtool check rules: ok\n")


def test_cli_errors(run_cli, tmp_path: Path) -> None:
    spec_path = tmp_path / "svc.yaml"
    spec_path.write_text("service: svc\ntier: 1\nteam: core\ndependencies:\n  technologies:\n"
                         "    - {type: redds, name: cache}\n", encoding="utf-8")
    assert run_cli("generate-alerts", str(spec_path), "--catalog", FIXTURE, "--output", str(tmp_path)) == (
        1, "", f"nthlayer generate-alerts: error: unknown technology 'redds' (did you mean 'redis'?) in catalog "
               f"{FIXTURE}; 'nthlayer catalog list' shows the known ones\n")
    spec_path.write_text("service: svc\ntier: 7\nteam: core\n", encoding="utf-8")
    code, out, err = run_cli("generate-alerts", str(spec_path), "--catalog", FIXTURE)
    assert (code, out) == (1, "")
    assert err.startswith(f"{spec_path}:2:7: /tier: ")
    assert run_cli("generate-alerts", str(GOLDEN_SPEC), "--runbook-url", "runbooks") == (
        1, "", "nthlayer generate-alerts: error: --runbook-url 'runbooks' is not an http(s) URL\n")


# --- PromQL scoping and lint helpers ------------------------------------------------------------

SEL = (("cluster", "=", "orders"), ("instance", "=~", "db-[0-9]+"))


@pytest.mark.parametrize(("expr", "expected"), [
    ("pg_up == 0", 'pg_up{cluster="orders",instance=~"db-[0-9]+"} == 0'),
    ('rate(x_total{code=~"5.."}[5m] offset 1h)',
     'rate(x_total{code=~"5..",cluster="orders",instance=~"db-[0-9]+"}[5m] offset 1h)'),
    ("max_over_time(rate(x_total[5m])[1h:1m])",
     'max_over_time(rate(x_total{cluster="orders",instance=~"db-[0-9]+"}[5m])[1h:1m])'),
    ("absent(up)", 'absent(up{cluster="orders",instance=~"db-[0-9]+"})'),
    ('{__name__="up"} @ 100', '{__name__="up",cluster="orders",instance=~"db-[0-9]+"} @ 100.000'),
    ('a / on (instance) group_left (version) b', 'a{cluster="orders",instance=~"db-[0-9]+"} / on (instance) '
                                                 'group_left (version) b{cluster="orders",instance=~"db-[0-9]+"}'),
    ('a{cluster="orders"} > 1 and b', 'a{cluster="orders",instance=~"db-[0-9]+"} > 1 and '
                                      'b{cluster="orders",instance=~"db-[0-9]+"}'),
    ('label_replace(up, "host", "$1", "instance", "(.*):\\\\d+")',
     'label_replace(up{cluster="orders",instance=~"db-[0-9]+"}, "host", "$1", "instance", "(.*):\\\\d+")'),
    ("vector(1)", "vector(1)"),
])
def test_scope_injects_into_every_selector(expr: str, expected: str) -> None:
    assert scope(expr, SEL) == expected


def test_scope_escapes_values_the_parser_would_print_raw() -> None:
    result = scope('up{path="a\\"b"}', (("instance", "=~", "db-\\d+"), ("note", "=", 'say "hi"\n')))
    assert result == 'up{path="a\\"b",instance=~"db-\\\\d+",note="say \\"hi\\"\\n"}'
    node = selectors(parse(result))[0]
    assert [(m.name, m.value) for m in node.matchers.matchers] == [
        ("path", 'a"b'), ("instance", "db-\\d+"), ("note", 'say "hi"\n')]


def test_scope_without_matchers_keeps_text_and_rejects_bad_regex() -> None:
    assert scope("  sum(up)  by (job)\n", ()) == "sum(up)  by (job)"
    with pytest.raises(PromQLError):
        scope("up", (("instance", "=~", "("),))


_label = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(lambda s: s != "__name__")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_label, st.sampled_from(["=", "!="]), st.text(max_size=12)), min_size=1, max_size=3,
                unique_by=lambda m: m[0]))
def test_scope_round_trips_any_label_value(matchers: list[tuple[str, str, str]]) -> None:
    expr = 'sum by (le) (rate(h_bucket{le!="+Inf"}[5m])) / on () group_left count(up offset 5m)'
    result = scope(expr, tuple(matchers))
    for node in selectors(parse(result)):
        found = [(m.name, str(m.op), m.value) for m in node.matchers.matchers]
        for label, op, value in matchers:
            assert (label, str(parse(f'x{{a{op}"b"}}').matchers.matchers[0].op), value) in found


def test_metric_names_and_raw_counters() -> None:
    assert metric_names('rate(a_total[5m]) / b + {__name__="c"}') == ({"a_total", "b", "c"}, [])
    assert raw_counters("a_total > 0 and rate(b_total[5m]) > 0 and c_count > 3 and absent(d_sum) and "
                        "histogram_quantile(0.9, e_bucket) and changes(f_total[1h]) > 0", ["c_count"]) == [
        "a_total", "e_bucket"]
    assert raw_counters("histogram_quantile(0.9, sum by (le) (rate(e_bucket[5m])))") == []


@requires_promtool
def test_every_real_catalog_rule_scopes_to_valid_promql(tmp_path: Path) -> None:
    """All of rules_catalog/, each technology scoped with awkward values, passes promtool check rules."""
    catalog = load_catalog(str(ROOT / "rules_catalog"))
    deps = "".join(f"    - {{type: {t}, name: {t}-main, selector: {{cluster: 'blue \"x\"', instance: '=~{t}-\\d+:.*'}}}}\n"
                   for t in sorted(catalog))
    service = svc(1, deps)
    files = service_alert_files(service, catalog, str(tmp_path))
    (tmp_path / "alerts.rules.yaml").write_bytes(files[str(tmp_path / "alerts.rules.yaml")])
    result = subprocess.run(["promtool", "check", "rules", str(tmp_path / "alerts.rules.yaml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    total = sum(len(t.rules) for t in catalog.values())
    assert f"SUCCESS: {total} rules found" in result.stdout
