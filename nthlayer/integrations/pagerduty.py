"""The official ``pagerduty`` REST client, configured for nthlayer: bounded retries, safe POSTs, clear errors.

What the client (pagerduty 7.2, on httpx2) does on its own, and what changes here:
- it retries 429 forever and returns other failures at once; here 429 and
  5xx are retried ``retries`` times with a doubling backoff that starts at
  ``backoff`` seconds (tests set it to milliseconds);
- a POST is never re-sent by the client after a 5xx or a network error,
  because PagerDuty may have created the object before failing: the caller
  looks the object up first (see pagerduty_apply._create);
- TLS: httpx2 builds its context with trust_env, so ``SSL_CERT_FILE`` /
  ``SSL_CERT_DIR`` replace the system CA bundle as usual (tests rely on it);
- with ``read_only`` no request other than GET leaves the process (dry runs).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pagerduty import Error, HttpError, RestApiV2Client

from generators.errors import UserError

DEFAULT_API_URL = "https://api.pagerduty.com"
TRANSIENT_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class ClientSettings:
    api_url: str = DEFAULT_API_URL
    retries: int = 5
    backoff: float = 1.0
    timeout: float = 30.0
    read_only: bool = False


class ReadOnlyViolation(RuntimeError):
    """A dry run tried to write: a bug in nthlayer, never the user's doing."""


class PagerDutyClient(RestApiV2Client):
    def __init__(self, api_key: str, settings: ClientSettings) -> None:
        if not settings.api_url.startswith("https://"):
            raise UserError(f"--api-url must be an https:// URL (got {settings.api_url})")
        super().__init__(api_key, base_url=settings.api_url.rstrip("/"))
        self.settings = settings
        self.log = logging.getLogger("nthlayer.pagerduty")
        self.timeout = settings.timeout
        self.stagger_cooldown = 0
        self.sleep_timer_base = 2
        # The client multiplies by the base before each sleep: first sleep = backoff.
        self.sleep_timer = settings.backoff / self.sleep_timer_base
        # In the client's retry table 0 means "default" (429: retry forever), so
        # "no retries" is spelt as a total-attempt limit the first failure exceeds.
        self.max_http_attempts = settings.retries if settings.retries > 0 else -1
        self.max_network_attempts = settings.retries
        self._per_status = max(settings.retries, 1)
        self.retry = {status: self._per_status for status in TRANSIENT_STATUSES}
        self.writes = 0

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        verb = method.strip().upper()
        if verb != "GET" and self.settings.read_only:
            raise ReadOnlyViolation(f"dry run attempted {verb} {url}")
        if verb != "GET":
            self.writes += 1
        if verb != "POST":
            return super().request(method, url, **kwargs)
        saved = (self.retry, self.max_network_attempts)
        self.retry = {429: self._per_status}
        self.max_network_attempts = 0
        try:
            return super().request(method, url, **kwargs)
        finally:
            self.retry, self.max_network_attempts = saved


def api_url(given: str | None = None) -> str:
    """The REST API base URL: ``given`` (--api-url), else $PAGERDUTY_API_URL, else the US service."""
    import os

    return given or os.environ.get("PAGERDUTY_API_URL") or DEFAULT_API_URL


def status_of(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    return None if response is None else int(response.status_code)


def is_transient(exc: Exception) -> bool:
    """Worth another try: rate limit, server error, or no response at all."""
    if isinstance(exc, HttpError):
        return status_of(exc) in TRANSIENT_STATUSES
    return isinstance(exc, Error)


def _api_message(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is None:
        cause = exc.__cause__
        return f"no response ({type(cause).__name__}: {cause})" if cause else "no response"
    try:
        body = response.json()
        error = body.get("error", {}) if isinstance(body, dict) else {}
        message = error.get("message", "") if isinstance(error, dict) else str(error)
        details = error.get("errors", []) if isinstance(error, dict) else []
        return "; ".join([message, *map(str, details)]) if details else message or response.reason_phrase
    except ValueError:
        return response.reason_phrase


def explain(exc: Exception, what: str) -> str:
    """One line for the user. Never includes the key (the client's own 401 text quotes part of it)."""
    status = status_of(exc)
    if status == 401:
        return ("PagerDuty rejected the API key (HTTP 401): check PAGERDUTY_API_KEY, --api-key-file or the "
                "pagerduty.api_key reference ('nthlayer config get pagerduty.api_key'), and --api-url for the "
                "account's region")
    if status == 403:
        return (f"PagerDuty refused {what} (HTTP 403): the API key lacks permission for it "
                "(a read-only key cannot create or update)")
    if status == 402:
        return f"PagerDuty refused {what} (HTTP 402): the account's plan lacks the ability this needs"
    if status is None:
        return f"could not reach PagerDuty for {what}: {_api_message(exc)}"
    return f"PagerDuty answered {what} with HTTP {status}: {_api_message(exc)}"
