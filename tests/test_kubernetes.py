"""Kubernetes output: PrometheusRule and AlertmanagerConfig per service, checked against the Prometheus
Operator's own CRD schemas (vendored), promtool, and the routing of alertmanager.yml."""
from __future__ import annotations

import copy
import glob
import os
from pathlib import Path

import pytest
import yaml

from generators.alertmanager import alertmanager_config
from generators.catalog import default_catalog_dir, load_catalog, load_technologies
from generators.crd_schema import load_crd, manifest_problems, metadata_problems, to_json_schema, validator_for
from generators.k8s_names import object_name
from generators.kubernetes import (KubernetesDefaults, alertmanager_config_resource, defaults_from_table,
                                   kubernetes_documents, project_kustomization, prometheus_rule, rule_file_groups)
from generators.render import render_files
from generators.slo_rules import slo_rule_files
from generators.spec import load_spec
from generators.tech_alerts import service_alert_files
from nthlayer.integrations.promtool import check_rules
from tests.conftest import ROOT, UPDATE_GOLDEN, requires_promtool

EXAMPLES = sorted(glob.glob(str(ROOT / "services" / "*.yaml")))
FIXTURE_CATALOG = str(ROOT / "tests" / "fixtures" / "catalog")
GOLDEN = ROOT / "tests" / "golden" / "k8s"


def spec(text: str, path: str = "services/svc.yaml"):
    return load_spec(path, text.encode("utf-8")).service


def example(path: str):
    service = load_spec(os.path.relpath(path, ROOT), Path(path).read_bytes()).service
    return service, load_technologies(default_catalog_dir(), service.technology_types)


def documents(service, catalog, defaults: KubernetesDefaults = KubernetesDefaults()) -> dict:
    """The objects of out/<service>/k8s.yaml by kind."""
    [(stream, multi)] = kubernetes_documents(service, catalog, defaults).values()
    assert multi and [doc["kind"] for doc in stream] == ["PrometheusRule", "AlertmanagerConfig"]
    return {doc["kind"]: doc for doc in stream}


# --- every example service, judged by the CRDs -----------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: Path(p).stem)
def test_example_manifests_satisfy_the_prometheus_operator_crds(path: str) -> None:
    service, catalog = example(path)
    docs = documents(service, catalog)
    # Each as the API server receives it: rendered, then read back.
    rendered = render_files(kubernetes_documents(service, catalog, KubernetesDefaults()), service.source, "k8s")
    manifests = list(yaml.safe_load_all(rendered["k8s/k8s.yaml"]))
    assert manifests == [docs["PrometheusRule"], docs["AlertmanagerConfig"]]
    for manifest in manifests:
        assert manifest_problems(manifest) == [], manifest["kind"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: Path(p).stem)
def test_nested_routes_satisfy_the_route_schema(path: str) -> None:
    """The CRD keeps child routes as free-form JSON (x-kubernetes-preserve-unknown-fields) and the operator
    parses each as a Route: hold every child to the top route's schema."""
    from jsonschema import Draft7Validator

    service, catalog = example(path)
    route_schema = validator_for("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig").schema[
        "properties"]["spec"]["properties"]["route"]
    children = documents(service, catalog)["AlertmanagerConfig"]["spec"]["route"]["routes"]
    assert children
    for child in children:
        assert [e.message for e in Draft7Validator(route_schema).iter_errors(child)] == []


