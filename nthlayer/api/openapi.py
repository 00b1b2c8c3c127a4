"""The OpenAPI 3.1 document the server publishes at /api/v1/openapi.json.

Request schemas are the JSON Schema files the validator uses (generators/schemas): the service schema
for specs, the api-*.schema.json files for the other bodies. They are loaded here, not copied: their
``$defs`` move under components/schemas (an OpenAPI document resolves ``#/...`` from its own root).
"""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from generators.spec import load_schema

REQUEST_SCHEMAS = {
    "Service": "service.schema.json",
    "Deploy": "api-deploy.schema.json",
    "GateRequest": "api-gate.schema.json",
    "CorrelateRequest": "api-correlate.schema.json",
    "GenerateRequest": "api-generate.schema.json",
    "ApiKeyRequest": "api-key.schema.json",
}
PROBLEM = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _embed(name: str, schema: dict[str, Any], into: dict[str, Any]) -> None:
    """Put a JSON Schema file's schema (and its $defs, renamed ``<name>_<def>``) into ``into``."""
    schema = copy.deepcopy(schema)
    for key in ("$schema", "$id"):
        schema.pop(key, None)
    definitions = schema.pop("$defs", {})

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (f"#/components/schemas/{name}_{v.removeprefix('#/$defs/')}"
                        if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/") else rewrite(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    into[name] = rewrite(schema)
    for key, value in definitions.items():
        into[f"{name}_{key}"] = rewrite(value)


_NUMBER_OR_NULL = {"type": ["number", "null"]}
_TIME = {"type": "string"}
RESPONSE_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object", "required": ["type", "title", "status"],
        "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                       "detail": {"type": "string"},
                       "errors": {"type": "array", "items": {"type": "string"},
                                  "description": "one `file:line:col: /pointer: message` line per problem, "
                                                 "as nthlayer validate prints them"}},
    },
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"enum": ["ok", "unavailable"]},
                              "checks": {"type": "object", "additionalProperties": {"type": "string"}}}},
    "ServiceSummary": {"type": "object", "required": ["name", "path"],
                       "properties": {"name": {"type": "string"}, "path": {"type": "string"}}},
    "ServiceList": {"type": "object", "required": ["services"],
                    "properties": {"services": {"type": "array", "items": _ref("ServiceSummary")}}},
    "ServiceDocument": {"type": "object", "required": ["name", "path", "etag", "spec"],
                        "properties": {"name": {"type": "string"}, "path": {"type": "string"},
                                       "etag": {"type": "string"}, "spec": _ref("Service")}},
    "Deleted": {"type": "object", "required": ["name", "path", "deleted"],
                "properties": {"name": {"type": "string"}, "path": {"type": "string"}, "deleted": {"const": True}}},
    "Slo": {"type": "object", "required": ["slo", "objective", "window", "budget_minutes"],
            "properties": {"slo": {"type": "string"}, "objective": {"type": "string"}, "window": {"type": "string"},
                           "budget_minutes": {"type": "string"}, "threshold_ms": {"type": ["string", "null"]}}},
    "SloList": {"type": "object", "required": ["service", "slos"],
                "properties": {"service": {"type": "string"}, "slos": {"type": "array", "items": _ref("Slo")}}},
    "BuildResult": {"type": "object", "required": ["services", "exit_code", "output"],
                    "properties": {"services": {"type": "array", "items": {"type": "string"}},
                                   "exit_code": {"type": "integer"}, "output": {"type": "string"}}},
    "Budget": {"type": "object", "required": ["service", "slo", "status", "evaluated_at"],
               "properties": {"service": {"type": "string"}, "tier": {"type": "integer"}, "slo": {"type": "string"},
                              "objective": {"type": "number"}, "window_days": {"type": "integer"},
                              "evaluated_at": _TIME, "budget_minutes": {"type": "number"},
                              "error_ratio": _NUMBER_OR_NULL, "consumed_minutes": _NUMBER_OR_NULL,
                              "remaining_minutes": _NUMBER_OR_NULL, "remaining_percent": _NUMBER_OR_NULL,
                              "burn_rate_1h": _NUMBER_OR_NULL, "status": {"type": "string"},
                              "composite": {"type": "boolean",
                                            "description": "a composite SLO (docs/composites.md): service and "
                                                           "slo are both its name"}}},
    "BudgetList": {"type": "object", "required": ["budgets"],
                   "properties": {"budgets": {"type": "array", "items": _ref("Budget")}}},
    "DeployRecorded": {"type": "object", "required": ["service", "version", "deployed_at", "recorded", "text"],
                       "properties": {"service": {"type": "string"}, "version": {"type": "string"},
                                      "kind": {"enum": ["deploy", "config", "flag", "infra"]},
                                      "commit": {"type": ["string", "null"]}, "deployed_at": _TIME,
                                      "recorded": {"type": "boolean",
                                                   "description": "false: this deploy was already recorded"},
                                      "text": {"type": "string"}}},
    "GateVerdict": {"type": "object",
                    "required": ["service", "tier", "decision", "exit_code", "reasons", "warnings", "budgets",
                                 "recorded", "text"],
                    "properties": {"service": {"type": "string"}, "tier": {"type": "integer"},
                                   "decision": {"enum": ["approve", "block", "unknown"]},
                                   "exit_code": {"enum": [0, 2, 3]},
                                   "reasons": {"type": "array", "items": {"type": "string"}},
                                   "warnings": {"type": "array", "items": {"type": "string"}},
                                   "budgets": {"type": "array", "items": _ref("Budget")},
                                   "suspect_deploys": {"type": "array", "items": {"type": "object"}},
                                   "recorded": {"type": "boolean"}, "text": {"type": "string"}}},
    "CorrelationResult": {"type": "object",
                          "required": ["service", "version", "time_window", "action", "incidents", "exit_code",
                                       "text"],
                          "properties": {"service": {"type": "string"}, "version": {"type": "string"},
                                         "time_window": {"type": "string"},
                                         "action": {"enum": ["BLOCK", "INVESTIGATE", "NONE"]},
                                         "incidents": {"type": "array", "items": {"type": "object"}},
                                         "kind": {"enum": ["deploy", "config", "flag", "infra"]},
                                         "metrics": {"type": "object"},
                                         "exit_code": {"enum": [0, 2]}, "text": {"type": "string"}}},
    "ApiKey": {"type": "object", "required": ["id", "name", "scopes", "created_at", "last_used_at", "revoked_at"],
               "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                              "scopes": {"type": "array", "items": {"type": "string"}}, "created_at": _TIME,
                              "last_used_at": {"type": ["string", "null"]}, "revoked_at": {"type": ["string", "null"]}}},
    "ApiKeyList": {"type": "object", "required": ["keys"],
                   "properties": {"keys": {"type": "array", "items": _ref("ApiKey")}}},
    "ApiKeyCreated": {"type": "object", "required": ["key", "secret"],
                      "properties": {"key": _ref("ApiKey"),
                                     "secret": {"type": "string", "description": "shown once, never stored"}}},
}

