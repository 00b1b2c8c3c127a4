"""Alertmanager routing: one route per service, PagerDuty receivers that read their key from a file.

Pure. Each service gets a route matching ``service="<name>"`` with three
children chosen by the alert's ``severity`` label:

- ``page`` (burn-rate) and ``critical`` (catalog) → the service's PagerDuty
  receiver, Events API v2 severity ``critical``;
- ``ticket`` and ``warning`` → the same PagerDuty integration with severity
  ``warning`` and slower timings. PagerDuty makes that a low-urgency incident
  only on services whose urgency rule is ``severity_based`` (tier 2 by
  default); on a constant-urgency service the urgency stays the service's;
- ``info`` → a receiver without notifiers: visible in Alertmanager, notifies nobody.

A service whose spec has no ``pagerduty`` settings is not on PagerDuty: its
route ends at ``nthlayer-unrouted``, which notifies nobody either (validation
warns: generators/paging.py).

Routing keys are never written here: each receiver names a file
(``routing_key_file``, supported since Alertmanager 0.25) that
``nthlayer setup-pagerduty --write-routing-keys DIR`` fills.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, NamedTuple

from generators.model import Service
from generators.paging import uses_pagerduty
from generators.render import yaml_bytes
from generators.tiers import TIERS, Tier

DEFAULT_SECRETS_DIR = os.path.join("state", "secrets")
GROUP_BY = ["alertname", "service", "slo", "dependency"]
UNROUTED_RECEIVER = "nthlayer-unrouted"
SILENT_RECEIVER = "nthlayer-info"
PAGE_SEVERITIES = ("page", "critical")
TICKET_SEVERITIES = ("ticket", "warning")
INFO_SEVERITIES = ("info",)


class Timing(NamedTuple):
    group_wait: str
    group_interval: str
    repeat_interval: str


class Routing(NamedTuple):
    """All routing needs from one service: small and JSON-serialisable, so a build caches it per spec
    file and rewrites alertmanager.yml after a one-spec edit without loading every spec again."""

    name: str
    team: str
    tier: int
    paged: bool  # on PagerDuty (see uses_pagerduty)
    source: str

    @classmethod
    def of(cls, service: "Service | Routing") -> "Routing":
        if isinstance(service, Routing):
            return service
        return cls(service.name, service.team, service.tier.number, uses_pagerduty(service), service.source)


def routing_timing(tier: Tier, route: str) -> Timing:
    """Alertmanager timings of a route, from the tier table."""
    return Timing(*(tier.am_page_timing if route == "page" else tier.am_ticket_timing))


def key_file_name(service_name: str) -> str:
    return f"{service_name}.key"


def routing_key_path(service_name: str, secrets_dir: str) -> str:
    return os.path.join(secrets_dir, key_file_name(service_name))


def receiver_names(service: Service | Routing) -> tuple[str, str]:
    return (f"{service.name}-pagerduty", f"{service.name}-pagerduty-low")


def _regex(values: Iterable[str]) -> str:
    return "|".join(values)


def _timed(entry: dict[str, Any], timing: Timing) -> dict[str, Any]:
    entry.update(group_wait=timing.group_wait, group_interval=timing.group_interval,
                 repeat_interval=timing.repeat_interval)
    return entry


def service_route(service: Service | Routing) -> dict[str, Any]:
    """The service's subtree: matched on the service label, split by severity.

    A service without PagerDuty settings keeps its route (same grouping) but
    every branch ends at the notifier-less receiver.
    """
    service = Routing.of(service)
    page, ticket = receiver_names(service) if service.paged else (UNROUTED_RECEIVER, UNROUTED_RECEIVER)
    tier = TIERS[service.tier]
    return {
        "receiver": page,
        "matchers": [f'service="{service.name}"'],
        "group_by": list(GROUP_BY),
        "routes": [
            _timed({"receiver": page, "matchers": [f'severity=~"{_regex(PAGE_SEVERITIES)}"']},
                   routing_timing(tier, "page")),
            _timed({"receiver": ticket, "matchers": [f'severity=~"{_regex(TICKET_SEVERITIES)}"']},
                   routing_timing(tier, "ticket")),
            {"receiver": SILENT_RECEIVER, "matchers": [f'severity=~"{_regex(INFO_SEVERITIES)}"']},
        ],
    }


def _pagerduty_config(service: Routing, key_file: str, severity: str) -> dict[str, Any]:
    return {
        "routing_key_file": key_file,
        "send_resolved": True,
        "severity": severity,
        "client": "nthlayer",
        "description": '{{ .CommonLabels.alertname }} on ' + service.name
                       + '{{ if .CommonLabels.slo }} ({{ .CommonLabels.slo }} SLO){{ end }}',
        "details": {
            "service": service.name,
            "team": service.team,
            "tier": str(service.tier),
            "firing": '{{ .Alerts.Firing | len }}',
            "summary": '{{ .CommonAnnotations.summary }}',
        },
    }


def service_receivers(service: Service | Routing, secrets_dir: str) -> list[dict[str, Any]]:
    service = Routing.of(service)
    if not service.paged:
        return []
    page, ticket = receiver_names(service)
    key_file = routing_key_path(service.name, secrets_dir)
    return [
        {"name": page, "pagerduty_configs": [_pagerduty_config(service, key_file, "critical")]},
        {"name": ticket, "pagerduty_configs": [_pagerduty_config(service, key_file, "warning")]},
    ]


def alertmanager_config(services: Iterable[Service | Routing], secrets_dir: str = DEFAULT_SECRETS_DIR
                        ) -> dict[str, Any]:
    """A complete alertmanager.yml document for every service, in name order."""
    ordered = sorted(map(Routing.of, services), key=lambda s: s.name)
    receivers: list[dict[str, Any]] = [{"name": UNROUTED_RECEIVER}, {"name": SILENT_RECEIVER}]
    for service in ordered:
        receivers.extend(service_receivers(service, secrets_dir))
    return {
        "route": {
            "receiver": UNROUTED_RECEIVER,
            "group_by": list(GROUP_BY),
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [service_route(s) for s in ordered],
        },
        # A page already covers what its ticket says: hold the ticket while the page fires.
        "inhibit_rules": [{
            "source_matchers": [f'severity=~"{_regex(PAGE_SEVERITIES)}"'],
            "target_matchers": [f'severity=~"{_regex(TICKET_SEVERITIES + INFO_SEVERITIES)}"'],
            "equal": ["service", "slo", "dependency"],
        }],
        "receivers": receivers,
    }


def service_fragment(service: Service | Routing, secrets_dir: str = DEFAULT_SECRETS_DIR) -> dict[str, Any]:
    """One service's route and receivers, for merging into an Alertmanager config kept elsewhere."""
    return {"route": service_route(service), "receivers": service_receivers(service, secrets_dir)}


def alertmanager_files(services: Iterable[Service | Routing], alertmanager_dir: str,
                       secrets_dir: str = DEFAULT_SECRETS_DIR) -> dict[str, bytes]:
    """``{<alertmanager_dir>/alertmanager.yml: bytes}`` (dodo.py passes out/alertmanager).

    ``secrets_dir`` is written into the config as given: Alertmanager opens a
    relative ``routing_key_file`` from its working directory, so a deployment
    elsewhere passes an absolute folder (e.g. /etc/alertmanager/secrets).
    """
    ordered = sorted(map(Routing.of, services), key=lambda s: s.name)
    folders = sorted({os.path.dirname(s.source) or "." for s in ordered})
    sources = ", ".join(os.path.join(f, "*.yaml") for f in folders) or "no services"
    document = alertmanager_config(ordered, secrets_dir)
    return {os.path.join(alertmanager_dir, "alertmanager.yml"): yaml_bytes(document, sources)}
