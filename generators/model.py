"""The internal model: frozen dataclasses built from a validated spec, tier defaults applied."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from generators.tiers import Tier, resolve_tier

# prometheus/client_golang's DefBuckets, in seconds.
DEFAULT_BUCKETS: tuple[Decimal, ...] = tuple(
    Decimal(b) for b in ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10")
)
DEFAULT_WINDOW_DAYS = 30
DEFAULT_MIN_REQUEST_RATE = Decimal("0.05")  # requests per second: 3 per minute

# Default SLI metrics per service type. HTTP services follow the Prometheus
# client libraries' conventional names; gRPC services the go-grpc-prometheus ones.
_HTTP_SLI = ("http_requests_total", (("code", "=~", "5.."),), "http_request_duration_seconds")
_GRPC_SLI = (
    "grpc_server_handled_total",
    (("grpc_code", "=~", "Unknown|DeadlineExceeded|Internal|Unavailable|DataLoss"),),
    "grpc_server_handling_seconds",
)
SLI_DEFAULTS: dict[str, tuple[str, tuple[tuple[str, str, str], ...], str]] = {
    "api": _HTTP_SLI,
    "web": _HTTP_SLI,
    "grpc": _GRPC_SLI,
    "worker": _HTTP_SLI,
    "stream": _HTTP_SLI,
    "batch": _HTTP_SLI,
}

Matcher = tuple[str, str, str]  # (label, op, value) with op in = != =~ !~


def parse_matcher(label: str, value: str) -> Matcher:
    """A selector entry `label: value`; a value may start with =~, !=, !~ or = to pick the operator."""
    for op in ("=~", "!=", "!~", "="):
        if value.startswith(op):
            return (label, op, value[len(op):])
    return (label, "=", value)


@dataclass(frozen=True)
class Technology:
    type: str
    name: str
    selector: tuple[Matcher, ...]
    runbook_url: str | None


@dataclass(frozen=True)
class SLI:
    selector: tuple[Matcher, ...]
    requests_metric: str
    error_matchers: tuple[Matcher, ...]
    latency_histogram: str
    latency_buckets: tuple[Decimal, ...]


@dataclass(frozen=True)
class SLO:
    kind: str  # "availability" | "latency"
    objective: Decimal
    window_days: int
    threshold_ms: Decimal | None = None

    @property
    def name(self) -> str:
        return self.kind

    @property
    def error_budget(self) -> Decimal:
        return Decimal(1) - self.objective

    @property
    def window(self) -> str:
        return f"{self.window_days}d"

    @property
    def budget_minutes(self) -> Decimal:
        return self.error_budget * self.window_days * 24 * 60

    @property
    def threshold_seconds(self) -> Decimal:
        assert self.threshold_ms is not None
        return (self.threshold_ms / 1000).normalize()


@dataclass(frozen=True)
class Scrape:
    port: int
    path: str
    targets: tuple[str, ...]  # empty: discover the service's DNS name


DEFAULT_SCRAPE_PORT = 9090
DEFAULT_SCRAPE_PATH = "/metrics"


@dataclass(frozen=True)
class PagerDutyRef:
    service_id: str | None
    escalation_policy_id: str | None
    team_id: str | None
    schedule_ids: tuple[str, ...]
    escalation_emails: tuple[str, ...]
    urgency: str | None


@dataclass(frozen=True)
class Service:
    name: str
    source: str
    tier: Tier
    team: str
    type: str
    description: str
    runbook_url: str | None
    labels: tuple[tuple[str, str], ...]
    upstream: tuple[str, ...]
    technologies: tuple[Technology, ...]
    sli: SLI
    slos: tuple[SLO, ...]
    min_request_rate: Decimal
    pagerduty: PagerDutyRef
    scrape: Scrape = Scrape(DEFAULT_SCRAPE_PORT, DEFAULT_SCRAPE_PATH, ())

    def slo(self, kind: str) -> SLO:
        return next(s for s in self.slos if s.kind == kind)

    @property
    def technology_types(self) -> tuple[str, ...]:
        return tuple(sorted({t.type for t in self.technologies}))


def to_decimal(value: int | float) -> Decimal:
    # repr() of a float is the shortest text that round-trips: what the user wrote.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def build_service(data: dict[str, Any], source: str) -> Service:
    """Map a schema-valid spec dict to the model. Semantic checks live in generators.spec."""
    tier = resolve_tier(data["tier"])
    service_type = data.get("type", "api")
    observability = data.get("observability", {})
    overrides = observability.get("slo_overrides", {})
    sli_spec = observability.get("sli", {})
    window_days = int(observability.get("window", f"{DEFAULT_WINDOW_DAYS}d")[:-1])
    requests_metric, error_matchers, histogram = SLI_DEFAULTS[service_type]
    selector = sli_spec.get("selector", {"job": data["service"]})
    sli = SLI(
        selector=tuple(parse_matcher(k, v) for k, v in sorted(selector.items())),
        requests_metric=sli_spec.get("requests_metric", requests_metric),
        error_matchers=(
            tuple(parse_matcher(k, v) for k, v in sorted(sli_spec["error_matchers"].items()))
            if "error_matchers" in sli_spec else error_matchers
        ),
        latency_histogram=sli_spec.get("latency_histogram", histogram),
        latency_buckets=(
            tuple(sorted({to_decimal(b) for b in sli_spec["latency_buckets"]}))
            if "latency_buckets" in sli_spec else DEFAULT_BUCKETS
        ),
    )
    slos = (
        SLO("availability", to_decimal(overrides.get("availability", tier.availability)), window_days),
        SLO(
            "latency",
            to_decimal(overrides.get("latency_target", tier.latency_target)),
            window_days,
            threshold_ms=to_decimal(overrides.get("latency", tier.latency_ms)),
        ),
    )
    deps = data.get("dependencies", {})
    pd = data.get("pagerduty", {})
    return Service(
        name=data["service"],
        source=source,
        tier=tier,
        team=data["team"],
        type=service_type,
        description=data.get("description", ""),
        runbook_url=data.get("runbook_url"),
        labels=tuple(sorted(data.get("labels", {}).items())),
        upstream=tuple(deps.get("upstream", ())),
        technologies=tuple(
            Technology(
                type=t["type"],
                name=t["name"],
                selector=tuple(parse_matcher(k, v) for k, v in sorted(t.get("selector", {}).items())),
                runbook_url=t.get("runbook_url"),
            )
            for t in deps.get("technologies", ())
        ),
        sli=sli,
        slos=slos,
        min_request_rate=to_decimal(observability.get("min_request_rate", DEFAULT_MIN_REQUEST_RATE)),
        scrape=Scrape(
            port=observability.get("scrape", {}).get("port", DEFAULT_SCRAPE_PORT),
            path=observability.get("scrape", {}).get("path", DEFAULT_SCRAPE_PATH),
            targets=tuple(observability.get("scrape", {}).get("targets", ())),
        ),
        pagerduty=PagerDutyRef(
            service_id=pd.get("service_id"),
            escalation_policy_id=pd.get("escalation_policy_id"),
            team_id=pd.get("team_id"),
            schedule_ids=tuple(pd.get("schedule_ids", ())),
            escalation_emails=tuple(pd.get("escalation_emails", ())),
            urgency=pd.get("urgency"),
        ),
    )
