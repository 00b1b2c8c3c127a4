"""SlothExport: each service's SLOs as a Sloth ``prometheus/v1`` spec, for teams that run Sloth.

Written to ``out/<service>/sloth/<service>-<window>.yaml``, one file per SLO window (Sloth takes the
period from its command line, ``sloth generate --default-slo-period=30d``, not from the spec). Built
from nthlayer's own model and queries, so Sloth computes the same SLIs nthlayer's rules record:

- availability, latency and events SLOs → ``sli.events`` (``error_query`` / ``total_query``);
- ratio_query SLOs → ``sli.raw.error_ratio_query``;
- threshold SLOs (time slices of a gauge) have no Sloth equivalent and are left out.

The range of every query is Sloth's ``{{.window}}`` template. Objectives are percentages, as Sloth
writes them; alert switches become ``page_alert``/``ticket_alert`` ``disable`` flags.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from nthlayer.plugin import API_VERSION, SLO, OutputFormat, Service, ratio_query, slo_queries

SLOTH_WINDOW = "{{.window}}"


def _alert_name(service: Service, slo: SLO) -> str:
    words = f"{service.name}-{slo.name}".replace("_", "-").split("-")
    return "".join(word.capitalize() for word in words if word) + "HighErrorRate"


def _percent(ratio: Decimal) -> Decimal:
    return (ratio * 100).normalize()  # written as 99.9, or 95 when whole


def _sli(service: Service, slo: SLO) -> dict[str, Any]:
    if slo.counted:
        bad, total = slo_queries(service, slo, SLOTH_WINDOW)
        return {"events": {"error_query": bad, "total_query": total}}
    return {"raw": {"error_ratio_query": ratio_query(service, slo, SLOTH_WINDOW)}}


def _slo(service: Service, slo: SLO) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": slo.name, "objective": _percent(slo.objective)}
    entry["description"] = slo.description or f"{service.name} {slo.name} ({slo.kind} SLO)"
    entry["sli"] = _sli(service, slo)
    alerting = slo.alerting
    entry["alerting"] = {
        "name": _alert_name(service, slo),
        "labels": {"team": service.team, **dict(alerting.labels)},
        "annotations": {"summary": f"{service.name} is burning its {slo.name} error budget",
                        **dict(alerting.annotations)},
        "page_alert": {"disable": not alerting.page, "labels": {"severity": "page"}},
        "ticket_alert": {"disable": not alerting.ticket, "labels": {"severity": "ticket"}},
    }
    return entry


class SlothExport(OutputFormat):
    """out/<service>/sloth/: the service's SLOs in Sloth's prometheus/v1 format."""

    name = "sloth"
    format = "sloth"
    api_version = API_VERSION

    def applies_to(self, service: Service) -> bool:
        return any(slo.kind != "threshold" for slo in service.slos)

    def render(self, service: Service) -> dict[str, Any]:
        by_window: dict[str, list[dict[str, Any]]] = {}
        for slo in service.slos:
            if slo.kind != "threshold":
                by_window.setdefault(slo.window, []).append(_slo(service, slo))
        labels = {"team": service.team, "tier": service.tier.name, **dict(service.labels)}
        return {f"{service.name}-{window}.yaml": {"version": "prometheus/v1", "service": service.name,
                                                  "labels": labels, "slos": slos}
                for window, slos in sorted(by_window.items())}
