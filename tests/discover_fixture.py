"""A real Prometheus holding service-graph and exporter series for the example services (services/*.yaml).

Eight days of samples every 15 minutes end at :data:`END`, so ``discover --since 7d --at END`` sees seven
whole days, each ``increase(...[1d])`` with no extrapolation: the rates below are exact.

Service graph (requests per second; days with traffic of the last seven):

======================================  =========  ======  ======================================
caller → callee                          source     rate    why
======================================  =========  ======  ======================================
checkout-web → payment-api               istio      20      declared; reported by both ends (not 40)
checkout-web → user-service              istio      10      declared
checkout-web → search-api                istio      5       new
edge-gateway → checkout-web              istio      50      declared
payment-api → user-service               istio      8       declared
payment-api → fraud-scorer               istio      2       no spec: an "unknown service"
payment-api → unknown                    istio      1       Istio's name for an unidentified workload: ignored
order-worker → payment-api               tempo      3       declared
order-worker → notification-service      tempo      0.05    new, below --min-rps 0.1
search-api → user-service                tempo      0.2     new, 2 of 7 days: low confidence
order-worker → postgresql                tempo      6       connection_type=database: ignored
order-worker → analytics-stream          tempo      1       connection_type=messaging_system: ignored
notification-service → user-service      linkerd    4       declared (an inbound series is ignored)
inventory-api → user-service             linkerd    0.5     new
======================================  =========  ======  ======================================

checkout-web → inventory-api is declared but absent: kept, removed by ``--prune``.

Exporters: pg_up{cluster=users-db, client_service=user-service} (declared), pg_up{cluster=orders-db,
client_service="order-worker,inventory-api"} (declared by order-worker, new for inventory-api),
pg_up{cluster=legacy} without client_service (tied to nobody), redis_up{redis_cluster=carts,
client_service=checkout-web} (declared), redis_up{redis_cluster=Rate_Limits, client_service=edge-gateway}
(new: name rate-limits), go_goroutines{job=search-api} (declared), go_goroutines{job=payment-api} (new),
kafka_brokers{kafka_cluster=orders, client_service=order-worker} (declared).
"""
from __future__ import annotations

import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

from prom_fixture import PrometheusServer, build_tsdb, start_prometheus

STEP = 900
PER_DAY = 86400 // STEP
END = 1714564800  # 2024-05-01T12:00:00Z
DAYS = 8
START = END - DAYS * 86400
STEPS = DAYS * PER_DAY

# (metric family, labels, requests per second, days of the last seven with traffic (None: all))
GRAPH: list[tuple[str, dict[str, str], str, tuple[int, ...] | None]] = [
    ("istio_requests", {"reporter": "source", "source_workload": "checkout-web",
                        "destination_workload": "payment-api"}, "20", None),
    ("istio_requests", {"reporter": "destination", "source_workload": "checkout-web",
                        "destination_workload": "payment-api"}, "20", None),
    ("istio_requests", {"reporter": "destination", "source_workload": "checkout-web",
                        "destination_workload": "user-service"}, "10", None),
    ("istio_requests", {"reporter": "source", "source_workload": "checkout-web",
                        "destination_workload": "search-api"}, "5", None),
    ("istio_requests", {"reporter": "destination", "source_workload": "edge-gateway",
                        "destination_workload": "checkout-web"}, "50", None),
    ("istio_requests", {"reporter": "destination", "source_workload": "payment-api",
                        "destination_workload": "user-service"}, "8", None),
    ("istio_requests", {"reporter": "source", "source_workload": "payment-api",
                        "destination_workload": "fraud-scorer"}, "2", None),
    ("istio_requests", {"reporter": "source", "source_workload": "payment-api",
                        "destination_workload": "unknown"}, "1", None),
    ("traces_service_graph_request", {"client": "order-worker", "server": "payment-api"}, "3", None),
    ("traces_service_graph_request", {"client": "order-worker", "server": "notification-service"}, "0.05", None),
    ("traces_service_graph_request", {"client": "search-api", "server": "user-service"}, "0.7", (3, 5)),
    ("traces_service_graph_request", {"client": "order-worker", "server": "postgresql",
                                      "connection_type": "database"}, "6", None),
    ("traces_service_graph_request", {"client": "order-worker", "server": "analytics-stream",
                                      "connection_type": "messaging_system"}, "1", None),
    ("response", {"direction": "outbound", "deployment": "notification-service",
                  "dst_deployment": "user-service"}, "4", None),
    ("response", {"direction": "inbound", "deployment": "user-service",
                  "dst_deployment": "analytics-stream"}, "9", None),
    ("response", {"direction": "outbound", "deployment": "inventory-api", "dst_deployment": "user-service"},
     "0.5", None),
]

GAUGES: list[tuple[str, dict[str, str]]] = [
    ("pg_up", {"cluster": "users-db", "client_service": "user-service"}),
    ("pg_up", {"cluster": "orders-db", "client_service": "order-worker,inventory-api"}),
    ("pg_up", {"cluster": "legacy"}),
    ("redis_up", {"redis_cluster": "carts", "client_service": "checkout-web"}),
    ("redis_up", {"redis_cluster": "Rate_Limits", "client_service": "edge-gateway"}),
    ("go_goroutines", {"job": "search-api"}),
    ("go_goroutines", {"job": "payment-api"}),
    ("kafka_brokers", {"kafka_cluster": "orders", "client_service": "order-worker"}),
]


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def _day_of(step: int) -> int:
    """Which of the last seven days (1-7, 7 ending at END) the increment into ``step`` falls in; 0: before."""
    seconds_before_end = (STEPS - step) * STEP
    return 7 - seconds_before_end // 86400 if seconds_before_end < 7 * 86400 else 0


def openmetrics_text() -> str:
    lines: list[str] = []
    families = list(dict.fromkeys(family for family, *_rest in GRAPH))
    for family in families:
        lines.append(f"# TYPE {family} counter")
        for name, labels, rate, days in GRAPH:
            if name != family:
                continue
            per_step = int(Decimal(rate) * STEP)
            value = 0
            for step in range(STEPS + 1):
                if step and (days is None or _day_of(step) in days):
                    value += per_step
                lines.append(f"{family}_total{{{_labels(labels)}}} {value} {START + step * STEP}")
    for family in dict.fromkeys(name for name, _labels_ in GAUGES):
        lines.append(f"# TYPE {family} gauge")
        for name, labels in GAUGES:
            if name == family:
                lines.extend(f"{family}{{{_labels(labels)}}} 1 {START + step * STEP}" for step in range(STEPS + 1))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


_SHARED: dict[str, object] = {}


def discovery_prometheus() -> PrometheusServer:
    """The shared discovery server (built once per test process; never stop it in a test)."""
    server = _SHARED.get("server")
    if isinstance(server, PrometheusServer) and server.process.poll() is None:
        return server
    root = Path(tempfile.mkdtemp(prefix="nthlayer-discover-"))
    import atexit

    def cleanup() -> None:
        held = _SHARED.pop("server", None)
        if isinstance(held, PrometheusServer):
            held.stop()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(cleanup)
    server = start_prometheus(build_tsdb(root, openmetrics_text()))
    _SHARED["server"] = server
    return server

