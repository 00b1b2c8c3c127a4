"""Kubernetes manifests for the Prometheus Operator: a PrometheusRule and an AlertmanagerConfig per service.

Pure. Nothing here renders rules or routes of its own:

- the ``PrometheusRule``'s ``spec.groups`` are the groups of the service's two rule files, in file order —
  the very dicts :func:`generators.slo_rules.rule_groups` and
  :func:`generators.tech_alerts.service_alert_document` return, so every expression is the same string;
- the ``AlertmanagerConfig`` is :func:`generators.alertmanager.alertmanager_config` for this one service,
  translated field by field to the CRD's camelCase form. Its PagerDuty receivers take the routing key from
  a Kubernetes Secret (``routingKey: {name, key}``), never inline: the Secret named by
  ``[kubernetes] routing_key_secret`` (default ``nthlayer-pagerduty``), key ``<service>.key`` — the file
  name ``setup-pagerduty --write-routing-keys DIR`` writes, so
  ``kubectl create secret generic nthlayer-pagerduty --from-file=DIR`` makes it.

Files: out/<service>/k8s.yaml, the PrometheusRule then the AlertmanagerConfig as one two-document stream
(kubectl and kustomize read streams; one file instead of a folder of three is two thirds fewer file
operations a service); out/kustomization.yaml lists every service's file. The project kustomization sits
at the root of out/ because kustomize refuses plain files outside its kustomization's folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from generators import slo_rules, tech_alerts
from generators.alertmanager import Routing, alertmanager_config, key_file_name
from generators.k8s_names import MANAGED_BY, OWN_PREFIX, reserved_label
from generators.model import Service

PROMETHEUS_RULE_API = "monitoring.coreos.com/v1"
ALERTMANAGER_CONFIG_API = "monitoring.coreos.com/v1alpha1"
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
FILE = "k8s.yaml"  # out/<service>/k8s.yaml
KUSTOMIZATION_FILE = "kustomization.yaml"  # out/kustomization.yaml
DEFAULT_NAMESPACE = "monitoring"
DEFAULT_ROUTING_KEY_SECRET = "nthlayer-pagerduty"


@dataclass(frozen=True)
class KubernetesDefaults:
    """The project's ``[kubernetes]`` table of nthlayer.toml (docs/kubernetes.md)."""

    namespace: str = DEFAULT_NAMESPACE
    labels: tuple[tuple[str, str], ...] = ()
    routing_key_secret: str = DEFAULT_ROUTING_KEY_SECRET


def settings_schema() -> dict[str, Any]:
    """The JSON Schema of the ``[kubernetes]`` table: the spec schema's own definitions of a namespace
    and of Kubernetes labels (one source of truth), and the Secret's name."""
    from generators.spec import load_schema

    defs = load_schema("service.schema.json")["$defs"]
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "namespace": defs["k8s_namespace"],
            "labels": defs["k8s_labels"],
            "routing_key_secret": {
                "type": "string", "maxLength": 253,
                "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$(?!\n)",
                "x-messages": {"pattern": "'{instance}' is not a Kubernetes Secret name (a DNS-1123 subdomain)"},
            },
        },
    }


def defaults_from_table(table: Mapping[str, Any]) -> tuple[KubernetesDefaults, list[tuple[str, str]]]:
    """The defaults a ``[kubernetes]`` table sets, and its problems as (JSON pointer, message) pairs
    under ``/kubernetes`` (nthlayer.config locates them in the file)."""
    if not table:  # no table, or an empty one: nothing to check (and no 0.1 s import of jsonschema in a build)
        return KubernetesDefaults(), []
    from jsonschema import Draft202012Validator

    from generators.schema_messages import describe, unknown_key
    from generators.yamlload import escape_pointer_token, pointer_of

    schema = settings_schema()
    problems: list[tuple[str, str]] = []
    for error in Draft202012Validator(schema).iter_errors(dict(table)):
        pointer = "/kubernetes" + pointer_of(error.absolute_path)
        if error.validator == "additionalProperties":
            for key in sorted(set(error.instance) - set(schema["properties"])):
                problems.append((f"{pointer}/{escape_pointer_token(key)}", unknown_key(key, sorted(schema["properties"]))))
        elif "propertyNames" in error.relative_schema_path:
            problems.append((f"{pointer}/{escape_pointer_token(str(error.instance))}", describe(error)))
        else:
            problems.append((pointer, describe(error)))
    labels = table.get("labels", {}) if isinstance(table.get("labels"), dict) else {}
    for key in sorted(labels):
        if reserved_label(key):
            problems.append((f"/kubernetes/labels/{escape_pointer_token(key)}",
                             f"Kubernetes label '{key}' is set by nthlayer and cannot be overridden"))
    if problems:
        return KubernetesDefaults(), sorted(problems)
    return KubernetesDefaults(
        namespace=table.get("namespace", DEFAULT_NAMESPACE),
        labels=tuple(sorted(labels.items())),
        routing_key_secret=table.get("routing_key_secret", DEFAULT_ROUTING_KEY_SECRET),
    ), []


