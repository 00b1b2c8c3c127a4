"""The official ``datadog-api-client``, configured for nthlayer: bounded retries, no blind POST retries, clear errors.

What changes from the client's own retry policy (``enable_retry`` retries every method, POST included):
- 429 is retried for every method (Datadog did not process a rate-limited request), waiting the seconds
  Datadog's ``X-RateLimit-Reset`` header names when it sends one, else a doubling backoff;
- 500/502/503/504 and network errors are retried for GET and PUT only: a POST that failed may have created
  the object, so setup-datadog looks it up again by its ``nthlayer-id`` tag instead of re-sending it;
- with ``read_only`` no request other than GET leaves the process (dry runs);
- TLS: ``SSL_CERT_FILE`` names the CA bundle when set (a proxy's, or the tests' fake).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from generators.errors import UserError

DEFAULT_SITE = "datadoghq.com"
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
_IDEMPOTENT = frozenset({"GET", "PUT", "HEAD"})


def _api_errors() -> tuple[type[BaseException], ...]:
    try:
        import urllib3
        from datadog_api_client.exceptions import ApiException
    except ImportError:  # the datadog extra is not installed: setup-datadog says so before any request
        return ()
    return (ApiException, urllib3.exceptions.HTTPError)


# What a request to Datadog raises for an answer or a network failure (anything else is a bug: a crash).
API_ERRORS = _api_errors()


@dataclass(frozen=True)
class ClientSettings:
    site: str = DEFAULT_SITE
    api_url: str | None = None  # a proxy: https://…, replaces https://api.<site>
    retries: int = 5
    backoff: float = 1.0
    timeout: float = 30.0
    read_only: bool = False

    @property
    def url(self) -> str:
        return (self.api_url or f"https://api.{self.site}").rstrip("/")


class ReadOnlyViolation(RuntimeError):
    """A dry run tried to write: a bug in nthlayer, never the user's doing."""


def _retry_policy(settings: ClientSettings) -> Any:
    import urllib3

    log = logging.getLogger("nthlayer.datadog")

    class Retry(urllib3.util.Retry):  # type: ignore[misc]
        def get_retry_after(self, response: Any) -> float | None:
            reset = response.headers.get("X-RateLimit-Reset")  # seconds until the rate-limit period ends
            return None if reset is None else self.parse_retry_after(reset)

        def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
            if status_code not in TRANSIENT_STATUSES or not self.total:
                return False
            return status_code == 429 or method.upper() in _IDEMPOTENT

        def increment(self, method: str | None = None, url: str | None = None, *args: Any, **kwargs: Any) -> Any:
            response = kwargs.get("response")
            status = getattr(response, "status", None)
            what = f"HTTP {status}" if status else "no response"
            log.warning("%s %s: %s, retrying", method, url, what)
            return super().increment(method, url, *args, **kwargs)

    # allowed_methods: which methods a *network* error may re-send (never POST).
    return Retry(total=settings.retries, connect=settings.retries, read=settings.retries, status=settings.retries,
                 backoff_factor=settings.backoff, allowed_methods=_IDEMPOTENT, raise_on_status=False,
                 respect_retry_after_header=True, backoff_max=60)


class DatadogClient:
    """The three APIs setup-datadog uses, sharing one configured ``ApiClient``; ``writes`` counts requests
    that change something."""

    def __init__(self, api_key: str, app_key: str, settings: ClientSettings) -> None:
        from datadog_api_client import ApiClient, Configuration
        from datadog_api_client.v1.api.monitors_api import MonitorsApi
        from datadog_api_client.v1.api.service_level_objectives_api import ServiceLevelObjectivesApi
        from datadog_api_client.v2.api.service_definition_api import ServiceDefinitionApi

        if not settings.url.startswith("https://"):
            raise UserError(f"--api-url must be an https:// URL (got {settings.url})")
        config = Configuration(host=settings.url, retry_policy=_retry_policy(settings),
                               ssl_ca_cert=os.environ.get("SSL_CERT_FILE") or None)
        config.api_key["apiKeyAuth"] = api_key
        config.api_key["appKeyAuth"] = app_key
        config.check_return_type = False  # we read plain fields; a new field in an answer must not break us
        self.settings = settings
        self.writes = 0
        self.api = ApiClient(config)
        self.api.rest_client.pool_manager.connection_pool_kw["timeout"] = settings.timeout
        self.slos = ServiceLevelObjectivesApi(self.api)
        self.monitors = MonitorsApi(self.api)
        self.definitions = ServiceDefinitionApi(self.api)

    @property
    def url(self) -> str:
        return self.settings.url

    def write(self, what: str) -> None:
        """Count a write about to be sent; refuse it in a dry run."""
        if self.settings.read_only:
            raise ReadOnlyViolation(f"dry run attempted {what}")
        self.writes += 1

    def close(self) -> None:
        self.api.close()


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return int(status) if isinstance(status, int) and status > 0 else None


def _api_message(exc: BaseException) -> str:
    """Datadog's ``{"errors": [...]}`` list, else the exception's reason or text."""
    import json

    body = getattr(exc, "body", None)
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        return "; ".join(map(str, errors))
    return str(getattr(exc, "reason", "") or exc)


def explain(exc: BaseException, what: str) -> str:
    """One line for the user; never the keys (the client puts none in its exceptions, and this quotes only
    Datadog's error list)."""
    status = status_of(exc)
    message = _api_message(exc)
    # Datadog answers a wrong key with 403 "Forbidden" on most endpoints, 401 on some.
    if status == 401 or (status == 403 and message.strip().lower() in ("forbidden", "")):
        return (f"Datadog rejected the API or application key (HTTP {status}) for {what}: check DD_API_KEY and "
                "DD_APP_KEY (or DD_API_KEY_FILE / DD_APP_KEY_FILE, or 'nthlayer config get datadog.api_key'), "
                "and DD_SITE or --api-url for the account's site")
    if status == 403:
        return f"Datadog refused {what} (HTTP 403): the application key lacks a permission it needs ({message})"
    if status is None:
        cause = getattr(exc, "reason", None) or exc
        return f"could not reach Datadog for {what}: {type(cause).__name__}: {cause}"
    return f"Datadog answered {what} with HTTP {status}: {message}"