def test_the_crd_schema_refuses_what_the_api_server_would() -> None:
    """The translation is not vacuous: each kind of mistake is caught, as the server would catch it."""
    service, catalog = example(str(ROOT / "services" / "payment-api.yaml"))
    rule = documents(service, catalog)["PrometheusRule"]
    bad = copy.deepcopy(rule)
    bad["spec"]["groups"][0]["rules"][0]["exprs"] = "typo"  # pruned by the server: refused here
    bad["spec"]["groups"][1]["name"] = bad["spec"]["groups"][0]["name"]  # list-map key clash
    bad["spec"]["groups"][0]["rules"][-1]["for"] = "5 minutes"
    bad["metadata"]["name"] = "Payment_API"
    assert manifest_problems(bad) == [
        "/metadata/name: 'Payment_API' must be lowercase letters, digits, '-' and '.', starting and ending "
        "with a letter or digit",
        "/spec/groups/0/rules/0: Additional properties are not allowed ('exprs' was unexpected)",
        f"/spec/groups/0/rules/{len(rule['spec']['groups'][0]['rules']) - 1}/for: '5 minutes' does not match "
        "the pattern ^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
        "/spec/groups: duplicate entry for keys name: 'slo:payment-api:availability'",
    ]
    route = documents(service, catalog)["AlertmanagerConfig"]
    route["spec"]["route"]["matchers"][0]["matchType"] = "=="
    route["spec"]["receivers"][1]["pagerdutyConfigs"][0]["routingKey"] = "inline-secret"
    assert manifest_problems(route) == [
        "/spec/receivers/1/pagerdutyConfigs/0/routingKey: expected a mapping, found a str ('inline-secret')",
        "/spec/route/matchers/0/matchType: '==' is not one of !=, =, =~, !~",
    ]


def test_openapi_extensions_become_json_schema() -> None:
    schema = to_json_schema({
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True},
            "maybe": {"type": "string", "nullable": True},
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            "count": {"type": "integer", "format": "int32"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "empty": {"type": "object"},
        },
    })
    props = schema["properties"]
    assert props["port"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert props["maybe"] == {"type": ["string", "null"]}
    assert props["tags"]["uniqueItems"] is True
    assert props["ratio"] == {"type": "number", "exclusiveMinimum": 0}
    assert props["count"] == {"type": "integer", "minimum": -2**31, "maximum": 2**31 - 1}
    assert "additionalProperties" not in props["free"]
    assert props["empty"]["additionalProperties"] is False  # a bare object is pruned to {} by the server
    assert schema["additionalProperties"] is False


def test_cel_rules_are_evaluated_where_a_manifest_reaches_them() -> None:
    validator = validator_for("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig")
    (rule,) = validator.rules  # externalId needs roleArn, on an SNS receiver's sigv4
    manifest: dict = {"apiVersion": "monitoring.coreos.com/v1alpha1", "kind": "AlertmanagerConfig",
                      "metadata": {"name": "x", "namespace": "monitoring"},
                      "spec": {"receivers": [{"name": "sns", "snsConfigs": [{"sigv4": {"externalId": "e"}}]}]}}
    assert manifest_problems(manifest) == [f"/spec/receivers/0/snsConfigs/0/sigv4: {rule.message}"]
    manifest["spec"]["receivers"][0]["snsConfigs"][0]["sigv4"]["roleArn"] = "arn:aws:iam::1:role/r"
    assert manifest_problems(manifest) == []


def test_the_vendored_crds_are_the_versions_we_target() -> None:
    rules = load_crd("monitoring.coreos.com_prometheusrules.yaml")
    assert rules["metadata"]["annotations"]["operator.prometheus.io/version"] == "0.93.0"
    readme = (ROOT / "generators" / "schemas" / "crds" / "README.md").read_text()
    for name in os.listdir(ROOT / "generators" / "schemas" / "crds"):
        if name.endswith(".yaml"):
            assert name in readme and "Apache-2.0" in readme


# --- the same rules as the rule files --------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: Path(p).stem)
def test_prometheus_rule_holds_exactly_the_rule_files_groups(path: str) -> None:
    service, catalog = example(path)
    files = {**slo_rule_files(service, "p"), **service_alert_files(service, catalog, "p")}
    expected = []
    for name in ("p/slo.rules.yaml", "p/alerts.rules.yaml"):
        if name in files:
            expected += yaml.safe_load(files[name])["groups"]
    rule = documents(service, catalog)["PrometheusRule"]
    assert rule["spec"]["groups"] == expected
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert exprs == [r["expr"] for g in expected for r in g["rules"]]  # the same strings, byte for byte


@requires_promtool
def test_promtool_accepts_the_groups_extracted_from_every_manifest(tmp_path: Path) -> None:
    paths, counts = [], {}
    for path in EXAMPLES:
        service, catalog = example(path)
        rendered = render_files(kubernetes_documents(service, catalog, KubernetesDefaults()), service.source, "k8s")
        manifest = next(yaml.safe_load_all(rendered["k8s/k8s.yaml"]))  # the PrometheusRule
        target = tmp_path / f"{service.name}.rules.yaml"
        target.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}, sort_keys=False))
        paths.append(str(target))
        counts[str(target)] = sum(len(g["rules"]) for g in manifest["spec"]["groups"])
    result = check_rules(paths)
    assert result.ok, result.output
    for target, count in counts.items():
        assert f"Checking {target}\n  SUCCESS: {count} rules found" in result.output


