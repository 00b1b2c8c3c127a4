"""The operator's reconcile logic against a fake Kubernetes API server (tests/k8s_fake.py: TLS on 127.0.0.1,
bodies checked against the CRDs), and deploy/crd.yaml against the spec's JSON Schema."""
from __future__ import annotations

import copy
import glob
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from generators.catalog import default_catalog_dir, load_technologies
from generators.crd_schema import CrdValidator, load_crd
from generators.k8s_crd import API_VERSION, KIND, crd_yaml, service_reliability_crd, structural, structural_problems
from generators.kubernetes import KubernetesDefaults, kubernetes_documents
from generators.spec import load_schema, load_spec
from nthlayer.integrations.kubernetes import Connection, KubernetesApi, KubernetesError
from nthlayer.ops.reconcile import cleanup, desired_objects, reconcile
from tests.conftest import ROOT, UPDATE_GOLDEN
from tests.k8s_fake import FakeKubernetes

TOKEN = "test-token-0f3a"
NS = "payments"
CATALOG = default_catalog_dir()
DEFAULTS = KubernetesDefaults(labels=(("release", "kube-prometheus-stack"),))
SPEC = {"service": "payment-api", "tier": 1, "team": "payments", "pagerduty": {"service_id": "PXXXXXX"},
        "dependencies": {"technologies": [{"type": "postgres", "name": "payments-db",
                                           "selector": {"cluster": "payments-db"}}]}}


def our_crd() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy" / "crd.yaml").read_text())


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeKubernetes]:
    crds = [(load_crd("monitoring.coreos.com_prometheusrules.yaml"), "v1"),
            (load_crd("monitoring.coreos.com_alertmanagerconfigs.yaml"), "v1alpha1"),
            (our_crd(), "v1alpha1")]  # the committed file, as `kubectl apply -f deploy/crd.yaml` installs it
    with FakeKubernetes(TOKEN, str(tmp_path), crds, namespaces=("default", NS)) as server:
        yield server


@pytest.fixture
def api(fake: FakeKubernetes) -> KubernetesApi:
    return KubernetesApi(Connection(server=fake.url, token=TOKEN, ca_file=fake.ca_file))


def create_resource(api: KubernetesApi, spec: dict[str, Any], name: str = "payment-api") -> dict[str, Any]:
    body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": NS}, "spec": spec}
    return api._call("POST", api._url(API_VERSION, KIND, NS), json=body)


def current(api: KubernetesApi, name: str = "payment-api") -> dict[str, Any]:
    found = api.get(API_VERSION, KIND, NS, name)
    assert found is not None
    return found


def conditions(body: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in body["status"]["conditions"]}


# --- deploy/crd.yaml: one source of truth ------------------------------------------------------------

def test_committed_crd_is_the_one_made_from_the_spec_schema() -> None:
    made = crd_yaml()
    path = ROOT / "deploy" / "crd.yaml"
    if UPDATE_GOLDEN:
        path.write_bytes(made)
    assert path.read_bytes() == made, "deploy/crd.yaml is stale: NTHLAYER_UPDATE_GOLDEN=1 (or nthlayer operator --print-crd)"


def test_the_crd_schema_is_structural() -> None:
    schema = our_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert structural_problems(schema) == []
    # The checker is not vacuous: the spec schema itself breaks those rules.
    raw = structural_problems(load_schema("service.schema.json"))
    assert any("$ref is not allowed" in p for p in raw) and any("invalid perl operator" in p for p in raw)
    assert any("exclusiveMinimum must be a boolean" in p for p in raw)


def test_every_property_of_the_spec_schema_is_in_the_crd() -> None:
    def keys(node: dict[str, Any], root: dict[str, Any], where: str = "") -> set[str]:
        if "$ref" in node:
            node = structural(node, root)  # resolved
        found = {where} if where else set()
        for name, child in node.get("properties", {}).items():
            found |= keys(child, root, f"{where}/{name}")
        if isinstance(node.get("items"), dict):
            found |= keys(node["items"], root, f"{where}/items")
        return found

    schema = load_schema("service.schema.json")
    crd_spec = our_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert keys(crd_spec, crd_spec) == keys(schema, schema)


