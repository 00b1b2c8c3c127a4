"""Where setup-pagerduty keeps the Events API v2 routing keys: the ``pagerduty_integrations`` table.

The keys are secrets: they live only in the DuckDB state file and in the
routing-key files Alertmanager reads (mode 0600), never in out/ and never
printed beyond their last four characters.
"""
from __future__ import annotations

import contextlib
import os
from datetime import datetime, timezone
from typing import Any, Iterator, NamedTuple

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS pagerduty_integrations (
    service VARCHAR PRIMARY KEY,
    integration_id VARCHAR NOT NULL,
    routing_key VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL
)
"""


class Integration(NamedTuple):
    service: str
    integration_id: str
    routing_key: str


def masked(secret: str) -> str:
    """A secret as it may be shown: its last four characters at most."""
    return "…" + secret[-4:] if len(secret) > 8 else "…"


@contextlib.contextmanager
def connect(path: str | None = None) -> Iterator[Any]:
    """A state connection (nthlayer.state: migrations, lock waits, one transaction) with our table present."""
    from nthlayer.state import connect as state_connect

    with state_connect(path) as connection:
        connection.execute(CREATE_TABLE)
        yield connection


def save_integration(path: str | None, integration: Integration) -> None:
    from nthlayer.state import to_db

    now = to_db(datetime.now(timezone.utc))
    with connect(path) as connection:
        connection.execute(
            "INSERT OR REPLACE INTO pagerduty_integrations (service, integration_id, routing_key, updated_at) "
            "VALUES (?, ?, ?, ?)",
            [integration.service, integration.integration_id, integration.routing_key, now],
        )


def load_integrations(path: str | None, services: list[str] | None = None) -> dict[str, Integration]:
    with connect(path) as connection:
        rows = connection.execute(
            "SELECT service, integration_id, routing_key FROM pagerduty_integrations ORDER BY service").fetchall()
    found = {row[0]: Integration(row[0], row[1], row[2]) for row in rows}
    if services is not None:
        found = {name: found[name] for name in services if name in found}
    return found


def write_routing_keys(integrations: dict[str, Integration], directory: str) -> list[str]:
    """Write ``DIR/<service>.key`` (mode 0600, created that way) for each integration; return the paths."""
    from generators.alertmanager import key_file_name

    os.makedirs(directory, mode=0o700, exist_ok=True)
    written: list[str] = []
    for name in sorted(integrations):
        path = os.path.join(directory, key_file_name(name))
        tmp = f"{path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, integrations[name].routing_key.encode("ascii"))
        finally:
            os.close(fd)
        os.replace(tmp, path)
        written.append(path)
    return written
