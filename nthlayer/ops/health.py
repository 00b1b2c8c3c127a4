"""Readiness: can the state database be used and Prometheus be asked? (``GET /readyz``)."""
from __future__ import annotations

from nthlayer.integrations import prometheus as prom
from nthlayer.state.db import Opener

READY = ("ok", "not configured")  # the verdicts a ready server may have


def readiness(opener: Opener, client: prom.PrometheusClient | None) -> dict[str, str]:
    """Each dependency's verdict: ``ok``, ``not configured`` (no Prometheus URL) or ``unavailable: why``."""
    checks: dict[str, str] = {}
    try:
        with opener() as con:
            con.execute("SELECT 1").fetchall()
        checks["state"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["state"] = f"unavailable: {exc}"
    if client is None:
        checks["prometheus"] = "not configured"
    else:
        try:
            client.query("vector(1)")
            checks["prometheus"] = "ok"
        except prom.PrometheusError as exc:
            checks["prometheus"] = f"unavailable: {exc}"
    return checks