SPEC_FILES = sorted(glob.glob(str(ROOT / "services" / "*.yaml")) + glob.glob(str(ROOT / "tests" / "golden" / "*" /
                                                                                 "services" / "*.yaml")))


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_every_valid_spec_is_a_valid_service_reliability(path: str) -> None:
    """The CRD never refuses what the spec schema accepts (it may accept more: the operator refuses it)."""
    validator = CrdValidator(our_crd(), "v1alpha1")
    body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "x", "namespace": NS},
            "spec": yaml.safe_load(Path(path).read_text())}
    assert validator.problems(body) == []


def test_the_crd_refuses_what_the_schema_refuses() -> None:
    validator = CrdValidator(our_crd(), "v1alpha1")
    bad = {**SPEC, "tier": 4, "observability": {"slo_overrides": {"availability": 1}}, "service": "Bad_Name"}
    body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "x", "namespace": NS}, "spec": bad}
    assert validator.problems(body) == [
        "/spec/observability/slo_overrides/availability: 1 is not allowed: it must be less than 1",
        "/spec/service: 'Bad_Name' does not match the pattern ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        "/spec/tier: '4' is not one of 1, 2, 3, critical, standard, low",
    ]


# --- reconcile ----------------------------------------------------------------------------------------

def test_desired_objects_are_the_builds_manifests_plus_an_owner(api: KubernetesApi) -> None:
    body = create_resource(api, SPEC)
    desired = desired_objects(body, DEFAULTS, CATALOG)
    assert desired.problems == []
    service = load_spec("services/payment-api.yaml", yaml.safe_dump(SPEC).encode()).service
    built = kubernetes_documents(service, load_technologies(CATALOG, service.technology_types),
                                 KubernetesDefaults(namespace=NS, labels=DEFAULTS.labels))
    [(stream, _multi)] = built.values()  # out/<service>/k8s.yaml: the PrometheusRule, the AlertmanagerConfig
    assert len(desired.objects) == len(stream) == 2
    for obj, document in zip(desired.objects, stream):
        expected = copy.deepcopy(document)
        expected["metadata"]["ownerReferences"] = [{"apiVersion": API_VERSION, "kind": KIND, "name": "payment-api",
                                                    "uid": body["metadata"]["uid"], "controller": True,
                                                    "blockOwnerDeletion": True}]
        assert obj == expected


def test_create_then_nothing_to_do(fake: FakeKubernetes, api: KubernetesApi) -> None:
    create_resource(api, SPEC)
    outcome = reconcile(api, current(api), DEFAULTS, CATALOG)
    assert outcome.changes == ["created PrometheusRule/payments/payment-api",
                               "created AlertmanagerConfig/payments/payment-api"]
    body = current(api)
    assert conditions(body) == {"Ready": ("True", "Reconciled", "2 objects up to date"),
                                "InvalidSpec": ("False", "Valid", "")}
    assert body["status"]["observedGeneration"] == 1
    rules = fake.all("PrometheusRule")
    assert [r["metadata"]["name"] for r in rules] == ["payment-api"]
    assert rules[0]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert [g["name"] for g in rules[0]["spec"]["groups"]] == [
        "slo:payment-api:availability", "slo:payment-api:latency", "payment-api/postgres/payments-db"]
    routes = fake.all("AlertmanagerConfig")
    assert routes[0]["spec"]["receivers"][1]["pagerdutyConfigs"][0]["routingKey"] == {
        "name": "nthlayer-pagerduty", "key": "payment-api.key"}
    writes = len(fake.writes())
    again = reconcile(api, current(api), DEFAULTS, CATALOG)
    assert again.changes == [] and len(fake.writes()) == writes  # idempotent: not one write


def test_a_spec_change_updates_the_owned_objects(fake: FakeKubernetes, api: KubernetesApi) -> None:
    create_resource(api, SPEC)
    reconcile(api, current(api), DEFAULTS, CATALOG)
    body = current(api)
    body["spec"] = {**SPEC, "tier": 3, "dependencies": {}}
    api.replace(body)
    outcome = reconcile(api, current(api), DEFAULTS, CATALOG)
    assert outcome.changes == ["updated PrometheusRule/payments/payment-api",
                               "updated AlertmanagerConfig/payments/payment-api"]
    rule = fake.all("PrometheusRule")[0]
    assert [g["name"] for g in rule["spec"]["groups"]] == ["slo:payment-api:availability", "slo:payment-api:latency"]
    assert rule["metadata"]["labels"]["nthlayer.dev/tier"] == "3"
    assert current(api)["status"]["observedGeneration"] == 2


