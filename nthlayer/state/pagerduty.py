"""What setup-pagerduty remembers about each service's Events API v2 integration.

The ``pagerduty_integrations`` table of the state database holds the integration id only. The routing
key is a secret: it lives only in ``<secrets dir>/<service>.key`` (mode 0600, nthlayer.integrations.secrets), the
file Alertmanager's ``routing_key_file`` reads, and is never printed beyond its last four characters.
Databases from before kept the key in the table: :func:`move_keys_out` (state migration 2) moves them
to key files on the first open.
"""
from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from typing import Any, Iterator, NamedTuple

from nthlayer.integrations.secrets import read_routing_key, routing_key_file, write_secret_file

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS pagerduty_integrations (
    service VARCHAR PRIMARY KEY,
    integration_id VARCHAR NOT NULL,
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


def move_keys_out(con: Any) -> bool:
    """State migration 2: the integrations table without a key column; keys found in it go to key files.

    Returns True when keys were moved: their bytes may linger in the database file's free blocks, so
    the caller rewrites the file."""
    columns = {row[0] for row in con.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = 'pagerduty_integrations'").fetchall()}
    if "routing_key" not in columns:
        con.execute(CREATE_TABLE)
        return False
    for service, key in con.execute("SELECT service, routing_key FROM pagerduty_integrations").fetchall():
        write_secret_file(routing_key_file(service), key)
    con.execute("ALTER TABLE pagerduty_integrations RENAME TO pagerduty_integrations_with_keys")
    con.execute(CREATE_TABLE)
    con.execute("INSERT INTO pagerduty_integrations SELECT service, integration_id, updated_at "
                "FROM pagerduty_integrations_with_keys")
    con.execute("DROP TABLE pagerduty_integrations_with_keys")
    return True


@contextlib.contextmanager
def connect(path: str | None = None) -> Iterator[Any]:
    """A state connection (nthlayer.state.db: migrations, lock waits, one transaction)."""
    from nthlayer.state.db import connect as state_connect

    with state_connect(path) as connection:
        yield connection


def save_integration(path: str | None, integration: Integration) -> None:
    """The key to its key file first (a key PagerDuty handed out must not be lost), then the id to state."""
    from nthlayer.state.db import to_db

    write_secret_file(routing_key_file(integration.service), integration.routing_key)
    now = to_db(datetime.now(timezone.utc))
    with connect(path) as connection:
        connection.execute(
            "INSERT OR REPLACE INTO pagerduty_integrations (service, integration_id, updated_at) VALUES (?, ?, ?)",
            [integration.service, integration.integration_id, now],
        )


def load_integrations(path: str | None, services: list[str] | None = None) -> dict[str, Integration]:
    """The integrations recorded in state whose key file exists, with their keys."""
    with connect(path) as connection:
        rows = connection.execute(
            "SELECT service, integration_id FROM pagerduty_integrations ORDER BY service").fetchall()
    found = {}
    for service, integration_id in rows:
        key = read_routing_key(service)
        if key is not None:
            found[service] = Integration(service, integration_id, key)
    if services is not None:
        found = {name: found[name] for name in services if name in found}
    return found


def write_routing_keys(integrations: dict[str, Integration], directory: str) -> list[str]:
    """Write ``DIR/<service>.key`` (mode 0600, created that way) for each integration; return the paths."""
    written: list[str] = []
    for name in sorted(integrations):
        path = routing_key_file(name, directory)
        write_secret_file(path, integrations[name].routing_key)
        written.append(path)
    return written
