"""A small client for the Prometheus HTTP query API (``/api/v1/query`` and ``/api/v1/query_range``).

Only those two endpoints are used, so the same code works against anything
that speaks the PromQL API: Prometheus, Thanos Query, Mimir/Cortex (give the
URL with its path prefix, e.g. ``https://mimir.example.com/prometheus``),
VictoriaMetrics.

Credentials come from the environment (or the references in nthlayer.toml, docs/secrets.md) and never
appear in messages:
``PROMETHEUS_TOKEN`` or ``PROMETHEUS_TOKEN_FILE`` (bearer token), or
``PROMETHEUS_USERNAME`` + ``PROMETHEUS_PASSWORD`` (basic auth).

Values are returned as :class:`~decimal.Decimal` parsed from Prometheus' own
text, so budget arithmetic never goes through binary floats a second time.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterator, Mapping, NamedTuple
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests

from generators.errors import UserError

DEFAULT_TIMEOUT_SECONDS = 10.0  # one request, start to last byte
DEFAULT_DEADLINE_SECONDS = 60.0  # every request of one command (one sample with --interval), retries included

# Above this many bytes of form data, send the query as a POST body: long
# PromQL (a regex over hundreds of services) overflows URL limits of proxies.
MAX_GET_QUERY_BYTES = 2000


class PrometheusError(UserError):
    """Prometheus answered, but not with a usable result (bad request, `status: error`, not JSON)."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not be reached or kept failing (connection error, timeout, 5xx) after retries."""


class _TimeUp(BaseException):
    """A request's time ran out. A BaseException so that no ``except Exception`` in urllib3 or
    requests catches it on its way out of a blocked read."""