def test_a_renamed_service_replaces_its_objects(fake: FakeKubernetes, api: KubernetesApi) -> None:
    create_resource(api, SPEC)
    reconcile(api, current(api), DEFAULTS, CATALOG)
    body = current(api)
    body["spec"] = {**SPEC, "service": "payments-api"}
    api.replace(body)
    outcome = reconcile(api, current(api), DEFAULTS, CATALOG)
    assert sorted(outcome.changes) == [
        "created AlertmanagerConfig/payments/payments-api", "created PrometheusRule/payments/payments-api",
        "deleted AlertmanagerConfig/payments/payment-api", "deleted PrometheusRule/payments/payment-api"]
    assert [r["metadata"]["name"] for r in fake.all("PrometheusRule")] == ["payments-api"]


def test_an_invalid_spec_sets_invalid_spec_and_keeps_the_last_objects(fake: FakeKubernetes,
                                                                       api: KubernetesApi) -> None:
    create_resource(api, SPEC)
    reconcile(api, current(api), DEFAULTS, CATALOG)
    before = fake.all("PrometheusRule")
    body = current(api)
    # What the CRD lets through (unknown keys reach us; a threshold's bucket is a semantic check) and only
    # the spec validation refuses: the same words as `nthlayer validate`.
    body["spec"] = {**SPEC, "runbook": "https://x", "observability": {"slo_overrides": {"latency": 300}},
                    "dependencies": {"technologies": [{"type": "postgress", "name": "db"}]}}
    api.replace(body)
    outcome = reconcile(api, current(api), DEFAULTS, CATALOG)
    assert outcome.changes == []
    assert conditions(current(api)) == {
        "Ready": ("False", "InvalidSpec", "the spec is invalid; owned objects are left as they were"),
        "InvalidSpec": ("True", "InvalidSpec", "\n".join([
            "/runbook: unknown key 'runbook'; did you mean 'runbook_url'? (allowed keys: datadog, dependencies, deploy, "
            "description, kubernetes, labels, observability, pagerduty, runbook_url, service, slos, team, tech_stack, tier, type)",
        ])),
    }
    assert fake.all("PrometheusRule") == before
    # Fixed, but for a semantic problem and an unknown technology: each reported in turn.
    body = current(api)
    body["spec"] = {**SPEC, "observability": {"slo_overrides": {"latency": 300}}}
    api.replace(body)
    reconcile(api, current(api), DEFAULTS, CATALOG)
    assert conditions(current(api))["InvalidSpec"][2] == (
        "/observability/slo_overrides/latency: latency threshold 300 ms is not a bucket boundary of the default "
        "latency buckets (nearest: 250 ms and 500 ms); set observability.slo_overrides.latency to a boundary or "
        "declare observability.sli.latency_buckets")
    body = current(api)
    body["spec"] = {**SPEC, "dependencies": {"technologies": [{"type": "postgress", "name": "db"}]}}
    api.replace(body)
    reconcile(api, current(api), DEFAULTS, CATALOG)
    assert conditions(current(api))["InvalidSpec"] == (
        "True", "InvalidSpec", "/dependencies/technologies/0/type: unknown technology 'postgress' (not in the "
                               "operator's catalog)")
    # Fixed: Ready again, and the objects follow.
    body = current(api)
    body["spec"] = {**SPEC, "tier": 2}
    api.replace(body)
    reconcile(api, current(api), DEFAULTS, CATALOG)
    assert conditions(current(api))["Ready"][0] == "True"
    assert fake.all("PrometheusRule")[0]["metadata"]["labels"]["nthlayer.dev/tier"] == "2"


def test_a_namespace_other_than_its_own_is_an_invalid_spec(api: KubernetesApi) -> None:
    create_resource(api, {**SPEC, "kubernetes": {"namespace": "monitoring"}})
    reconcile(api, current(api), DEFAULTS, CATALOG)
    assert conditions(current(api))["InvalidSpec"][2] == (
        "/kubernetes/namespace: 'monitoring' is not this ServiceReliability's namespace 'payments': the objects "
        "it owns are created in its own namespace")


