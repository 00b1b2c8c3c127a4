"""Which labels the exporters' metrics carry: the catalog's metric_labels, their lint, and the
validate warning for a dependency selector label that silences alerts."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from generators.catalog import load_catalog, load_technology
from generators.catalog_labels import declared_labels, silenced_rules
from generators.errors import SpecErrors
from generators.spec import load_spec
from generators.tech_alerts import reads_target_series, service_alert_document
from tests.conftest import ROOT, requires_promtool

CATALOG = ROOT / "rules_catalog"
INVENTORY = (ROOT / "services" / "inventory-api.yaml").read_text()


def _inventory(tmp_path: Path, selector: str) -> Path:
    """services/inventory-api.yaml with another selector for its haproxy dependency."""
    assert "selector: {job: inventory-haproxy}" in INVENTORY
    text = INVENTORY.replace("selector: {job: inventory-haproxy}", f"selector: {selector}")
    path = tmp_path / "inventory-api.yaml"
    path.write_text(text)
    return path


# --- the warning, as validate prints it --------------------------------------------------------

def test_proxy_selector_names_the_haproxy_alerts_it_silences(run_cli, tmp_path: Path) -> None:
    path = _inventory(tmp_path, "{proxy: inventory}")
    code, out, err = run_cli("validate", "--catalog", str(CATALOG), str(path))
    assert code == 0
    assert err.splitlines() == [
        f"{path}:20:18: /dependencies/technologies/2/selector/proxy: warning: haproxy 'inventory-lb': the exporter "
        "puts no 'proxy' label on the metrics of HaproxyProcessConnectionsNearLimit, HaproxyStickTableNearlyFull: "
        "these alerts can never fire for this dependency, unless your scrape config adds 'proxy' to every target; "
        "select it by instance, job or a label your scrape config adds"]
    assert out == "1 spec valid (1 service, 1 warning)\n"


@pytest.mark.parametrize("selector", [
    "{job: inventory-haproxy}",                     # a target label
    "{cluster: eu-1}",                              # a label the user's scrape config attaches
    "{proxy: '=~.*'}", "{proxy: '!=inventory'}",    # match series without the label too
    "{instance: '=~inventory-lb-[0-9]+:8405', cluster: eu-1}",
])
def test_selectors_that_reach_every_alert_pass(run_cli, tmp_path: Path, selector: str) -> None:
    path = _inventory(tmp_path, selector)
    assert run_cli("validate", "--catalog", str(CATALOG), str(path)) == (0, "1 spec valid (1 service)\n", "")


def test_the_examples_validate_without_warnings(run_cli) -> None:
    assert run_cli("validate", "--catalog", str(CATALOG), str(ROOT / "services")) == (
        0, "11 specs valid (10 services, 1 composite)\n", "")


def test_a_silenced_tier_rule_is_named_only_when_the_tier_gets_it(run_cli, tmp_path: Path) -> None:
    # Tier 3 gets critical rules only: HaproxyStickTableNearlyFull (a warning) is not among its alerts.
    path = _inventory(tmp_path, "{proxy: inventory}")
    path.write_text(path.read_text().replace("tier: 2", "tier: 3").replace(
        "observability:\n", "observability:\n  slo_overrides:\n    latency: 1000\n"))
    code, _out, err = run_cli("validate", "--catalog", str(CATALOG), str(path))
    assert code == 0
    assert "the metrics of HaproxyProcessConnectionsNearLimit: this alert can never fire for this dependency" in err


# --- which rules a label silences --------------------------------------------------------------

DATA = {"metric_labels": {"a_*": ["proxy"], "b_total": [], "c": ["name"]}}


def _rule(name: str, expr: str, metrics: list[str]) -> dict:
    return {"name": name, "expr": expr, "metrics": metrics}


@pytest.mark.parametrize(("expr", "metrics", "silenced"), [
    ("a_x > 0", ["a_x"], False),
    ("c > 0", ["c"], True),
    ("rate(b_total[5m]) / a_x > 0.1", ["a_x", "b_total"], True),         # one side empty: no match
    ("a_x > 0 or c > 0", ["a_x", "c"], False),                           # the other side still fires
    ("c > 0 or rate(b_total[5m]) > 0", ["b_total", "c"], True),
    ("a_x > 0 unless c", ["a_x", "c"], False),                           # nothing to subtract
    ("c unless a_x", ["a_x", "c"], True),
    ("absent(c)", ["c"], False),                                         # fires on nothing: not silent
    ("sum by (name) (c) > time()", ["c"], True),
    ("max_over_time(c[1h:5m]) > scalar(a_x)", ["a_x", "c"], True),
])
def test_silenced_follows_the_expression(expr: str, metrics: list[str], silenced: bool) -> None:
    assert silenced_rules(DATA, [_rule("R", expr, metrics)], ("proxy", "=", "inventory")) == (["R"] if silenced else [])


def test_labels_the_exporter_never_sets_silence_nothing() -> None:
    rule = _rule("R", "c > 0", ["c"])
    assert silenced_rules(DATA, [rule], ("cluster", "=", "eu")) == []       # a target label for all we know
    assert silenced_rules(DATA, [rule], ("proxy", "=~", "inv.*|")) == []     # matches the empty value
    assert silenced_rules(DATA, [rule], ("proxy", "!~", "inv.*")) == []
    assert silenced_rules(DATA, [rule], ("proxy", "=~", "inv.+")) == ["R"]


def test_longest_prefix_wins_and_target_series_carry_no_exporter_label() -> None:
    data = load_technology(str(CATALOG / "haproxy.yaml")).data
    assert declared_labels(data, "haproxy_backend_current_queue") == {"proxy"}
    assert declared_labels(data, "haproxy_backend_http_responses_total") == {"proxy", "code"}
    assert declared_labels(data, "haproxy_process_max_connections") == frozenset()
    assert declared_labels(data, "up") == frozenset()
    assert declared_labels(data, "nginx_up") is None


# --- the declarations cannot rot ----------------------------------------------------------------

def test_every_shipped_technology_declares_its_metric_labels() -> None:
    catalog = load_catalog(str(CATALOG))
    missing = sorted(name for name, tech in catalog.items() if "metric_labels" not in tech.data)
    assert missing == []


LINTED = """\
apiVersion: nthlayer.dev/v1
kind: TechnologyRules
technology: lb
display_name: LB
category: proxy
exporter: {name: lb_exporter}
target_labels: [node]
metric_labels:
  lb_backend_*: [proxy]
  lb_backend_responses_total: [code, proxy]
  lb_process_*: []
