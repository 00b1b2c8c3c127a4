"""FinancialSLO: the SLO floor a financial regulator sets for payment services.

Every service of team ``payments`` gets availability 99.99 % and a p99 latency SLO of 200 ms
(``latency-p99``: 99 % of requests complete within 0.2 s), on top of what its spec declares.

    nthlayer generate-slo --plugin examples/plugins/financial.py services/payment-api.yaml

The 200 ms threshold must be a bucket boundary of the service's latency histogram (the Go client's
default buckets have 0.1 and 0.25, not 0.2): declare ``observability.sli.latency_buckets`` with 0.2,
or the build refuses the service with a line saying so, rather than write an SLI that measures
something else.
"""
from __future__ import annotations

from nthlayer.plugin import API_VERSION, Service, SLOEntry, SLOGenerator

AVAILABILITY = 0.9999
LATENCY_THRESHOLD_SECONDS = 0.2
LATENCY_OBJECTIVE = 0.99  # p99


class FinancialSLO(SLOGenerator):
    """Availability 0.9999 and latency p99 under 200 ms for the payments team's services."""

    name = "financial"
    api_version = API_VERSION

    def applies_to(self, service: Service) -> bool:
        return service.team == "payments"

    def generate(self, service: Service) -> list[SLOEntry]:
        names = {slo.name for slo in service.slos}
        # Tighten the service's own availability SLO when it has one (keeping its SLI), else add one.
        availability: SLOEntry = ({"name": "availability", "objective": AVAILABILITY} if "availability" in names
                                  else {"name": "availability", "objective": AVAILABILITY, "availability": {}})
        return [
            availability,
            {"name": "latency-p99", "objective": LATENCY_OBJECTIVE,
             "description": "Financial services rule: 99 % of requests within 200 ms",
             "latency": {"threshold": LATENCY_THRESHOLD_SECONDS}},
        ]
