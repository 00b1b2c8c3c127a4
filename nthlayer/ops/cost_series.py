"""The observability cost NthLayer adds: how many series its recording rules create, measured from Prometheus.

The metric names are the generated rules' own (generators.slo_rules.rule_groups, the same function that
writes out/<service>/prometheus/slo-rules.yaml), so a rule added there is counted here without a list to
keep. Every recorded series carries its service's ``service`` label; one instant query counts them::

    count by (__name__, service) ({__name__=~"<recorded names>", service=~"<services>"})

A series counts when Prometheus has a sample of it within its lookback (5 minutes by default) before the
instant. Composite SLOs' series carry ``composite`` instead of ``service`` and are not counted here.
"""
from __future__ import annotations

from datetime import datetime

from generators.model import Service
from generators.slo_rules import rule_groups
from nthlayer.integrations.prometheus import PrometheusClient, PrometheusError
from nthlayer.ops.budget import regex_escape
from nthlayer.ops.cost import SeriesMeasurement


def recorded_names(service: Service) -> list[str]:
    """The names of the series the service's generated SLO rules record, sorted (none without SLOs)."""
    if not service.slos:
        return []
    return sorted({rule["record"] for group in rule_groups(service)["groups"] for rule in group["rules"]
                   if "record" in rule})


def series_query(services: list[Service]) -> str | None:
    """The PromQL that counts the services' recorded series by name and service (None: nothing recorded)."""
    names = sorted({name for service in services for name in recorded_names(service)})
    if not names:
        return None
    wanted = "|".join(regex_escape(s.name) for s in sorted(services, key=lambda s: s.name))
    return (f'count by (__name__, service) ({{__name__=~"{"|".join(regex_escape(n) for n in names)}", '
            f'service=~"{wanted}"}})')


def measure_series(client: PrometheusClient, services: list[Service], at: datetime) -> SeriesMeasurement:
    """Count, at ``at``, the series each service's recording rules created: (service, metric) → series,
    with a 0 for each name a service's rules record that Prometheus does not hold (rules not loaded yet)."""
    counts = {(service.name, name): 0 for service in services for name in recorded_names(service)}
    query = series_query(services)
    if query is not None:
        for sample in client.query(query, at):
            key = (sample.labels.get("service", ""), sample.labels.get("__name__", ""))
            if key not in counts:
                raise PrometheusError(f"Prometheus at {client.display_url} answered a series count for "
                                      f"{key} that the query did not ask for")
            counts[key] = int(sample.value)
    return SeriesMeasurement(at, client.display_url, counts)