rules:
  - name: LbErrors
    expr: sum by (proxy) (rate(lb_backend_responses_total{code="5xx"}[5m])) > 1
    for: 0m
    severity: warning
    tiers: [1]
    summary: s
    description: d
    metrics: [lb_backend_responses_total]
    tests:
      - name: errors
        series:
          - {series: 'lb_backend_responses_total{instance="a",job="lb",node="n1",proxy="p",code="5xx"}', values: '0+120x10'}
        alerts: [{proxy: p}]
      - name: none
        series:
          - {series: 'lb_backend_responses_total{instance="a",job="lb",proxy="p",code="5xx"}', values: '0x10'}
        alerts: []
  - name: LbFull
    expr: lb_process_conns / lb_process_max > 0.9
    for: 0m
    severity: warning
    tiers: [1]
    summary: s
    description: d
    metrics: [lb_process_conns, lb_process_max]
    tests:
      - name: full
        series:
          - {series: 'lb_process_conns{instance="a",job="lb"}', values: '95x10'}
          - {series: 'lb_process_max{instance="a",job="lb"}', values: '100x10'}
        alerts: [{instance: a, job: lb}]
      - name: room
        series:
          - {series: 'lb_process_conns{instance="a",job="lb"}', values: '5x10'}
          - {series: 'lb_process_max{instance="a",job="lb"}', values: '100x10'}
        alerts: []