def test_an_object_it_does_not_own_is_left_alone(fake: FakeKubernetes, api: KubernetesApi) -> None:
    service = load_spec("services/payment-api.yaml", yaml.safe_dump(SPEC).encode()).service
    docs = kubernetes_documents(service, load_technologies(CATALOG, service.technology_types),
                                KubernetesDefaults(namespace=NS))
    applied = fake.put_object(docs["k8s.yaml"][0][0])  # the PrometheusRule, as if Flux had applied out/
    create_resource(api, SPEC)
    outcome = reconcile(api, current(api), DEFAULTS, CATALOG)
    assert outcome.changes == ["created AlertmanagerConfig/payments/payment-api"]
    assert conditions(current(api))["Ready"] == (
        "False", "Conflict", "PrometheusRule/payments/payment-api exists and is not owned by this ServiceReliability")
    assert fake.all("PrometheusRule") == [applied]


def test_a_hand_edited_owned_object_is_repaired(fake: FakeKubernetes, api: KubernetesApi) -> None:
    create_resource(api, SPEC)
    reconcile(api, current(api), DEFAULTS, CATALOG)
    rule = api.get("monitoring.coreos.com/v1", "PrometheusRule", NS, "payment-api")
    rule["spec"]["groups"] = rule["spec"]["groups"][:1]
    api.replace(rule)
    assert reconcile(api, current(api), DEFAULTS, CATALOG).changes == ["updated PrometheusRule/payments/payment-api"]
    assert len(fake.all("PrometheusRule")[0]["spec"]["groups"]) == 3


def test_delete_removes_what_it_owns_and_nothing_else(fake: FakeKubernetes, api: KubernetesApi) -> None:
    create_resource(api, SPEC)
    create_resource(api, {**SPEC, "service": "user-service", "team": "identity"}, name="user-service")
    reconcile(api, current(api), DEFAULTS, CATALOG)
    reconcile(api, current(api, "user-service"), DEFAULTS, CATALOG)
    assert len(fake.all("PrometheusRule")) == 2
    assert cleanup(api, current(api)) == ["AlertmanagerConfig/payments/payment-api",
                                          "PrometheusRule/payments/payment-api"]
    assert [r["metadata"]["name"] for r in fake.all("PrometheusRule")] == ["user-service"]
    assert [r["metadata"]["name"] for r in fake.all("AlertmanagerConfig")] == ["user-service"]
    assert cleanup(api, current(api)) == []


def test_the_fake_refuses_what_the_api_server_would(api: KubernetesApi) -> None:
    """The fake's checks are real: a manifest the CRD refuses, a lost update, a wrong token."""
    body = create_resource(api, SPEC)
    with pytest.raises(KubernetesError) as refused:
        create_resource(api, SPEC)
    assert refused.value.status == 409 and refused.value.reason == "AlreadyExists"
    stale = copy.deepcopy(body)
    api.replace(current(api))  # bumps the resourceVersion
    with pytest.raises(KubernetesError) as conflict:
        api.replace(stale)
    assert conflict.value.reason == "Conflict"
    bad = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
           "metadata": {"name": "x", "namespace": NS}, "spec": {"groups": [{"name": "g", "rules": [{"expr": "1",
                                                                                                  "bogus": 1}]}]}}
    with pytest.raises(KubernetesError) as invalid:
        api.create(bad)
    assert invalid.value.status == 422 and "'bogus' was unexpected" in str(invalid.value)
    stranger = KubernetesApi(Connection(server=api.connection.server, token="wrong", ca_file=api.connection.ca_file))
    with pytest.raises(KubernetesError) as unauthorized:
        stranger.get(API_VERSION, KIND, NS, "payment-api")
    assert unauthorized.value.status == 401


def test_example_resource_in_deploy_is_valid() -> None:
    example = yaml.safe_load((ROOT / "deploy" / "examples" / "payment-api.yaml").read_text())
    assert CrdValidator(our_crd(), "v1alpha1").problems(example) == []
    raw = yaml.safe_dump(example["spec"]).encode()
    assert load_spec("deploy/examples/payment-api.yaml", raw).service.name == "payment-api"


def test_structural_translation_is_deterministic() -> None:
    schema = load_schema("service.schema.json")
    assert service_reliability_crd(schema) == service_reliability_crd(copy.deepcopy(schema))


