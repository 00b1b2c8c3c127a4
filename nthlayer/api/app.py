"""The Starlette application (``nthlayer serve``): the routes, each endpoint with its scope. Handlers
translate HTTP to :mod:`nthlayer.ops` calls and back, nothing more."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nthlayer.api.handlers import (check_deploy, correlate, create_key, create_service, delete_service,
                                   error_budget, error_budgets, generate, get_service, get_slos, healthz,
                                   list_keys, list_services, openapi, readyz, record_deploy, revoke_key,
                                   update_service)
from nthlayer.api.problems import problem
from nthlayer.api.server import Handler, Server, ServerConfig, _flush_quietly, guarded
from nthlayer.state.holder import mark_served, unmark_served

__all__ = ["ServerConfig", "create_app"]


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
        if config.url and server.store.path != ":memory:":  # local commands learn where to send their work
            mark_served(server.store.path, config.url)
        try:
            yield
        finally:
            await run_in_threadpool(_flush_quietly, server)
            await run_in_threadpool(server.store.close)
            unmark_served(server.store.path)

    app = Starlette(routes=_routes(), lifespan=lifespan, exception_handlers={HTTPException: _http_problem})
    app.state.server = server
    return app