_NAME_PARAM = {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"}


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(schema)}}


def _op(summary: str, scope: str | None, ok: tuple[int, str] | None, body: str | None = None,
        parameters: list[dict[str, Any]] | None = None, yaml_body: bool = False) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {
        "default": {"description": "an error: the problem and, for invalid input, one line per problem",
                    "content": {PROBLEM: {"schema": _ref("Problem")}}}}}
    if ok is not None:
        status, schema = ok
        operation["responses"][str(status)] = {"description": summary, "content": _json(schema)}
    if scope is None:
        operation["security"] = []
    else:
        operation["security"] = [{"apiKey": [scope]}, {"oidc": [scope]}]
        operation["description"] = f"Scope: `{scope}`."
    if body is not None:
        content = _json(body)
        if yaml_body:
            content["application/yaml"] = {"schema": _ref(body)}  # the spec file's text, written as sent
        operation["requestBody"] = {"required": True, "content": content}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _also(operation: dict[str, Any], status: int, schema: str) -> dict[str, Any]:
    """A second success status with its own body."""
    operation["responses"][str(status)] = {"description": operation["summary"], "content": _json(schema)}
    return operation


def _path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or _NAME_PARAM}


_IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"},
             "description": "the ETag of the version read; a changed file answers 412"}
_AT = {"name": "at", "in": "query", "required": False, "schema": {"type": "string"},
       "description": "evaluate at this instant (RFC 3339 or unix seconds; default: now)"}


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    from nthlayer import __version__
    from nthlayer.ops.api_keys import SCOPES

    schemas: dict[str, Any] = {}
    for name, file in REQUEST_SCHEMAS.items():
        _embed(name, load_schema(file), schemas)
    schemas.update(copy.deepcopy(RESPONSE_SCHEMAS))
    health = {"summary": "", "security": [], "responses": {
        "200": {"description": "ok", "content": _json("Health")},
        "default": {"description": "not ready", "content": {PROBLEM: {"schema": _ref("Problem")}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "NthLayer API", "version": __version__,
                 "description": "Reliability as code over HTTP: service specs, builds, error budgets, the deploy "
                                "gate. Errors are RFC 9457 problem documents. See docs/api.md."},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer",
                           "description": "an API key from `nthlayer api-key create` (also accepted in X-API-Key); "
                                          "scopes: " + "; ".join(f"{k}: {v}" for k, v in SCOPES.items())},
                "oidc": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                         "description": "an OAuth2/OIDC access token checked against the server's JWKS; "
                                        "scopes from its `scope` claim"},
            },
        },
        "paths": {
            "/healthz": {"get": {**health, "summary": "the process is up"}},
            "/readyz": {"get": {**health, "summary": "the state database and Prometheus answer"}},
            "/api/v1/services": {
                "get": _op("list services", "services:read", (200, "ServiceList")),
                "post": _op("create a service spec", "services:write", (201, "ServiceDocument"), "Service",
                            yaml_body=True),
            },
            "/api/v1/services/{name}": {
                "get": _op("a service spec", "services:read", (200, "ServiceDocument"),
                           parameters=[_path_param("name")]),
                "put": _op("replace a service spec", "services:write", (200, "ServiceDocument"), "Service",
                           parameters=[_path_param("name"), _IF_MATCH], yaml_body=True),
                "delete": _op("delete a service spec", "services:write", (200, "Deleted"),
                              parameters=[_path_param("name"), _IF_MATCH]),
            },
            "/api/v1/slos/generate": {
                "post": _op("build services (as nthlayer build service:NAME)", "services:write",
                            (200, "BuildResult"), "GenerateRequest")},
            "/api/v1/slos/{service}": {
                "get": _op("a service's SLOs", "services:read", (200, "SloList"),
                           parameters=[_path_param("service")])},
            "/api/v1/error-budgets": {
                "get": _op("error budgets of every service, or of one", "budgets:read", (200, "BudgetList"),
                           parameters=[{"name": "service", "in": "query", "required": False,
                                        "schema": _NAME_PARAM}, _AT])},
            "/api/v1/error-budgets/{slo}": {
                "get": _op("one SLO's error budget; the SLO is named SERVICE-KIND (payment-api-availability)",
                           "budgets:read", (200, "BudgetList"),
                           parameters=[_path_param("slo", {"type": "string",
                                                           "pattern": "^[a-z0-9][a-z0-9-]*-(availability|latency)$"}),
                                       _AT])},
            "/api/v1/deploys": {"post": _also(
                _op("record a deploy (201; 200 when it was already recorded)", "deploys:write",
                    (201, "DeployRecorded"), "Deploy"), 200, "DeployRecorded")},
            "/api/v1/deploys/check": {
                "post": _op("the deploy gate's verdict (exit_code as check-deploy's)", "deploys:write",
                            (200, "GateVerdict"), "GateRequest")},
            "/api/v1/deploys/correlate": {
                "post": _op("incidents a deploy may have caused (exit_code as correlate-deploy's)",
                            "deploys:write", (200, "CorrelationResult"), "CorrelateRequest")},
            "/api/v1/api-keys": {
                "get": _op("list API keys (never their secrets)", "keys:admin", (200, "ApiKeyList")),
                "post": _op("create an API key", "keys:admin", (201, "ApiKeyCreated"), "ApiKeyRequest"),
            },
            "/api/v1/api-keys/{id}": {
                "delete": _op("revoke an API key", "keys:admin", (200, "ApiKey"),
                              parameters=[_path_param("id", {"type": "string", "pattern": "^[0-9a-f]{12}$"})])},
        },
    }
