"""The CLI as a client of ``nthlayer serve``: ``record-deploy``, ``check-deploy`` and ``correlate-deploy``
with ``--api URL`` send their request to the server (the key from $NTHLAYER_API_KEY) and print what the
local command prints."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from generators.errors import UserError
from generators.render import json_default

API_KEY_ENV = "NTHLAYER_API_KEY"
TIMEOUT_SECONDS = 120.0  # the gate may query Prometheus, which has its own per-request deadline on the server


class ApiUnreachable(UserError):
    """No answer from the server (connection refused, timeout): check-deploy maps it to "cannot decide"."""


def add_argument(parser: Any) -> None:
    parser.add_argument("--api", metavar="URL",
                        help=f"ask an 'nthlayer serve' at URL instead of using a local state file "
                             f"(API key from ${API_KEY_ENV}); same output and exit codes")


def post(base_url: str, path: str, body: dict[str, Any], command: str) -> dict[str, Any]:
    """POST ``body``; the decoded answer, or UserError with the server's problem (its lines on stderr)."""
    import requests

    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise UserError(f"--api needs an API key in ${API_KEY_ENV} (see 'nthlayer api-key create')")
    if not base_url.startswith(("http://", "https://")):
        raise UserError(f"--api {base_url!r} must start with http:// or https://")
    url = base_url.rstrip("/") + path
    try:
        answer = requests.post(url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise ApiUnreachable(f"cannot reach the NthLayer API at {base_url}: {type(exc).__name__}") from None
    try:
        document = answer.json()
    except ValueError:
        raise UserError(f"the NthLayer API at {base_url} answered {answer.status_code} without JSON") from None
    if answer.status_code >= 400:
        for line in document.get("errors", []) if isinstance(document, dict) else []:
            print(line, file=sys.stderr)
        detail = document.get("detail") if isinstance(document, dict) else None
        raise UserError(f"the NthLayer API answered {answer.status_code}: {detail or answer.reason}")
    return document


def print_json(document: dict[str, Any], *drop: str) -> None:
    """The document as the local command's --json prints it (without the API's extra fields)."""
    print(json.dumps({k: v for k, v in document.items() if k not in drop}, indent=2, default=json_default))
