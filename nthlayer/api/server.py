"""The server's plumbing: configuration, shared state, the request wrapper that authenticates,
rate-limits and turns every exception into a problem document."""
from __future__ import annotations

import asyncio
import json
import os
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from generators.errors import SpecError, SpecErrors
from generators.render import json_default
from generators.spec import schema_errors
from generators.yamlload import Located, load_yaml
from nthlayer.integrations import prometheus as prom
from nthlayer.api.auth import KeyRing, OidcVerifier, Principal, RateLimiter
from nthlayer.api.problems import HttpProblem, problem, problem_for
from nthlayer.api.store import StateStore
from nthlayer.state.db import crash_log_path

DEFAULT_RATE_LIMIT = 1000
DEFAULT_RATE_WINDOW_SECONDS = 60.0
DEFAULT_AUTH_FAILURE_LIMIT = 30  # requests without a valid key, per client address and window
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
    auth_failure_limit: int = DEFAULT_AUTH_FAILURE_LIMIT
    url: str | None = None  # where clients reach it: written beside the state database (nthlayer.state.holder)
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
        # Requests without a valid key, per client address: key guessing is throttled (see guarded).
        self.failures = RateLimiter(config.auth_failure_limit, config.rate_window)
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
                principal = await _authenticated(server, request)
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


async def _authenticated(server: Server, request: Request) -> Principal:
    """The caller, or 401; 429 while its address is over the limit of requests without a valid key.

    Once over, every request from that address is refused until the window ends, a valid key too:
    answering a right guess differently from a wrong one would tell the guesser it was right."""
    address = f"ip:{request.client.host if request.client else 'unknown'}"
    wait = server.failures.blocked(address)
    if wait is not None:
        raise HttpProblem(429, f"more than {server.failures.limit} requests without a valid API key from this "
                               f"address in {server.failures.window:g} s; retry after {wait} s",
                          {"Retry-After": str(wait)})
    try:
        if server.oidc is not None and server.oidc.source.remote:
            # a token naming an unknown key may refetch the provider's keys: off the event loop
            return await run_in_threadpool(server.authenticate, request)
        return server.authenticate(request)
    except HttpProblem as exc:
        if exc.status == 401:
            server.failures.hit(address)
        raise


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


