"""Secrets (API keys, tokens, routing keys) come from the environment or files, and are never shown in full.

Routing keys (PagerDuty Events API v2) are kept only in key files, one per service, in the secrets
folder (:func:`secrets_dir`): the files Alertmanager's ``routing_key_file`` reads. They never go to
the state database, out/ or any log.
"""
from __future__ import annotations

import os

from generators.errors import UserError

SECRETS_DIR_ENV = "NTHLAYER_SECRETS_DIR"


def read_secret_file(path: str, what: str) -> str:
    """The stripped contents of a secret file; UserError (never the contents) when unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.read().strip()
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not secret:
        raise UserError(f"{what} {path} is empty")
    return secret


def secrets_dir(explicit: str | None = None) -> str:
    """The folder of key files: the explicit folder, else $NTHLAYER_SECRETS_DIR, else state/secrets
    (where the generated alertmanager.yml points ``routing_key_file`` by default). The one place that
    decides it."""
    from generators.alertmanager import DEFAULT_SECRETS_DIR

    return explicit or os.environ.get(SECRETS_DIR_ENV) or DEFAULT_SECRETS_DIR


def routing_key_file(service: str, directory: str | None = None) -> str:
    """Where a service's routing key is kept: ``<secrets dir>/<service>.key``."""
    from generators.alertmanager import routing_key_path

    return routing_key_path(service, secrets_dir(directory))


def write_secret_file(path: str, secret: str) -> None:
    """Write ``secret`` to ``path`` atomically, created 0600 in a folder created 0700."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover .tmp from an interrupted run keeps its old mode otherwise
        os.write(fd, secret.encode("ascii"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_routing_key(service: str, directory: str | None = None) -> str | None:
    """A service's stored routing key, or None when it has no key file."""
    path = routing_key_file(service, directory)
    if not os.path.isfile(path):
        return None
    return read_secret_file(path, "routing key file")