# --- kopf itself, against the fake ---------------------------------------------------------------------

def _wait(check: Any, what: str, timeout: float = 30.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _replace_spec(api: KubernetesApi, spec: dict[str, Any]) -> None:
    """Change the resource's spec as a user's client does: on 409 Conflict (kopf wrote the object between
    our read and our write: its status or its own annotations), read it again and retry."""
    for _ in range(20):
        body = current(api)
        body["spec"] = spec
        try:
            api.replace(body)
            return
        except KubernetesError as exc:
            if exc.status != 409:
                raise
    raise AssertionError("the resource kept changing under the test's writes")


def test_kopf_runs_the_handlers_end_to_end(fake: FakeKubernetes, api: KubernetesApi) -> None:
    """`nthlayer operator`'s registry under kopf's real watch loop: create, spec change, delete."""
    import threading

    import kopf

    from nthlayer.cli.commands.operator import make_registry, operator_settings

    registry = make_registry(api, DEFAULTS, CATALOG, resync=3600)
    stop, ready = threading.Event(), threading.Event()
    settings = operator_settings()
    settings.watching.server_timeout = 5  # reconnect often: a stop is noticed quickly
    thread = threading.Thread(target=kopf.run, kwargs=dict(
        registry=registry, settings=settings, standalone=True, namespaces=[NS], stop_flag=stop, ready_flag=ready))
    thread.start()
    try:
        assert ready.wait(30), "kopf did not start"
        create_resource(api, SPEC)
        body = _wait(lambda: (b := current(api)).get("status", {}).get("conditions") and b, "the first reconcile")
        assert conditions(body)["Ready"][0] == "True"
        assert "nthlayer.dev/owned-objects" in body["metadata"]["finalizers"]  # kopf's, for the delete handler
        assert [r["metadata"]["name"] for r in fake.all("PrometheusRule")] == ["payment-api"]

        _replace_spec(api, {**SPEC, "tier": 3})
        _wait(lambda: fake.all("PrometheusRule")[0]["metadata"]["labels"]["nthlayer.dev/tier"] == "3",
              "the update")
        _wait(lambda: current(api)["status"]["observedGeneration"] == 2, "the status of generation 2")

        _replace_spec(api, {**SPEC, "tierr": 3})
        _wait(lambda: current(api)["status"]["observedGeneration"] == 3, "the status of generation 3")
        assert conditions(current(api))["InvalidSpec"][:2] == ("True", "InvalidSpec")
        assert conditions(current(api))["InvalidSpec"][2].startswith("/tierr: unknown key 'tierr'; did you mean 'tier'?")
        assert fake.all("PrometheusRule")[0]["metadata"]["labels"]["nthlayer.dev/tier"] == "3"  # kept as it was

        api.delete(API_VERSION, KIND, NS, "payment-api")
        _wait(lambda: api.get(API_VERSION, KIND, NS, "payment-api") is None, "the finalizer to be released")
        assert fake.all("PrometheusRule") == [] and fake.all("AlertmanagerConfig") == []
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


# --- the command ----------------------------------------------------------------------------------------

def test_print_crd_is_the_committed_crd(run_cli: Any) -> None:
    code, out, err = run_cli("operator", "--print-crd")
    assert (code, err) == (0, "")
    assert out.encode() == (ROOT / "deploy" / "crd.yaml").read_bytes()


def test_operator_needs_namespaces_and_credentials(run_cli: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli("operator") == (1, "", "nthlayer operator: error: name the namespaces to watch (--namespace NS, "
                                          "repeatable) or --all-namespaces\n")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.chdir(tmp_path)
    assert run_cli("operator", "--namespace", "payments") == (
        1, "", "nthlayer operator: error: no Kubernetes credentials: not in a cluster (no service account) and no "
               "kubeconfig ($KUBECONFIG or ~/.kube/config)\n")
    (tmp_path / "nthlayer.toml").write_text('[kubernetes]\nlabels = { "nthlayer.dev/team" = "x" }\n')
    code, out, err = run_cli("operator", "--all-namespaces")
    assert code == 1 and err == ("nthlayer.toml:2:1: /kubernetes/labels/nthlayer.dev~1team: Kubernetes label "
                                 "'nthlayer.dev/team' is set by nthlayer and cannot be overridden\n")