"""


def _lint(tmp_path: Path, old: str = "", new: str = "") -> list[str]:
    path = tmp_path / "lb.yaml"
    assert old in LINTED
    path.write_text(LINTED.replace(old, new, 1))
    try:
        load_technology(str(path))
    except SpecErrors as exc:
        return [line.replace(str(tmp_path) + "/", "") for line in exc.lines()]
    return []


def test_lint_accepts_consistent_declarations_and_target_labels(tmp_path: Path) -> None:
    assert _lint(tmp_path) == []  # node: a target label of this technology's scrape config


def test_lint_refuses_a_metric_without_a_declaration(tmp_path: Path) -> None:
    assert _lint(tmp_path, "  lb_process_*: []\n") == [
        "lb.yaml:36:14: /rules/1/metrics: LbFull: metric_labels does not declare lb_process_conns, "
        "lb_process_max (metric name or prefix*)"]


def test_lint_refuses_a_label_the_declaration_lacks(tmp_path: Path) -> None:
    assert _lint(tmp_path, "lb_backend_responses_total: [code, proxy]", "lb_backend_responses_total: [proxy]") == [
        "lb.yaml:14:11: /rules/0/expr: LbErrors: expr reads lb_backend_responses_total by 'code', which "
        "metric_labels does not declare for it",
        "lb.yaml:24:22: /rules/0/tests/0/series/0/series: LbErrors: a test series has lb_backend_responses_total "
        "by 'code', which metric_labels does not declare for it",
        "lb.yaml:28:22: /rules/0/tests/1/series/0/series: LbErrors: a test series has lb_backend_responses_total "
        "by 'code', which metric_labels does not declare for it",
    ]


def test_lint_checks_aggregation_labels(tmp_path: Path) -> None:
    assert _lint(tmp_path, 'sum by (proxy) (rate(lb_backend_responses_total{code="5xx"}',
                 'sum by (server) (rate(lb_backend_responses_total{code="5xx"}')[0] == (
        "lb.yaml:14:11: /rules/0/expr: LbErrors: expr reads lb_backend_responses_total by 'server', which "
        "metric_labels does not declare for it")


def test_lint_refuses_a_scrape_label_the_file_does_not_name(tmp_path: Path) -> None:
    assert _lint(tmp_path, "target_labels: [node]\n") == [
        "lb.yaml:23:22: /rules/0/tests/0/series/0/series: LbErrors: a test series has lb_backend_responses_total "
        "by 'node', which metric_labels does not declare for it"]


def test_lint_accepts_a_discovery_block_on_declared_labels(tmp_path: Path) -> None:
    block = "discovery:\n  metric: lb_process_conns\n  instance_label: job\n  service_label: node\nrules:\n"
    assert _lint(tmp_path, "rules:\n", block) == []


def test_lint_refuses_a_discovery_metric_or_label_the_file_does_not_declare(tmp_path: Path) -> None:
    assert _lint(tmp_path, "rules:\n", "discovery:\n  metric: lb_up\n  instance_label: job\nrules:\n") == [
        "lb.yaml:13:11: /discovery/metric: discovery metric lb_up is not declared in metric_labels"]
    assert _lint(tmp_path, "rules:\n", "discovery:\n  metric: lb_backend_up\n  instance_label: cluster\nrules:\n") == [
        "lb.yaml:13:3: /discovery: discovery service_label 'client_service' is neither a label metric_labels "
        "declares for lb_backend_up nor a target label (instance, job or one of target_labels)",
        "lb.yaml:14:19: /discovery/instance_label: discovery instance_label 'cluster' is neither a label "
        "metric_labels declares for lb_backend_up nor a target label (instance, job or one of target_labels)"]


def test_the_shipped_discovery_blocks_name_labels_their_metrics_carry() -> None:
    # load_catalog lints every file; these technologies declare discovery (docs/discovery.md).
    catalog = load_catalog(str(CATALOG))
    assert sorted(name for name, tech in catalog.items() if "discovery" in tech.data) == [
        "elasticsearch", "go-runtime", "jvm", "kafka", "memcached", "mongodb", "mysql", "nodejs", "postgres",
        "rabbitmq", "redis"]


def test_a_file_without_declarations_is_not_linted_and_warns_about_nothing(tmp_path: Path) -> None:
    start, end = LINTED.index("target_labels:"), LINTED.index("rules:")
    assert _lint(tmp_path, LINTED[start:end]) == []
    data = load_technology(str(tmp_path / "lb.yaml")).data
    assert silenced_rules(data, data["rules"], ("proxy", "=", "p")) == []


# --- target-down rules ------------------------------------------------------------------------

def test_no_rule_guesses_a_job_name() -> None:
    guessed = [(name, rule["name"]) for name, tech in load_catalog(str(CATALOG)).items() for rule in tech.rules
               if "job=~" in rule["expr"].replace(" ", "") or "job!~" in rule["expr"].replace(" ", "")]
    assert guessed == []


def _target_down_rules() -> list[tuple[str, dict]]:
    return [(name, rule) for name, tech in sorted(load_catalog(str(CATALOG)).items()) for rule in tech.rules
            if reads_target_series(rule)]


def test_a_dependency_without_selector_gets_no_target_down_rule(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text("service: svc\ntier: 1\nteam: core\nobservability:\n  slo_overrides:\n    latency: 1000\n"
                    "dependencies:\n  technologies:\n    - {type: etcd, name: kv}\n"
                    "pagerduty: {escalation_emails: [oncall@example.com]}\n")
    code, _out, err = run_cli("validate", "--catalog", str(CATALOG), str(path))
    assert code == 0
    assert err.splitlines() == [
        f"{path}:2:1: policy tier1-runbook: warning: tier-1 service 'svc' has no runbook_url: its pages would "
        "link no runbook",
        f"{path}:9:7: /dependencies/technologies/0: warning: etcd 'kv' has no selector, so EtcdMemberDown is "
        "left out: unscoped, a rule on 'up' fires for every scrape target in Prometheus that is down; add a "
        "selector that matches this dependency's targets",
        # The default policy dependency-selector says the same of every alert (docs/policies.md).
        f"{path}:9:7: policy dependency-selector: warning: dependency etcd 'kv' has no selector: its alerts "
        "would fire for every etcd instance Prometheus scrapes"]
    service = load_spec(str(path)).service
    rules = [r["alert"] for g in service_alert_document(service, load_catalog(str(CATALOG)))["groups"]
             for r in g["rules"]]
    assert "EtcdMemberDown" not in rules and "EtcdNoLeader" in rules
    assert not any(r["expr"].startswith("up") for g in service_alert_document(
        service, load_catalog(str(CATALOG)))["groups"] for r in g["rules"])


@requires_promtool
def test_target_down_rules_fire_only_for_the_dependency_targets(tmp_path: Path) -> None:
    """Every rule on 'up', scoped by a dependency selector, fires for that dependency's target and stays
    silent for any other target that is down (promtool evaluates the generated rules)."""
    cases = _target_down_rules()
    assert len(cases) >= 20
    catalog = load_catalog(str(CATALOG))
    types = sorted({name for name, _rule in cases})
    # Job names that say nothing of the technology: the selector alone must decide.
    jobs = {t: f"dependency-{n}" for n, t in enumerate(types)}
    deps = "".join(f"    - {{type: {t}, name: {t}-dep, selector: {{job: {jobs[t]}}}}}\n" for t in types)
    spec_text = (f"service: svc\ntier: 1\nteam: core\nobservability:\n  slo_overrides:\n    latency: 1000\n"
                 f"dependencies:\n  technologies:\n{deps}")
    service = load_spec("svc.yaml", spec_text.encode()).service
    document = service_alert_document(service, catalog)
    rules = {(g["name"].split("/")[1], r["alert"]): r for g in document["groups"] for r in g["rules"]}
    tests = []
    for tech, rule in cases:
        entry = rules[(tech, rule["name"])]
        # The rule's own firing case, once with the dependency's job and once with another job.
        firing = next(case for case in rule["tests"] if case["alerts"])
        for job, fires in ((jobs[tech], True), ("someone-else", False)):
            series = [{"series": _with_job(s["series"], job), "values": s["values"]} for s in firing["series"]]
            expected = [{"exp_labels": {**{k: v for k, v in alert.items()}, "job": job, **entry["labels"]}}
                        for alert in firing["alerts"]] if fires else []
            tests.append({"interval": firing.get("interval", "1m"), "input_series": series,
                          "alert_rule_test": [{"eval_time": firing.get("eval_time", _default_eval(rule)),
                                               "alertname": rule["name"], "exp_alerts": expected}]})
        (tmp_path / f"{tech}-{rule['name']}.rules.yaml").write_text(yaml.safe_dump(
            {"groups": [{"name": tech, "rules": [{k: v for k, v in entry.items() if k != "annotations"}]}]}))
    for index, test in enumerate(tests):
        tech, rule = cases[index // 2]
        (tmp_path / f"t{index}.test.yaml").write_text(yaml.safe_dump({
            "rule_files": [f"{tech}-{rule['name']}.rules.yaml"], "evaluation_interval": "1m", "tests": [test]}))
    result = subprocess.run(["promtool", "test", "rules", *sorted(p.name for p in tmp_path.glob("t*.test.yaml"))],
                            cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _with_job(series: str, job: str) -> str:
    import re

    assert 'job="' in series, series
    return re.sub(r'job="[^"]*"', f'job="{job}"', series)


def _default_eval(rule: dict) -> str:
    from generators.catalog import default_eval_time

    return default_eval_time(rule)
