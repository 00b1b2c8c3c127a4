"""The endpoints: each turns a request into an :mod:`nthlayer.ops` call and its result into JSON."""
from __future__ import annotations

import os
from typing import Any

from starlette.responses import Response

from generators.errors import SpecErrors, UserError
from generators.spec import load_spec
from generators.yamlload import Located
from nthlayer.api.openapi import document
from nthlayer.api.problems import HttpProblem, problem
from nthlayer.api.server import Call, parse_json, reply
from nthlayer.state.events import Deploy
from nthlayer.ops import api_keys, services as svc
from nthlayer.ops.build import BuildOutcome, build_services
from nthlayer.ops.tracking import budget_scope, track_budget
from nthlayer.ops.deploys import correlate_deploy, deploy_text
from nthlayer.ops import gate
from nthlayer.ops.health import READY, readiness
from nthlayer.state.db import format_time, instant


async def healthz(call: Call) -> Response:
    return reply({"status": "ok"})


async def readyz(call: Call) -> Response:
    checks = await call.run(readiness, call.server.store.connection, call.server.prometheus())
    ok = all(v in READY for v in checks.values())
    if not ok:
        return problem(503, "not ready: " + "; ".join(f"{k} {v}" for k, v in checks.items() if v != "ok"))
    return reply({"status": "ok", "checks": checks})


def _relative(call: Call, path: str) -> str:
    return os.path.relpath(path, call.config.workdir)


def _service_document(call: Call, spec: svc.SpecFile) -> dict[str, Any]:
    data = load_spec(spec.path, spec.raw).located.data  # a file broken on disk answers with its errors
    return {"name": spec.name, "path": _relative(call, spec.path), "etag": spec.etag, "spec": data}


async def list_services(call: Call) -> Response:
    index = await call.run(svc.spec_index, call.config.services_dir)
    return reply({"services": [{"name": n, "path": _relative(call, p)} for n, p in sorted(index.items())]})


async def get_service(call: Call) -> Response:
    spec = await call.run(svc.read_service, call.config.services_dir, call.request.path_params["name"])
    body = await call.run(_service_document, call, spec)
    return reply(body, headers={"ETag": spec.etag})


async def _spec_body(call: Call) -> bytes:
    """A spec sent as YAML is written as sent (comments and all); JSON is written as YAML."""
    media = call.media_type()
    if media in ("application/yaml", "application/x-yaml", "text/yaml"):
        return await call.body()
    if media not in ("application/json", ""):
        raise HttpProblem(415, "send the spec as application/json or application/yaml")
    located = parse_json(await call.body())
    if not isinstance(located.data, dict):
        raise SpecErrors([located.error("", "expected a JSON object: the service spec")])
    raw = svc.spec_bytes(located.data)
    await call.run(svc.check_json_spec, located, raw)  # errors located in the JSON that was sent
    return raw


async def create_service(call: Call) -> Response:
    raw = await _spec_body(call)
    spec = await call.run(svc.create_service, call.config.services_dir, raw)
    body = await call.run(_service_document, call, spec)
    return reply(body, 201, {"ETag": spec.etag, "Location": f"/api/v1/services/{spec.name}"})


async def update_service(call: Call) -> Response:
    raw = await _spec_body(call)
    spec = await call.run(svc.update_service, call.config.services_dir, call.request.path_params["name"], raw,
                          call.request.headers.get("if-match"))
    body = await call.run(_service_document, call, spec)
    return reply(body, headers={"ETag": spec.etag})


async def delete_service(call: Call) -> Response:
    spec = await call.run(svc.delete_service, call.config.services_dir, call.request.path_params["name"],
                          call.request.headers.get("if-match"))
    return reply({"name": spec.name, "path": _relative(call, spec.path), "deleted": True})


async def get_slos(call: Call) -> Response:
    name = call.request.path_params["service"]
    service = await call.run(svc.load_service, call.config.services_dir, name)
    return reply({"service": name, "slos": svc.slo_documents(service)})


def _build(call: Call, names: list[str]) -> BuildOutcome:
    with call.server.build_lock:  # one build at a time: doit's dependency file has one writer
        return build_services(names, call.config.services_dir, call.config.out_dir, call.config.workdir)