def namespace_of(service: Service, defaults: KubernetesDefaults) -> str:
    """The spec's namespace, else the project's."""
    return service.kubernetes.namespace or defaults.namespace


def object_labels(service: Service, defaults: KubernetesDefaults) -> dict[str, str]:
    """The project's labels, the spec's over them, and nthlayer's own (which neither may set)."""
    labels = dict(defaults.labels)
    labels.update(service.kubernetes.labels)
    labels.update({
        MANAGED_BY: "nthlayer",
        f"{OWN_PREFIX}service": service.name,
        f"{OWN_PREFIX}team": service.team,
        f"{OWN_PREFIX}tier": str(service.tier.number),
    })
    return dict(sorted(labels.items()))


def _metadata(service: Service, defaults: KubernetesDefaults, namespace: str | None) -> dict[str, Any]:
    return {
        # A service's name is a DNS-1123 label (the spec's schema, whoever loads it: the build, the operator),
        # so it names its objects as is. Cleaning it (k8s_names.object_name) would lowercase and hash the
        # build's shape stand-in's placeholder name (generators/shapes.py), a text no substitution puts back.
        "name": service.name,
        "namespace": namespace or namespace_of(service, defaults),
        "labels": object_labels(service, defaults),
    }


def prometheus_rule(service: Service, groups: list[dict[str, Any]], defaults: KubernetesDefaults,
                    namespace: str | None = None) -> dict[str, Any]:
    """The ``PrometheusRule`` holding ``groups`` (the rule files' groups, unchanged)."""
    return {
        "apiVersion": PROMETHEUS_RULE_API,
        "kind": "PrometheusRule",
        "metadata": _metadata(service, defaults, namespace),
        "spec": {"groups": groups},
    }


