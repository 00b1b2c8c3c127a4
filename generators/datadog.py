"""Datadog desired state for one service with a ``datadog:`` block: service definition, SLOs, burn-rate monitors.

Pure: the document says what Datadog should hold. Ids only Datadog knows (an SLO's id, which its
burn-rate monitors name in their query) stay symbolic: a monitor's ``query`` holds ``{slo_id}``,
``nthlayer setup-datadog`` fills it in when it plans.

Every object nthlayer manages carries the tag ``nthlayer-id:<service>.<slo>[.<window>]``: that tag, not
the name, is how a rerun (or a run resuming after a failure) finds what an earlier run created.

- An SLO with Datadog ``good``/``total`` queries is *metric-based*: Datadog counts the events itself.
- An SLO with ``monitor_ids`` is *monitor-based*: its SLI is the uptime of monitors that already exist in
  Datadog (nthlayer cannot write them: Datadog does not read our Prometheus recording rules).
- Burn-rate monitors (``slo alert``) are made for metric-based SLOs, with the windows, factors and
  severities of the Prometheus burn-rate alerts (generators.slo_rules). Datadog computes burn rates of a
  monitor-based SLO only when its monitors are metric monitors, which the build cannot check, and limits a
  burn-rate monitor's long window to 48 hours: what is left out is listed under ``not_mirrored``.
"""
from __future__ import annotations

import os
from typing import Any

from generators.model import SLO, DatadogSLO, Service
from generators.render import json_bytes
from generators.slo_maths import burn_factor, clean, duration_seconds
from generators.slo_rules import burn_alert_name, enabled_burn_windows, num

DOCUMENT_VERSION = 1
MANAGED_TAG = "managed-by:nthlayer"
ID_TAG = "nthlayer-id"  # nthlayer-id:<service>.<slo>[.<window>]: how setup-datadog finds its objects
SLO_ID = "{slo_id}"  # in a monitor query: the SLO's id, known after apply
MAX_LONG_WINDOW_SECONDS = 48 * 3600  # Datadog's limit on a burn-rate monitor's long window
# Software Catalog service types (schema v2.2) for our service types.
SERVICE_TYPES = {"api": "web", "web": "web", "grpc": "web", "worker": "custom", "stream": "custom",
                 "batch": "custom"}
_PRIORITY = {"page": 1, "critical": 1}  # Datadog monitor priority 1 (P1) pages; tickets are P3


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else f"{text}."


def dd_window(duration: str) -> str:
    """A Prometheus duration as Datadog's burn_rate() windows write it: hours, else minutes (1d → 24h)."""
    seconds = duration_seconds(duration)
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m"


def id_tag(service: Service, *parts: str) -> str:
    return f"{ID_TAG}:{'.'.join((service.name, *parts))}"


def base_tags(service: Service) -> list[str]:
    """The tags every object of the service carries: service, team, tier, the spec's, managed-by."""
    assert service.datadog is not None
    tags = [f"service:{service.name}", f"team:{service.team}", f"tier:{service.tier.number}", MANAGED_TAG]
    tags += [f"{key}:{value}" for key, value in service.datadog.tags]
    return tags


def notification(service: Service) -> str:
    """Who a monitor notifies: the service's PagerDuty service, through Datadog's PagerDuty integration."""
    return f"@pagerduty-{service.name}"


def service_definition(service: Service) -> dict[str, Any]:
    """The Software Catalog entry (schema v2.2)."""
    definition: dict[str, Any] = {
        "schema-version": "v2.2",
        "dd-service": service.name,
        "team": service.team,
        "tier": str(service.tier.number),
        "type": SERVICE_TYPES.get(service.type, "custom"),
        "description": _sentence(service.description.strip() or f"{service.name}, tier {service.tier.number}")
        + " Managed by nthlayer.",
        "tags": base_tags(service),
    }
    if service.runbook_url:
        definition["links"] = [{"name": "Runbook", "type": "runbook", "url": service.runbook_url}]
    return definition


def _slo_body(service: Service, slo: SLO, entry: DatadogSLO) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"{service.name} {slo.name}",
        "description": _sentence(slo.description.strip() or f"{service.name} {slo.name} SLO") + " Managed by nthlayer.",
        "tags": [*base_tags(service), f"slo:{slo.name}", id_tag(service, slo.name)],
        "thresholds": [{"timeframe": f"{slo.window_days}d", "target": clean(slo.objective * 100)}],
    }
    if entry.good is not None:
        body["type"] = "metric"
        body["query"] = {"numerator": entry.good, "denominator": entry.total}
    else:
        body["type"] = "monitor"
        body["monitor_ids"] = list(entry.monitor_ids)
    return body


def _monitor(service: Service, slo: SLO, window: Any, severity: str) -> dict[str, Any]:
    factor = burn_factor(window, slo.window_days)
    query = (f'burn_rate("{SLO_ID}").over("{slo.window_days}d").long_window("{dd_window(window.long)}")'
             f'.short_window("{dd_window(window.short)}") > {num(factor)}')
    message = (f"{service.name} {slo.name}: the error budget is burning {num(factor)}x too fast over both "
               f"{window.long} and {window.short} ({severity}).")
    if service.runbook_url:
        message += f" Runbook: {service.runbook_url}"
    return {
        "key": f"{slo.name}.{window.name}",
        "slo": slo.name,
        "body": {
            "type": "slo alert",
            "name": f"{service.name} {slo.name} {burn_alert_name(window)}",
            "query": query,
            "message": f"{message} {notification(service)}",
            "tags": [*base_tags(service), f"slo:{slo.name}", f"severity:{severity}",
                     id_tag(service, slo.name, window.name)],
            "priority": _PRIORITY.get(severity, 3),
            "options": {"thresholds": {"critical": factor}},
        },
    }


def desired_state(service: Service) -> dict[str, Any]:
    """The Datadog objects one service needs, as a JSON-ready dict (no secrets, no clock)."""
    assert service.datadog is not None
    slos: list[dict[str, Any]] = []
    monitors: list[dict[str, Any]] = []
    not_mirrored: list[str] = []
    for entry in service.datadog.slos:
        slo = service.slo(entry.name)
        slos.append({"key": slo.name, "body": _slo_body(service, slo, entry)})
        for window, severity in enabled_burn_windows(service, slo):
            if entry.good is None:
                not_mirrored.append(f"{slo.name} {window.name} burn-rate monitor: monitor-based SLO")
            elif duration_seconds(window.long) > MAX_LONG_WINDOW_SECONDS:
                not_mirrored.append(f"{slo.name} {window.name} burn-rate monitor: {window.long} long window "
                                    "(Datadog allows 48h at most)")
            else:
                monitors.append(_monitor(service, slo, window, severity))
    return {
        "version": DOCUMENT_VERSION,
        "service_name": service.name,
        "site": service.datadog.site,
        "service_definition": service_definition(service),
        "slos": slos,
        "monitors": monitors,
        "not_mirrored": not_mirrored,
    }


def datadog_files(service: Service, service_dir: str) -> dict[str, bytes]:
    """``{<service_dir>/datadog.json: bytes}`` for a service with a ``datadog:`` block, else nothing."""
    if service.datadog is None:
        return {}
    return {os.path.join(service_dir, "datadog.json"): json_bytes(desired_state(service), service.source)}