async def generate(call: Call) -> Response:
    names = list((await call.json("api-generate.schema.json")).data["services"])
    outcome = await call.run(_build, call, names)
    if outcome.exit_code != 0:
        return problem(422, "the build failed", outcome.output.splitlines() or ["(no output)"])
    return reply({"services": names, "exit_code": outcome.exit_code, "output": outcome.output})


def _at(located: Located | None, text: str | None) -> Any:
    try:
        return instant(text, "at")
    except UserError as exc:
        if located is None:
            raise
        raise SpecErrors([located.error("/at", str(exc))]) from None


def _budgets(call: Call, names: list[str] | None, at: Any) -> list[Any]:
    client = call.server.prometheus()
    if client is None:
        raise HttpProblem(503, "the server has no Prometheus URL (nthlayer serve --prometheus URL)")
    scope = budget_scope(call.config.services_dir, names)
    return track_budget(client, scope, at, call.server.store.write, history=False)  # batched commits


async def error_budgets(call: Call) -> Response:
    name = call.request.query_params.get("service")
    reports = await call.run(_budgets, call, None if name is None else [name], _at(None, call.request.query_params.get("at")))
    return reply({"budgets": [r.as_dict() for r in reports]})


async def error_budget(call: Call) -> Response:
    service, _, kind = call.request.path_params["slo"].rpartition("-")
    reports = await call.run(_budgets, call, [service], _at(None, call.request.query_params.get("at")))
    matching = [r.as_dict() for r in reports if r.service == service and r.slo == kind]  # not a composite's
    if not matching:
        raise svc.NotFound(f"service '{service}' has no {kind} SLO")
    return reply({"budgets": matching})


async def record_deploy(call: Call) -> Response:
    located = await call.json("api-deploy.schema.json")
    data = located.data
    deploy = Deploy(data["service"], data["version"], _at(located, data.get("at")), data.get("commit"), source="api")
    added = await call.run(call.server.store.record_deploy, deploy, call.actor)
    return reply({"service": deploy.service, "version": deploy.version, "commit": deploy.commit_sha,
                  "deployed_at": format_time(deploy.deployed_at), "recorded": added,
                  "text": deploy_text(deploy, added)}, 201 if added else 200)


async def check_deploy(call: Call) -> Response:
    located = await call.json("api-gate.schema.json")
    data = located.data
    outcome = await call.run(gate.check_deploy, call.config.services_dir, _at(located, data.get("at")),
                             call.server.prometheus(), data.get("on_unknown"), call.server.store.connection,
                             name=data["service"], version=data.get("version"), actor=call.actor)
    return reply({**outcome.as_dict(), "recorded": outcome.recorded, "text": outcome.text()})


async def correlate(call: Call) -> Response:
    data = (await call.json("api-correlate.schema.json")).data
    outcome = await call.run(correlate_deploy, call.server.store.connection, call.config.services_dir,
                             data["service"], data["version"], data.get("time_window", "1h"), call.actor)
    return reply({**outcome.as_dict(), "exit_code": outcome.exit_code, "text": outcome.text()})


def _keys(call: Call) -> list[dict[str, Any]]:
    return [call.server.keys.last_used(k).as_dict() for k in api_keys.keys(call.server.store.connection)]


async def list_keys(call: Call) -> Response:
    return reply({"keys": await call.run(_keys, call)})


def _create_key(call: Call, name: str, scopes: list[str]) -> tuple[Any, str]:
    created = api_keys.create(call.server.store.connection, name, scopes, actor=call.actor)
    call.server.keys.reload()
    return created


async def create_key(call: Call) -> Response:
    data = (await call.json("api-key.schema.json")).data
    key, secret = await call.run(_create_key, call, data["name"], data["scopes"])
    return reply({"key": key.as_dict(), "secret": secret}, 201)


def _revoke_key(call: Call, key_id: str) -> Any:
    key = api_keys.revoke(call.server.store.connection, key_id, actor=call.actor, by_name=False)
    call.server.keys.reload()
    return key


async def revoke_key(call: Call) -> Response:
    key = await call.run(_revoke_key, call, call.request.path_params["id"])
    return reply(call.server.keys.last_used(key).as_dict())


async def openapi(call: Call) -> Response:
    return reply(document())
