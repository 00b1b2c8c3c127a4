"""A small client for the Prometheus HTTP query API (``/api/v1/query`` and ``/api/v1/query_range``).

Only those two endpoints are used, so the same code works against anything
that speaks the PromQL API: Prometheus, Thanos Query, Mimir/Cortex (give the
URL with its path prefix, e.g. ``https://mimir.example.com/prometheus``),
VictoriaMetrics.

Credentials come from the environment and never appear in messages:
``PROMETHEUS_TOKEN`` or ``PROMETHEUS_TOKEN_FILE`` (bearer token), or
``PROMETHEUS_USERNAME`` + ``PROMETHEUS_PASSWORD`` (basic auth).

Values are returned as :class:`~decimal.Decimal` parsed from Prometheus' own
text, so budget arithmetic never goes through binary floats a second time.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests

from generators.errors import UserError

# Above this many bytes of form data, send the query as a POST body: long
# PromQL (a regex over hundreds of services) overflows URL limits of proxies.
MAX_GET_QUERY_BYTES = 2000


class PrometheusError(UserError):
    """Prometheus answered, but not with a usable result (bad request, `status: error`, not JSON)."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not be reached or kept failing (connection error, timeout, 5xx) after retries."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: Decimal
    timestamp: Decimal


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    values: list[tuple[Decimal, Decimal]]  # (unix seconds, value)