class _Answer(NamedTuple):
    status: int
    content_type: str
    body: bytes


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt whatever blocks (a header or body read that gets one byte now and then) after ``seconds``.

    Per-read socket timeouts never fire while bytes keep trickling in; SIGALRM does. Signals only reach
    the main thread, so elsewhere (or when the process already uses the timer) the caller's check
    between body chunks is the only bound."""
    usable = (threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
              and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
    if not usable:
        yield
        return

    def time_up(signum: int, frame: Any) -> None:
        raise _TimeUp()

    previous = signal.signal(signal.SIGALRM, time_up)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _not_http(exc: BaseException) -> bool:
    """Did the other end answer with bytes that are not an HTTP response (a wrong port, say)?"""
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (http.client.BadStatusLine, http.client.LineTooLong)) and \
                not isinstance(item, http.client.RemoteDisconnected):  # a closed connection is not an answer
            return True
        pending.extend([*item.args, item.__cause__, item.__context__])
    return False


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: Decimal
    timestamp: Decimal


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    values: list[tuple[Any, Any]]  # (unix seconds, value): Decimal, or what query_range's ``number`` made


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
    """(extra headers, basic auth pair) from the credentials prometheus.token, or prometheus.username and
    prometheus.password: PROMETHEUS_TOKEN[_FILE] / PROMETHEUS_USERNAME+PASSWORD, else their references in
    nthlayer.toml (nthlayer.integrations.credentials, docs/secrets.md)."""
    from nthlayer.integrations.credentials import CredentialResolver

    resolver = CredentialResolver(environ)
    token = resolver.get("prometheus.token")
    user, password = resolver.get("prometheus.username"), resolver.get("prometheus.password")
    if token and (user or password):
        raise UserError("set either a bearer token (PROMETHEUS_TOKEN[_FILE]) or "
                        "PROMETHEUS_USERNAME/PROMETHEUS_PASSWORD, not both")
    if bool(user) != bool(password):
        raise UserError("basic auth needs both PROMETHEUS_USERNAME and PROMETHEUS_PASSWORD")
    headers = {"Authorization": f"Bearer {token.value}"} if token else {}
    return headers, ((user.value, password.value) if user and password else None)


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
    """Instant and range queries with timeouts, bounded retries and environment credentials.

    ``timeout`` bounds each request from connecting to its last byte (not each read: a server that
    trickles a byte now and then cannot hold it). ``deadline`` bounds all requests together, retries
    and backoff included, from the first request or the last :meth:`restart_deadline`.
    """

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS, retries: int = 3,
                 backoff: float = 0.5, environ: Mapping[str, str] | None = None,
                 session: requests.Session | None = None, deadline: float | None = DEFAULT_DEADLINE_SECONDS) -> None:
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
        self.deadline = deadline
        self._deadline_at: float | None = None

    def restart_deadline(self) -> None:
        """Start the command deadline afresh (track-budget --interval: once per sample)."""
        self._deadline_at = None

    def _command_time_left(self) -> float:
        if self.deadline is None:
            return float("inf")
        if self._deadline_at is None:
            self._deadline_at = time.monotonic() + self.deadline
        return self._deadline_at - time.monotonic()

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

    def query_range(self, promql: str, start: datetime, end: datetime, step: str | float,
                    number: Callable[[str], Any] | None = None) -> list[Series]:
        """Evaluate a range query from ``start`` to ``end`` every ``step`` (seconds or a duration like 5m).
        ``number`` parses each value and timestamp (default: Decimal; ``float`` where millions are read)."""
        parse = number or _decimal
        params = {"query": promql, "start": _unix(start), "end": _unix(end), "step": str(step)}
        data = self._call("/api/v1/query_range", params)
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise PrometheusError(f"Prometheus at {self.display_url} returned an unexpected "
                                  f"{data.get('resultType')!r} result for a range query")
        try:
            return [Series(dict(item.get("metric", {})), [(parse(t), parse(v)) for t, v in item["values"]])
                    for item in data["result"]]
        except ValueError:  # float's complaint (_decimal raises PrometheusError itself)
            raise PrometheusError(f"Prometheus at {self.display_url} returned a value that is not a number") from None

    # -- transport -------------------------------------------------------------------------

    def _send(self, path: str, params: dict[str, str], limit: float) -> _Answer:
        """One request, read to its last byte within ``limit`` seconds (else _TimeUp)."""
        url = self.url + path
        self.requests_sent += 1
        ends = time.monotonic() + limit
        response = None
        try:
            with _time_limit(limit):
                if len(urlencode(params)) > MAX_GET_QUERY_BYTES:
                    # Prometheus' query endpoints take the same parameters form-encoded in a POST body.
                    response = self.session.post(url, data=params, timeout=limit, stream=True)
                else:
                    response = self.session.get(url, params=params, timeout=limit, stream=True)
                chunks = []
                for chunk in response.iter_content(65536):
                    chunks.append(chunk)
                    if time.monotonic() > ends:  # the bound where no signal can interrupt a read
                        raise _TimeUp()
                return _Answer(response.status_code, response.headers.get("Content-Type", "unknown content type"),
                               b"".join(chunks))
        except _TimeUp:
            if response is not None:
                response.close()
            self.session.close()  # the pooled connection stopped mid-answer: never reuse it
            raise

    def _call(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        last_problem = ""
        tries = 0
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(max(0.0, min(self.backoff * (2 ** (attempt - 1)), self._command_time_left())))
            left = self._command_time_left()
            if left <= 0:
                last_problem = f"no complete answer within the {self.deadline:g} s deadline of this command"
                break
            limit = min(self.timeout, left)
            tries += 1
            try:
                answer = self._send(path, params, limit)
            except (_TimeUp, requests.Timeout):
                if limit < self.timeout:
                    last_problem = f"no complete answer within the {self.deadline:g} s deadline of this command"
                    break
                last_problem = f"no complete answer within {self.timeout:g} s"
                continue
            except requests.RequestException as exc:
                if _not_http(exc):  # deterministic: the same port will say the same thing, so no retry
                    raise PrometheusError(f"Prometheus at {self.display_url} answered with something that is "
                                          "not HTTP; is the URL (host and port) right?") from None
                if isinstance(exc, requests.ConnectionError):
                    last_problem = "connection failed"
                    continue
                raise PrometheusUnavailable(
                    f"cannot query Prometheus at {self.display_url}: {type(exc).__name__}") from None
            if answer.status >= 500 or answer.status == 429:
                last_problem = f"HTTP {answer.status}{self._error_text(answer)}"
                continue
            return self._payload(answer)
        raise PrometheusUnavailable(
            f"Prometheus at {self.display_url} is unavailable: {last_problem} "
            f"({tries} attempt{'s' if tries != 1 else ''})")

    @staticmethod
    def _json(answer: _Answer) -> Any:
        try:
            return json.loads(answer.body)
        except ValueError:  # UnicodeDecodeError included
            return None

    @classmethod
    def _error_text(cls, answer: _Answer) -> str:
        body = cls._json(answer)
        if isinstance(body, dict) and body.get("error"):
            return f": {body.get('errorType', 'error')}: {body['error']}"
        return ""

    def _payload(self, answer: _Answer) -> dict[str, Any]:
        if answer.status in (401, 403):
            raise PrometheusError(f"Prometheus at {self.display_url} refused the request (HTTP "
                                  f"{answer.status}); check PROMETHEUS_TOKEN or PROMETHEUS_USERNAME/PASSWORD")
        body = self._json(answer)
        if body is None:
            raise PrometheusError(f"Prometheus at {self.display_url} answered HTTP {answer.status} "
                                  f"with a non-JSON body ({answer.content_type}); is the URL right?")
        if not isinstance(body, dict) or "status" not in body:
            raise PrometheusError(f"Prometheus at {self.display_url} answered with JSON that is not an API response")
        if body["status"] != "success":
            raise PrometheusError(f"Prometheus at {self.display_url} rejected the query "
                                  f"(HTTP {answer.status}): {body.get('errorType', 'error')}: "
                                  f"{body.get('error', 'no message')}")
        if answer.status != 200:
            raise PrometheusError(f"Prometheus at {self.display_url} answered HTTP {answer.status}")
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
    parser.add_argument("--prometheus-timeout", metavar="SECONDS", type=float, default=DEFAULT_TIMEOUT_SECONDS,
                        help=f"limit for one request, from connecting to its last byte "
                             f"(default: {DEFAULT_TIMEOUT_SECONDS:g})")
    parser.add_argument("--prometheus-deadline", metavar="SECONDS", type=float, default=DEFAULT_DEADLINE_SECONDS,
                        help=f"limit for all Prometheus requests of the command, retries included; with "
                             f"--interval, of each sample (default: {DEFAULT_DEADLINE_SECONDS:g})")
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
    if args.prometheus_timeout <= 0 or args.prometheus_deadline <= 0:
        raise UserError("--prometheus-timeout and --prometheus-deadline must be more than 0 seconds")
    return PrometheusClient(args.prometheus, timeout=args.prometheus_timeout, retries=args.prometheus_retries,
                            backoff=backoff, deadline=args.prometheus_deadline)
