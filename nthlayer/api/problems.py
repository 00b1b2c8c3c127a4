"""Errors as RFC 9457 problem documents (``application/problem+json``), one table from exception to status."""
from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from generators.errors import SpecErrors, UserError
from nthlayer.ops import services as svc
from nthlayer.integrations.prometheus import PrometheusError
from nthlayer.state.db import StateUnavailable


class HttpProblem(Exception):
    """A problem with a status of its own (401, 403, 413, 415, 429…)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
          409: "Conflict", 412: "Precondition Failed", 413: "Content Too Large", 415: "Unsupported Media Type",
          422: "Unprocessable Content", 428: "Precondition Required", 429: "Too Many Requests",
          500: "Internal Server Error", 503: "Service Unavailable", 504: "Gateway Timeout"}

# Most specific first: the first class an exception is an instance of decides its status.
STATUS_OF: list[tuple[type[BaseException], int]] = [
    (SpecErrors, 422),
    (svc.NotFound, 404),
    (svc.PreconditionFailed, 412),
    (svc.Conflict, 409),
    (svc.PreconditionRequired, 428),
    (StateUnavailable, 503),
    (PrometheusError, 503),
    (UserError, 422),
]


def problem(status: int, detail: str, errors: list[str] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status,
                            "detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def problem_for(exc: BaseException) -> JSONResponse | None:
    """The response for an exception a user can act on; None for a bug."""
    if isinstance(exc, HttpProblem):
        return problem(exc.status, exc.detail, headers=exc.headers)
    for kind, status in STATUS_OF:
        if isinstance(exc, kind):
            if isinstance(exc, SpecErrors):
                lines = exc.lines()
                return problem(status, f"{len(lines)} problem{'s' if len(lines) != 1 else ''} in the input", lines)
            return problem(status, str(exc))
    return None