# --- the same routing as alertmanager.yml ----------------------------------------------------------

def _matchers(entries: list[dict]) -> list[str]:
    return [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in entries]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: Path(p).stem)
def test_alertmanager_config_routes_as_alertmanager_yml_does(path: str) -> None:
    service, catalog = example(path)
    config = alertmanager_config([service])
    own = config["route"]["routes"][0]
    resource = documents(service, catalog)["AlertmanagerConfig"]["spec"]
    assert _matchers(resource["route"]["matchers"]) == own["matchers"]
    assert resource["route"]["receiver"] == own["receiver"]
    assert resource["route"]["groupBy"] == own["group_by"]
    for field, camel in (("group_wait", "groupWait"), ("group_interval", "groupInterval"),
                         ("repeat_interval", "repeatInterval")):
        assert resource["route"][camel] == config["route"][field]  # inherited in alertmanager.yml
    assert [(c["receiver"], _matchers(c["matchers"]), c.get("repeatInterval")) for c in resource["route"]["routes"]] == [
        (c["receiver"], c["matchers"], c.get("repeat_interval")) for c in own["routes"]]
    named = {c["receiver"] for c in resource["route"]["routes"]} | {resource["route"]["receiver"]}
    assert {r["name"] for r in resource["receivers"]} == named
    assert _matchers(resource["inhibitRules"][0]["sourceMatch"]) == config["inhibit_rules"][0]["source_matchers"]


def test_routing_key_comes_from_a_secret_and_is_never_inlined() -> None:
    service = spec("service: pay\ntier: 1\nteam: payments\npagerduty: {service_id: PABC123}\n")
    resource = alertmanager_config_resource(service, KubernetesDefaults(routing_key_secret="pd-keys"))
    configs = [c for r in resource["spec"]["receivers"] for c in r.get("pagerdutyConfigs", [])]
    assert [c["routingKey"] for c in configs] == [{"name": "pd-keys", "key": "pay.key"}] * 2
    assert not any("serviceKey" in c or "routing_key_file" in c for c in configs)


def test_a_service_off_pagerduty_routes_to_nobody() -> None:
    service = spec("service: quiet\ntier: 3\nteam: t\n")
    resource = alertmanager_config_resource(service, KubernetesDefaults())
    assert [r["name"] for r in resource["spec"]["receivers"]] == ["nthlayer-unrouted", "nthlayer-info"]
    assert manifest_problems(resource) == []


# --- placement: namespace, labels, names ----------------------------------------------------------

def test_spec_settings_override_the_project_defaults() -> None:
    defaults, problems = defaults_from_table({"namespace": "observability",
                                              "labels": {"release": "kube-prometheus-stack", "env": "prod"}})
    assert problems == []
    plain = spec("service: a\ntier: 2\nteam: t\n")
    own = spec("service: b\ntier: 2\nteam: t\nkubernetes: {namespace: payments, labels: {env: staging}}\n")
    assert prometheus_rule(plain, [], defaults)["metadata"] == {
        "name": "a", "namespace": "observability",
        "labels": {"app.kubernetes.io/managed-by": "nthlayer", "env": "prod", "nthlayer.dev/service": "a",
                   "nthlayer.dev/team": "t", "nthlayer.dev/tier": "2", "release": "kube-prometheus-stack"}}
    assert prometheus_rule(own, [], defaults)["metadata"]["namespace"] == "payments"
    assert prometheus_rule(own, [], defaults)["metadata"]["labels"]["env"] == "staging"
    assert prometheus_rule(plain, [], KubernetesDefaults())["metadata"]["namespace"] == "monitoring"


