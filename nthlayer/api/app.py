"""The Starlette application: routes, authentication, rate limits, body limits. Handlers translate
HTTP to :mod:`nthlayer.ops` calls and back, nothing more."""
from __future__ import annotations

import asyncio
import json
import os
import threading
import traceback
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from generators.errors import SpecError, SpecErrors, UserError
from generators.render import json_default
from generators.spec import load_spec, schema_errors
from generators.yamlload import Located, load_yaml
from nthlayer import prometheus as prom
from nthlayer.api.auth import KeyRing, OidcVerifier, Principal, RateLimiter
from nthlayer.api.openapi import document
from nthlayer.api.problems import HttpProblem, problem, problem_for
from nthlayer.api.store import StateStore
from nthlayer.budget import load_services
from nthlayer.events import Deploy
from nthlayer.ops import api_keys, services as svc
from nthlayer.ops.budgets import track_budget
from nthlayer.ops.deploys import correlate_deploy
from nthlayer.ops.gate import check_gate, service_and_graph
from nthlayer.state import crash_log_path, format_time, parse_time, utc_now

DEFAULT_RATE_LIMIT = 1000
DEFAULT_RATE_WINDOW_SECONDS = 60.0
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    services_dir: str = "services"
    out_dir: str = "out"
    workdir: str = "."
    state: str | None = None
    prometheus_url: str | None = None
    prometheus_timeout: float = prom.DEFAULT_TIMEOUT_SECONDS
    prometheus_deadline: float = prom.DEFAULT_DEADLINE_SECONDS
    prometheus_retries: int = 1
    rate_limit: int = DEFAULT_RATE_LIMIT
    rate_window: float = DEFAULT_RATE_WINDOW_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    oidc_jwks: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None


class Server:
    """What the handlers share: configuration, the state store, keys, the rate limiter."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = StateStore(config.state)
        self.keys = KeyRing(self.store)
        self.limiter = RateLimiter(config.rate_limit, config.rate_window)
        self.oidc = OidcVerifier(config.oidc_jwks, config.oidc_issuer, config.oidc_audience) \
            if config.oidc_jwks else None
        self.build_lock = threading.Lock()  # one doit run at a time: they share its dependency file

    def prometheus(self) -> prom.PrometheusClient | None:
        """A client per request: it carries that request's deadline, so one slow query holds one request."""
        c = self.config
        if not c.prometheus_url:
            return None
        return prom.PrometheusClient(c.prometheus_url, timeout=c.prometheus_timeout, retries=c.prometheus_retries,
                                     backoff=0.2, deadline=c.prometheus_deadline)

    def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
        if not token:
            raise HttpProblem(401, "an API key is required: Authorization: Bearer KEY (or X-API-Key: KEY)",
                              {"WWW-Authenticate": 'Bearer realm="nthlayer"'})
        principal = None
        if token.count(".") == 2 and self.oidc is not None:
            principal = self.oidc.verify(token)
        elif not token.count("."):
            principal = self.keys.authenticate(token)
        if principal is None:
            raise HttpProblem(401, "the API key or token is not valid (unknown, revoked or expired)",
                              {"WWW-Authenticate": 'Bearer realm="nthlayer", error="invalid_token"'})
        return principal