def redact_url(url: str) -> str:
    """The URL without any user:password@ part, safe to print."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def auth_from_env(environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], tuple[str, str] | None]:
    """(extra headers, basic auth pair) from PROMETHEUS_TOKEN[_FILE] / PROMETHEUS_USERNAME+PASSWORD."""
    env = os.environ if environ is None else environ
    token = env.get("PROMETHEUS_TOKEN")
    token_file = env.get("PROMETHEUS_TOKEN_FILE")
    user, password = env.get("PROMETHEUS_USERNAME"), env.get("PROMETHEUS_PASSWORD")
    if token and token_file:
        raise UserError("set PROMETHEUS_TOKEN or PROMETHEUS_TOKEN_FILE, not both")
    if token_file:
        from nthlayer.secrets import read_secret_file

        token = read_secret_file(token_file, "PROMETHEUS_TOKEN_FILE")
    if token and (user or password):
        raise UserError("set either a bearer token (PROMETHEUS_TOKEN[_FILE]) or "
                        "PROMETHEUS_USERNAME/PROMETHEUS_PASSWORD, not both")
    if bool(user) != bool(password):
        raise UserError("basic auth needs both PROMETHEUS_USERNAME and PROMETHEUS_PASSWORD")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return headers, ((user, password) if user and password else None)


def _unix(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("Prometheus query times must be timezone-aware")
    return format(Decimal(str(at.timestamp())).normalize(), "f")


def _decimal(text: Any) -> Decimal:
    try:
        return Decimal(str(text))
    except InvalidOperation:
        raise PrometheusError(f"Prometheus returned a value that is not a number: {text!r}") from None


class PrometheusClient:
    """Instant and range queries with timeouts, bounded retries and environment credentials."""

    def __init__(self, url: str, *, timeout: float = 10.0, retries: int = 3, backoff: float = 0.5,
                 environ: Mapping[str, str] | None = None, session: requests.Session | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise UserError(f"Prometheus URL {redact_url(url)!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.display_url = redact_url(self.url)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = max(0.0, backoff)
        self.session = session or requests.Session()
        headers, basic = auth_from_env(environ)
        self.session.headers.update(headers)
        if basic:
            self.session.auth = basic
        self.requests_sent = 0  # attempts, including retries: tests and benchmarks read it

    # -- public API ------------------------------------------------------------------------

    def query(self, promql: str, at: datetime | None = None) -> list[Sample]:
        """Evaluate an instant query; a scalar result comes back as one sample without labels."""
        params = {"query": promql}
        if at is not None:
            params["time"] = _unix(at)
        data = self._call("/api/v1/query", params)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "vector" and isinstance(result, list):
            return [Sample(dict(item.get("metric", {})), _decimal(item["value"][1]), _decimal(item["value"][0]))
                    for item in result]
        if kind == "scalar" and isinstance(result, list):
            return [Sample({}, _decimal(result[1]), _decimal(result[0]))]
        raise PrometheusError(f"Prometheus at {self.display_url} returned an unexpected {kind!r} result "
                              "for an instant query")

    def query_range(self, promql: str, start: datetime, end: datetime, step: str | float) -> list[Series]:
        """Evaluate a range query from ``start`` to ``end`` every ``step`` (seconds or a duration like 5m)."""
        params = {"query": promql, "start": _unix(start), "end": _unix(end), "step": str(step)}
        data = self._call("/api/v1/query_range", params)
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise PrometheusError(f"Prometheus at {self.display_url} returned an unexpected "
                                  f"{data.get('resultType')!r} result for a range query")
        return [Series(dict(item.get("metric", {})), [(_decimal(t), _decimal(v)) for t, v in item["values"]])
                for item in data["result"]]

    # -- transport -------------------------------------------------------------------------

    def _send(self, path: str, params: dict[str, str]) -> requests.Response:
        url = self.url + path
        self.requests_sent += 1
        if len(urlencode(params)) > MAX_GET_QUERY_BYTES:
            # Prometheus' query endpoints take the same parameters form-encoded in a POST body.
            return self.session.post(url, data=params, timeout=self.timeout)
        return self.session.get(url, params=params, timeout=self.timeout)

    def _call(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        last_problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                response = self._send(path, params)
            except requests.Timeout:
                last_problem = f"no answer within {self.timeout:g} s"
                continue
            except requests.ConnectionError:
                last_problem = "connection failed"
                continue
            except requests.RequestException as exc:
                raise PrometheusUnavailable(
                    f"cannot query Prometheus at {self.display_url}: {type(exc).__name__}") from None
            if response.status_code >= 500 or response.status_code == 429:
                last_problem = f"HTTP {response.status_code}{self._error_text(response)}"
                continue
            return self._payload(response)
        tries = self.retries + 1
        raise PrometheusUnavailable(
            f"Prometheus at {self.display_url} is unavailable: {last_problem} "
            f"({tries} attempt{'s' if tries != 1 else ''})")

    @staticmethod
    def _error_text(response: requests.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return ""
        if isinstance(body, dict) and body.get("error"):
            return f": {body.get('errorType', 'error')}: {body['error']}"
        return ""

    def _payload(self, response: requests.Response) -> dict[str, Any]:
        if response.status_code in (401, 403):
            raise PrometheusError(f"Prometheus at {self.display_url} refused the request (HTTP "
                                  f"{response.status_code}); check PROMETHEUS_TOKEN or PROMETHEUS_USERNAME/PASSWORD")
        try:
            body = response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "unknown content type")
            raise PrometheusError(f"Prometheus at {self.display_url} answered HTTP {response.status_code} "
                                  f"with a non-JSON body ({kind}); is the URL right?") from None
        if not isinstance(body, dict) or "status" not in body:
            raise PrometheusError(f"Prometheus at {self.display_url} answered with JSON that is not an API response")
        if body["status"] != "success":
            raise PrometheusError(f"Prometheus at {self.display_url} rejected the query "
                                  f"(HTTP {response.status_code}): {body.get('errorType', 'error')}: "
                                  f"{body.get('error', 'no message')}")
        if response.status_code != 200:
            raise PrometheusError(f"Prometheus at {self.display_url} answered HTTP {response.status_code}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"Prometheus at {self.display_url} answered without a 'data' object")
        return data


def add_arguments(parser: Any) -> None:
    """The --prometheus options every command that queries Prometheus shares."""
    parser.add_argument("--prometheus", metavar="URL", default=os.environ.get("PROMETHEUS_URL"),
                        help="Prometheus-compatible query API base URL, path prefix included "
                             "(default: $PROMETHEUS_URL); credentials from $PROMETHEUS_TOKEN[_FILE] or "
                             "$PROMETHEUS_USERNAME/$PROMETHEUS_PASSWORD")
    parser.add_argument("--prometheus-timeout", metavar="SECONDS", type=float, default=10.0,
                        help="per-request timeout (default: 10)")
    parser.add_argument("--prometheus-retries", metavar="N", type=int, default=3,
                        help="retries on connection errors, timeouts and 5xx answers (default: 3)")


def client_from_args(args: Any) -> PrometheusClient:
    if not args.prometheus:
        raise UserError("no Prometheus URL: pass --prometheus URL or set PROMETHEUS_URL")
    raw = os.environ.get("NTHLAYER_PROMETHEUS_BACKOFF", "0.5")
    try:
        backoff = float(raw)
    except ValueError:
        raise UserError(f"NTHLAYER_PROMETHEUS_BACKOFF={raw!r} is not a number of seconds") from None
    return PrometheusClient(args.prometheus, timeout=args.prometheus_timeout, retries=args.prometheus_retries,
                            backoff=backoff)