def test_project_table_problems_are_pointers() -> None:
    _, problems = defaults_from_table({"namespace": "Prod", "labels": {"nthlayer.dev/team": "x", "ok": "a b"},
                                       "routing_key_secret": "Keys!", "namespaces": "x"})
    assert problems == [
        ("/kubernetes/labels/nthlayer.dev~1team", "Kubernetes label 'nthlayer.dev/team' is set by nthlayer and "
                                                  "cannot be overridden"),
        ("/kubernetes/labels/ok", "'a b' is not a Kubernetes label value: at most 63 letters, digits, '-', '_' or "
                                  "'.', starting and ending with a letter or digit"),
        ("/kubernetes/namespace", "'Prod' is not a Kubernetes namespace: use lowercase letters, digits and hyphens, "
                                  "start and end with a letter or digit, at most 63 characters"),
        ("/kubernetes/namespaces", "unknown key 'namespaces'; did you mean 'namespace'? (allowed keys: labels, "
                                   "namespace, routing_key_secret)"),
        ("/kubernetes/routing_key_secret", "'Keys!' is not a Kubernetes Secret name (a DNS-1123 subdomain)"),
    ]


@pytest.mark.parametrize("name", ["a", "0", "123", "x" * 63, "a-b-c", "team1-svc-9"])
def test_odd_but_valid_service_names_make_valid_objects(name: str) -> None:
    service = spec(f"service: '{name}'\ntier: 3\nteam: t\n")
    docs = documents(service, {})
    for kind in ("PrometheusRule", "AlertmanagerConfig"):
        assert docs[kind]["metadata"]["name"] == name
        assert manifest_problems(docs[kind]) == []


@pytest.mark.parametrize("text", ["Payment_API", "-lead", "trail-", "", "a" * 64, "ünïcode", "a..b", "UPPER"])
def test_object_names_are_always_dns_labels(text: str) -> None:
    name = object_name(text)
    assert metadata_problems({"name": name, "namespace": "ns"}) == []
    assert len(name) <= 63
    assert object_name(text) == name  # stable
    assert object_name(name) == name  # a valid name is kept


def test_distinct_odd_names_stay_distinct() -> None:
    assert object_name("A_b") != object_name("a-b")
    assert object_name("x" * 70) != object_name("x" * 71)


def test_project_kustomization_is_sorted_and_unique() -> None:
    assert project_kustomization(["b", "a", "b"])["resources"] == ["a/k8s.yaml", "b/k8s.yaml"]


# --- golden -----------------------------------------------------------------------------------------

def test_golden_payment_api_manifests() -> None:
    service = load_spec("services/payment-api.yaml",
                        (ROOT / "tests" / "golden" / "tech-alerts" / "services" / "payment-api.yaml").read_bytes()).service
    defaults = KubernetesDefaults(namespace="observability", labels=(("release", "kube-prometheus-stack"),))
    files = render_files(kubernetes_documents(service, load_catalog(FIXTURE_CATALOG), defaults), service.source,
                         "out/payment-api")
    for path, data in files.items():
        golden = GOLDEN / os.path.relpath(path, "out")
        if UPDATE_GOLDEN:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_bytes(data)
        assert golden.read_bytes() == data, f"{golden} differs (NTHLAYER_UPDATE_GOLDEN=1 to update)"
    assert sorted(files) == ["out/payment-api/k8s.yaml"] and os.listdir(GOLDEN / "payment-api") == ["k8s.yaml"]


def test_rule_file_groups_keep_file_order() -> None:
    service = spec("service: s\ntier: 1\nteam: t\ndependencies:\n  technologies:\n"
                   "    - {type: postgres, name: db, selector: {cluster: db}}\n")
    catalog = load_catalog(FIXTURE_CATALOG)
    names = [g["name"] for g in rule_file_groups(service, catalog)]
    assert names == ["slo:s:availability", "slo:s:latency", "s/postgres/db"]