@dataclass
class Call:
    """One request, as a handler sees it."""

    request: Request
    server: Server
    principal: Principal | None

    @property
    def config(self) -> ServerConfig:
        return self.server.config

    @property
    def actor(self) -> str | None:
        return self.principal.name if self.principal else None

    async def run(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Blocking work (files, DuckDB, Prometheus, doit) off the event loop."""
        return await run_in_threadpool(func, *args, **kwargs)

    async def body(self) -> bytes:
        limit = self.config.max_body_bytes
        declared = self.request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise HttpProblem(413, f"the body is {declared} bytes; at most {limit} are accepted")
        chunks, size = [], 0
        async for chunk in self.request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpProblem(413, f"the body is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def media_type(self) -> str:
        return self.request.headers.get("content-type", "").split(";")[0].strip().lower()

    async def json(self, schema: str) -> Located:
        """The JSON body, checked against ``schema`` (a generators/schemas file): errors carry line, column
        and pointer into the body, worded as the spec validator words them."""
        if self.media_type() not in ("application/json", ""):
            raise HttpProblem(415, "send the body as application/json")
        located = parse_json(await self.body())
        if not isinstance(located.data, dict):
            raise SpecErrors([located.error("", "expected a JSON object")])
        errors = schema_errors(located, schema)
        if errors:
            raise SpecErrors(errors)
        return located


def parse_json(raw: bytes, path: str = "request") -> Located:
    """JSON decides the data; YAML (a superset, mostly) marks where each pointer is, when it can."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SpecErrors([SpecError(path, exc.lineno, exc.colno, "", f"invalid JSON: {exc.msg}")]) from None
    except UnicodeDecodeError:
        raise SpecErrors([SpecError(path, 1, 1, "", "the body is not UTF-8")]) from None
    try:
        located = load_yaml(path, raw)
        located.data = data
    except SpecErrors:
        located = Located(path, data)
    return located


def dumps(document: Any) -> bytes:
    return json.dumps(document, default=json_default, separators=(",", ":")).encode()


def reply(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(document), status_code=status, media_type="application/json", headers=headers)


Handler = Callable[[Call], Awaitable[Response]]


def guarded(scope: str | None, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate, rate-limit, check the scope, run, turn exceptions into problem documents."""

    async def endpoint(request: Request) -> Response:
        server: Server = request.app.state.server
        headers: dict[str, str] = {}
        principal = None
        try:
            if scope is not None:
                principal = server.authenticate(request)
                allowed, remaining, reset = server.limiter.hit(principal.id)
                headers = {"RateLimit-Limit": str(server.limiter.limit), "RateLimit-Remaining": str(remaining),
                           "RateLimit-Reset": str(reset),
                           "RateLimit-Policy": f"{server.limiter.limit};w={server.limiter.window:g}"}
                if not allowed:
                    raise HttpProblem(429, f"more than {server.limiter.limit} requests in "
                                           f"{server.limiter.window:g} s; retry after {reset} s",
                                      {"Retry-After": str(reset)})
                if scope not in principal.scopes:
                    raise HttpProblem(403, f"this key lacks the scope {scope}")
            response = await handler(Call(request, server, principal))
        except Exception as exc:  # noqa: BLE001 - every error becomes a problem document
            response = problem_for(exc) or _crash(server, request, exc)
        response.headers.update(headers)
        if server.keys.due():
            asyncio.get_running_loop().run_in_executor(None, _flush_quietly, server)
        return response

    return endpoint


def _flush_quietly(server: Server) -> None:
    try:
        server.keys.flush()
    except Exception:  # noqa: BLE001 - a last-used time is not worth failing anything for; next flush retries
        pass


def _crash(server: Server, request: Request, exc: BaseException) -> Response:
    """A bug: the traceback goes to the crash log beside the state database; the caller learns only that."""
    log = os.environ.get("NTHLAYER_CRASH_LOG") or crash_log_path(server.config.state)
    try:
        os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"nthlayer serve: {request.method} {request.url.path}\n{traceback.format_exc()}\n")
    except OSError:
        pass
    return problem(500, f"internal error ({type(exc).__name__}); details in the server's crash log")


# --- handlers -----------------------------------------------------------------------------------

async def healthz(call: Call) -> Response:
    return reply({"status": "ok"})


def _readiness(server: Server) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with server.store.connection() as con:
            con.execute("SELECT 1").fetchall()
        checks["state"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["state"] = f"unavailable: {exc}"
    client = server.prometheus()
    if client is None:
        checks["prometheus"] = "not configured"
    else:
        try:
            client.query("vector(1)")
            checks["prometheus"] = "ok"
        except prom.PrometheusError as exc:
            checks["prometheus"] = f"unavailable: {exc}"
    return checks


async def readyz(call: Call) -> Response:
    checks = await call.run(_readiness, call.server)
    ok = all(v in ("ok", "not configured") for v in checks.values())
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


def _build(call: Call, names: list[str]) -> svc.BuildOutcome:
    known = svc.spec_index(call.config.services_dir)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise svc.NotFound(f"no spec for service {', '.join(repr(n) for n in unknown)} in {call.config.services_dir}")
    with call.server.build_lock:
        return svc.build_services(names, call.config.services_dir, call.config.out_dir, call.config.workdir)


async def generate(call: Call) -> Response:
    names = list((await call.json("api-generate.schema.json")).data["services"])
    outcome = await call.run(_build, call, names)
    if outcome.exit_code != 0:
        return problem(422, "the build failed", outcome.output.splitlines() or ["(no output)"])
    return reply({"services": names, "exit_code": outcome.exit_code, "output": outcome.output})


def _at(located: Located | None, text: str | None) -> Any:
    if not text:
        return utc_now().replace(microsecond=0)
    try:
        return parse_time(text, "at")
    except UserError as exc:
        if located is None:
            raise
        raise SpecErrors([located.error("/at", str(exc))]) from None


def _budgets(call: Call, names: list[str] | None, at: Any) -> list[Any]:
    client = call.server.prometheus()
    if client is None:
        raise HttpProblem(503, "the server has no Prometheus URL (nthlayer serve --prometheus URL)")
    services = load_services(call.config.services_dir, names)
    return track_budget(client, services, at, call.server.store.connection)


async def error_budgets(call: Call) -> Response:
    name = call.request.query_params.get("service")
    reports = await call.run(_budgets, call, None if name is None else [name], _at(None, call.request.query_params.get("at")))
    return reply({"budgets": [r.as_dict() for r in reports]})


async def error_budget(call: Call) -> Response:
    service, _, kind = call.request.path_params["slo"].rpartition("-")
    reports = await call.run(_budgets, call, [service], _at(None, call.request.query_params.get("at")))
    matching = [r.as_dict() for r in reports if r.slo == kind]
    if not matching:
        raise svc.NotFound(f"service '{service}' has no {kind} SLO")
    return reply({"budgets": matching})


async def record_deploy(call: Call) -> Response:
    located = await call.json("api-deploy.schema.json")
    data = located.data
    deploy = Deploy(data["service"], data["version"], _at(located, data.get("at")), data.get("commit"), source="api")
    added = await call.run(call.server.store.record_deploy, deploy, call.actor)
    from nthlayer.ops.deploys import deploy_text

    return reply({"service": deploy.service, "version": deploy.version, "commit": deploy.commit_sha,
                  "deployed_at": format_time(deploy.deployed_at), "recorded": added,
                  "text": deploy_text(deploy, added)}, 201 if added else 200)


def _gate(call: Call, data: dict[str, Any], at: Any) -> Any:
    service, everyone = service_and_graph(call.config.services_dir, data["service"])
    return check_gate(service, everyone, at, call.server.prometheus(), data.get("on_unknown"),
                      call.server.store.connection, version=data.get("version"), actor=call.actor)


async def check_deploy(call: Call) -> Response:
    located = await call.json("api-gate.schema.json")
    outcome = await call.run(_gate, call, located.data, _at(located, located.data.get("at")))
    return reply({**outcome.as_dict(), "recorded": outcome.recorded, "text": outcome.text()})


async def correlate(call: Call) -> Response:
    data = (await call.json("api-correlate.schema.json")).data
    outcome = await call.run(correlate_deploy, call.server.store.connection, call.config.services_dir,
                             data["service"], data["version"], data.get("time_window", "1h"), call.actor)
    return reply({**outcome.as_dict(), "exit_code": outcome.exit_code, "text": outcome.text()})


def _keys(call: Call) -> list[dict[str, Any]]:
    with call.server.store.connection() as con:
        keys = api_keys.list_keys(con)
    return [call.server.keys.last_used(k).as_dict() for k in keys]


async def list_keys(call: Call) -> Response:
    return reply({"keys": await call.run(_keys, call)})


def _create_key(call: Call, name: str, scopes: list[str]) -> tuple[Any, str]:
    with call.server.store.connection() as con:
        created = api_keys.create_key(con, name, scopes, actor=call.actor)
    call.server.keys.reload()
    return created


async def create_key(call: Call) -> Response:
    data = (await call.json("api-key.schema.json")).data
    key, secret = await call.run(_create_key, call, data["name"], data["scopes"])
    return reply({"key": key.as_dict(), "secret": secret}, 201)


def _revoke_key(call: Call, key_id: str) -> Any:
    if key_id not in {k["id"] for k in _keys(call)}:
        raise svc.NotFound(f"no API key {key_id!r}")
    with call.server.store.connection() as con:
        key = api_keys.revoke_key(con, key_id, actor=call.actor)
    call.server.keys.reload()
    return key


async def revoke_key(call: Call) -> Response:
    key = await call.run(_revoke_key, call, call.request.path_params["id"])
    return reply(call.server.keys.last_used(key).as_dict())


async def openapi(call: Call) -> Response:
    return reply(document())


# --- the application ----------------------------------------------------------------------------

def _routes() -> list[Route]:
    def route(path: str, method: str, scope: str | None, handler: Handler) -> Route:
        return Route(path, guarded(scope, handler), methods=[method])

    return [
        route("/healthz", "GET", None, healthz),
        route("/readyz", "GET", None, readyz),
        route("/api/v1/openapi.json", "GET", None, openapi),
        route("/api/v1/services", "GET", "services:read", list_services),
        route("/api/v1/services", "POST", "services:write", create_service),
        route("/api/v1/services/{name}", "GET", "services:read", get_service),
        route("/api/v1/services/{name}", "PUT", "services:write", update_service),
        route("/api/v1/services/{name}", "DELETE", "services:write", delete_service),
        route("/api/v1/slos/generate", "POST", "services:write", generate),
        route("/api/v1/slos/{service}", "GET", "services:read", get_slos),
        route("/api/v1/error-budgets", "GET", "budgets:read", error_budgets),
        route("/api/v1/error-budgets/{slo}", "GET", "budgets:read", error_budget),
        route("/api/v1/deploys", "POST", "deploys:write", record_deploy),
        route("/api/v1/deploys/check", "POST", "deploys:write", check_deploy),
        route("/api/v1/deploys/correlate", "POST", "deploys:write", correlate),
        route("/api/v1/api-keys", "GET", "keys:admin", list_keys),
        route("/api/v1/api-keys", "POST", "keys:admin", create_key),
        route("/api/v1/api-keys/{id}", "DELETE", "keys:admin", revoke_key),
    ]


async def _http_problem(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = {404: "no such endpoint", 405: "method not allowed here"}.get(status, str(exc))
    return problem(status, detail)


def create_app(config: ServerConfig) -> Starlette:
    server = Server(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(server.store.open)
        await run_in_threadpool(server.keys.reload)
        try:
            yield
        finally:
            await run_in_threadpool(_flush_quietly, server)
            await run_in_threadpool(server.store.close)

    app = Starlette(routes=_routes(), lifespan=lifespan, exception_handlers={HTTPException: _http_problem})
    app.state.server = server
    return app

