"""The internal model: frozen dataclasses built from a validated spec, tier defaults applied."""
from __future__ import annotations

from dataclasses import dataclass, replace
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


# The SLI kinds a `slos:` entry may declare (exactly one per SLO).
SLI_KINDS = ("availability", "latency", "events", "ratio_query", "threshold")
# Kinds whose SLI counts requests (events): they record request rates and can guard pages on traffic.
COUNTED_KINDS = frozenset({"availability", "latency", "events"})
THRESHOLD_OPS = ("<", "<=", ">", ">=", "==", "!=")


@dataclass(frozen=True)
class Alerting:
    """Per-SLO alerting switches: which alert families exist, and what they carry."""

    page: bool = True
    ticket: bool = True
    budget: bool = True
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SLO:
    kind: str  # one of SLI_KINDS
    objective: Decimal
    window_days: int
    threshold_ms: Decimal | None = None  # latency with the tier's / overrides' threshold in ms
    name: str = ""  # "" → the kind (the two default SLOs are named after their kinds)
    description: str = ""
    sli: SLI | None = None  # availability / latency: this SLO's own SLI (None: the service's)
    le: Decimal | None = None  # latency with an explicit threshold, in the histogram's unit
    bad: str | None = None  # events: exactly one of bad / good, plus total
    good: str | None = None
    total: str | None = None
    query: str | None = None  # ratio_query (with $window) or threshold's gauge expression
    op: str | None = None  # threshold: the condition a good minute meets
    value: Decimal | None = None
    alerting: Alerting = Alerting()
    # Requests per second below which pages stay silent; None: no guard. A default SLO takes the service's.
    guard: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.kind)

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
        """The latency threshold as the histogram's ``le`` value."""
        if self.le is not None:
            return self.le
        assert self.threshold_ms is not None
        return (self.threshold_ms / 1000).normalize()

    @property
    def counted(self) -> bool:
        """Whether the SLI counts requests (so request rates are recorded and pages can be guarded)."""
        return self.kind in COUNTED_KINDS

    def sli_of(self, service: "Service") -> SLI:
        """The SLI an availability or latency SLO reads: its own, or the service's."""
        return self.sli or service.sli


@dataclass(frozen=True)
class Scrape:
    port: int
    path: str
    targets: tuple[str, ...]  # empty: discover the service's DNS name


DEFAULT_SCRAPE_PORT = 9090
DEFAULT_SCRAPE_PATH = "/metrics"


@dataclass(frozen=True)
class KubernetesPlacement:
    """The spec's ``kubernetes`` block: where its manifests go. None / empty: the project's defaults
    (nthlayer.toml ``[kubernetes]``, applied by generators/kubernetes.py)."""

    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PagerDutyRef:
    service_id: str | None
    escalation_policy_id: str | None
    team_id: str | None
    schedule_ids: tuple[str, ...]
    escalation_emails: tuple[str, ...]
    urgency: str | None


@dataclass(frozen=True)
class DatadogSLO:
    """One SLO mirrored into Datadog: metric-based with ``good``/``total`` queries, else monitor-based."""
    name: str
    good: str | None = None
    total: str | None = None
    monitor_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Datadog:
    """The spec's ``datadog:`` block."""
    site: str | None
    tags: tuple[tuple[str, str], ...]
    slos: tuple[DatadogSLO, ...]  # in spec order


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
    kubernetes: KubernetesPlacement = KubernetesPlacement()
    argocd_app: str | None = None  # deploy.argocd_app: what `nthlayer rollback` rolls back
    datadog: Datadog | None = None  # None: no `datadog:` block, nothing in Datadog

    def slo(self, name: str) -> SLO:
        """The SLO called ``name`` (the default SLOs are called availability and latency)."""
        return next(s for s in self.slos if s.name == name)

    @property
    def technology_types(self) -> tuple[str, ...]:
        return tuple(sorted({t.type for t in self.technologies}))


def to_decimal(value: int | float) -> Decimal:
    # repr() of a float is the shortest text that round-trips: what the user wrote.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _matchers(spec: dict[str, str]) -> tuple[Matcher, ...]:
    return tuple(parse_matcher(k, v) for k, v in sorted(spec.items()))