def rule_file_groups(service: Service, catalog: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The groups of slo.rules.yaml, then those of alerts.rules.yaml, as their generators make them."""
    return [*slo_rules.rule_groups(service)["groups"], *tech_alerts.service_alert_document(service, catalog)["groups"]]


_MATCHER = re.compile(r'(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>=~|!~|!=|=)"(?P<value>(?:[^"\\]|\\.)*)"\Z')


def _matcher(text: str) -> dict[str, str]:
    """Alertmanager's ``name=~"value"`` as the CRD's ``{name, value, matchType}``."""
    match = _MATCHER.match(text)
    if match is None:  # alertmanager.py writes every matcher: a new shape must be taught here
        raise ValueError(f"cannot translate matcher {text!r}")
    value = re.sub(r"\\(.)", r"\1", match["value"])
    return {"name": match["name"], "value": value, "matchType": match["op"]}


_TIMINGS = (("group_wait", "groupWait"), ("group_interval", "groupInterval"), ("repeat_interval", "repeatInterval"))


def _route(route: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"receiver": route["receiver"]}
    if "group_by" in route:
        out["groupBy"] = list(route["group_by"])
    for snake, camel in _TIMINGS:
        if snake in route:
            out[camel] = route[snake]
    if "matchers" in route:
        out["matchers"] = [_matcher(text) for text in route["matchers"]]
    if route.get("routes"):
        out["routes"] = [_route(child) for child in route["routes"]]
    return out


def _pagerduty(config: Mapping[str, Any], service: str, secret: str) -> dict[str, Any]:
    return {
        "routingKey": {"name": secret, "key": key_file_name(service)},
        "sendResolved": config["send_resolved"],
        "severity": config["severity"],
        "client": config["client"],
        "description": config["description"],
        "details": [{"key": key, "value": value} for key, value in config["details"].items()],
    }


def alertmanager_config_resource(service: Service, defaults: KubernetesDefaults,
                                 namespace: str | None = None, paged: bool | None = None) -> dict[str, Any]:
    """The ``AlertmanagerConfig`` equivalent of the service's part of alertmanager.yml: its route (with
    the global route's timings and grouping, which alertmanager.yml gives it by inheritance), the
    receivers that route names, and the inhibit rule. The Prometheus Operator adds a
    ``namespace="<namespace>"`` matcher to the top route (docs/kubernetes.md says how alerts get it).
    ``paged``: whether the service is on PagerDuty, when the caller knows (else read from its spec)."""
    routing = Routing.of(service) if paged is None else \
        Routing(service.name, service.team, service.tier.number, paged, service.source)
    config = alertmanager_config([routing])
    root = config["route"]
    (own,) = root["routes"]
    top = dict(own)
    for snake, _ in _TIMINGS:
        top[snake] = root[snake]
    named = {own["receiver"], *(child["receiver"] for child in own["routes"])}
    receivers = []
    for receiver in config["receivers"]:
        if receiver["name"] not in named:
            continue
        entry: dict[str, Any] = {"name": receiver["name"]}
        if receiver.get("pagerduty_configs"):
            entry["pagerdutyConfigs"] = [_pagerduty(item, service.name, defaults.routing_key_secret)
                                         for item in receiver["pagerduty_configs"]]
        receivers.append(entry)
    inhibit = [{"sourceMatch": [_matcher(text) for text in rule["source_matchers"]],
                "targetMatch": [_matcher(text) for text in rule["target_matchers"]],
                "equal": list(rule["equal"])} for rule in config["inhibit_rules"]]
    return {
        "apiVersion": ALERTMANAGER_CONFIG_API,
        "kind": "AlertmanagerConfig",
        "metadata": _metadata(service, defaults, namespace),
        "spec": {"route": _route(top), "receivers": receivers, "inhibitRules": inhibit},
    }


def project_kustomization(services: Iterable[str]) -> dict[str, Any]:
    """out/kustomization.yaml: every service's manifests file, in name order (deterministic)."""
    return {"apiVersion": KUSTOMIZE_API, "kind": "Kustomization",
            "resources": [f"{name}/{FILE}" for name in sorted(set(services))]}


# The Service fields kubernetes_documents reads (generators.shapes templates on these alone): the rule
# files' fields and its own. Of the PagerDuty settings the routing needs only whether there are any
# (``paged``): the whole block in the shape would make each escalation list a shape of its own.
READS = slo_rules.READS | tech_alerts.READS | {"kubernetes"}


def kubernetes_documents(service: Service, catalog: Mapping[str, Any], defaults: KubernetesDefaults,
                         paged: bool | None = None) -> dict[str, tuple[Any, bool]]:
    """out/<service>/k8s.yaml as generators.shapes takes documents: {file name: (documents, multi)}, the
    PrometheusRule then the AlertmanagerConfig. ``paged``: as :func:`alertmanager_config_resource` takes it."""
    return {FILE: ([prometheus_rule(service, rule_file_groups(service, catalog), defaults),
                    alertmanager_config_resource(service, defaults, paged=paged)], True)}


__all__ = ["ALERTMANAGER_CONFIG_API", "DEFAULT_NAMESPACE", "DEFAULT_ROUTING_KEY_SECRET", "FILE", "KUSTOMIZATION_FILE",
           "KubernetesDefaults", "PROMETHEUS_RULE_API", "READS", "alertmanager_config_resource",
           "defaults_from_table", "kubernetes_documents", "namespace_of", "object_labels", "project_kustomization",
           "prometheus_rule", "rule_file_groups", "settings_schema"]