def _own_sli(kind: str, spec: dict[str, Any], sli: SLI) -> SLI | None:
    """An availability/latency SLO's own SLI when its entry overrides any of the service's, else None."""
    if not spec:
        return None
    if kind == "availability":
        return replace(
            sli,
            selector=_matchers(spec["selector"]) if "selector" in spec else sli.selector,
            requests_metric=spec.get("requests_metric", sli.requests_metric),
            error_matchers=_matchers(spec["error_matchers"]) if "error_matchers" in spec else sli.error_matchers,
        )
    own = replace(
        sli,
        selector=_matchers(spec["selector"]) if "selector" in spec else sli.selector,
        latency_histogram=spec.get("histogram", sli.latency_histogram),
        latency_buckets=(tuple(sorted({to_decimal(b) for b in spec["buckets"]})) if "buckets" in spec
                         else sli.latency_buckets),
    )
    return None if own == sli else own


def alerting_of(alerting: dict[str, Any]) -> Alerting:
    """The switches, labels and annotations of an `alerting:` block (an SLO's or a composite's)."""
    return Alerting(
        page=alerting.get("page", True),
        ticket=alerting.get("ticket", True),
        budget=alerting.get("budget", True),
        labels=tuple(sorted(alerting.get("labels", {}).items())),
        annotations=tuple(sorted(alerting.get("annotations", {}).items())),
    )


def _build_slo(entry: dict[str, Any], tier: Tier, sli: SLI, window_days: int, min_request_rate: Decimal) -> SLO:
    """One `slos:` entry (schema-valid; generators.spec checks that it names exactly one SLI kind)."""
    kind = next((k for k in SLI_KINDS if k in entry), "availability")
    default_objective = tier.latency_target if kind == "latency" else tier.availability
    alerting = entry.get("alerting", {})
    guard: Decimal | None = None
    if kind in COUNTED_KINDS:
        rate = alerting.get("min_request_rate", min_request_rate)
        guard = None if rate is None else to_decimal(rate)
    fields: dict[str, Any] = {}
    body = entry[kind] if kind in entry else {}
    if kind in ("availability", "latency"):
        fields["sli"] = _own_sli(kind, body, sli)
    if kind == "latency":
        if "threshold" in body:
            fields["le"] = to_decimal(body["threshold"])
        else:
            fields["threshold_ms"] = to_decimal(tier.latency_ms)
    elif kind == "events":
        fields.update(bad=body.get("bad"), good=body.get("good"), total=body["total"])
    elif kind == "ratio_query":
        fields["query"] = body
    elif kind == "threshold":
        fields.update(query=body["query"], op=body["op"], value=to_decimal(body["value"]))
    return SLO(
        kind,
        to_decimal(entry.get("objective", default_objective)),
        int(entry["window"][:-1]) if "window" in entry else window_days,
        name=entry["name"],
        description=entry.get("description", ""),
        alerting=alerting_of(alerting),
        guard=guard,
        **fields,
    )


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
    min_request_rate = to_decimal(observability.get("min_request_rate", DEFAULT_MIN_REQUEST_RATE))
    if "slos" in data:
        slos = tuple(_build_slo(entry, tier, sli, window_days, min_request_rate) for entry in data["slos"])
    else:
        slos = (
            SLO("availability", to_decimal(overrides.get("availability", tier.availability)), window_days,
                guard=min_request_rate),
            SLO(
                "latency",
                to_decimal(overrides.get("latency_target", tier.latency_target)),
                window_days,
                threshold_ms=to_decimal(overrides.get("latency", tier.latency_ms)),
                guard=min_request_rate,
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
        min_request_rate=min_request_rate,
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
        kubernetes=KubernetesPlacement(
            namespace=data.get("kubernetes", {}).get("namespace"),
            labels=tuple(sorted(data.get("kubernetes", {}).get("labels", {}).items())),
        ),
        argocd_app=data.get("deploy", {}).get("argocd_app"),
        datadog=_datadog(data["datadog"]) if "datadog" in data else None,
    )


def _datadog(block: dict[str, Any]) -> Datadog:
    slos = tuple(DatadogSLO(name, entry.get("good"), entry.get("total"), tuple(entry.get("monitor_ids", ())))
                 for name, entry in block.get("slos", {}).items())
    return Datadog(block.get("site"), tuple(sorted(block.get("tags", {}).items())), slos)
