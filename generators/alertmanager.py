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

import hashlib
import os
from itertools import accumulate
from operator import itemgetter
from typing import Any, Iterable, NamedTuple

from generators.model import Service
from generators.paging import uses_pagerduty
from generators import render
from generators.render import header, to_yaml, yaml_bytes
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
    return alertmanager_text(services, alertmanager_dir, secrets_dir)[0]


class Layout(NamedTuple):
    """Where each service's text is in an alertmanager.yml :func:`alertmanager_text` wrote: its route item
    and its receivers, in name order, as byte offsets. Given back with the file (``previous``), it lets a
    build rewrite the file after an edit of a few specs by copying every other service's bytes instead of
    rendering them."""

    digest: str  # of the file's bytes (file_digest): the layout describes that file and no other
    routes_at: int  # bytes before the first service's route item
    receivers_at: int  # bytes before the first service's receivers
    services: list[tuple[str, str, int, bool, int, int]]  # name, team, tier, paged, route and receivers sizes


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def alertmanager_text(services: Iterable[Service | Routing], alertmanager_dir: str,
                      secrets_dir: str = DEFAULT_SECRETS_DIR, previous: tuple[bytes, Layout] | None = None
                      ) -> tuple[dict[str, bytes], Layout | None]:
    """:func:`alertmanager_files`, and the :class:`Layout` of the file (None: rendered whole, without one).
    ``previous``: the bytes of the file as last written (by the same code, for the same ``secrets_dir``)
    and their layout; each service whose routing facts it holds is copied from it: the same bytes."""
    ordered = sorted(map(Routing.of, services), key=itemgetter(0))  # by name
    # each source's folder (os.path.dirname of the part up to its last slash is the source's own)
    folders = sorted({os.path.dirname(head + "x") or "." for head in {s.source[:s.source.rfind("/") + 1] for s in ordered}})
    sources = ", ".join(os.path.join(f, "*.yaml") for f in folders) or "no services"
    path = os.path.join(alertmanager_dir, "alertmanager.yml")
    made = _config_layout(ordered, secrets_dir, header(sources), previous)
    if made is None:
        return {path: yaml_bytes(alertmanager_config(ordered, secrets_dir), sources)}, None
    data, routes_at, receivers_at, spans = made
    return {path: data}, Layout(file_digest(data), routes_at, receivers_at, spans)


# --- alertmanager.yml a service at a time --------------------------------------------------------------
# At 10,000 services alertmanager.yml is 15 MB and rendering it whole took seconds, on every build that
# changes a routing fact (a one-spec edit of a team). :func:`_config_text` writes the same text from
# pieces: the YAML emitter is context-free but for the indentation, so a service's route item rendered
# under the same keys at the same depth, with the wrapper's own lines cut off, is exactly its text in
# the whole document, and so are its receivers. Each piece is rendered once per (tier, paging, secrets
# folder) for stand-in name and team, and each service gets it with its own name and team put back, when
# that is certain to give the same text as rendering it: both are inert (render.INERT: no character
# YAML would quote or escape) and every string holding them keeps its YAML style (checked per service
# unless render.substitution_keeps_style proves it for any inert text). Anything else renders directly.
_NAME, _TEAM = "NthlayerNameX", "NthlayerTeamX"  # begin and end with a letter, as the style proof needs


def _route_text(route: dict[str, Any]) -> str | None:
    text = render._direct({"r": {"routes": [route]}})
    return None if text is None else text.split("\n", 2)[2]  # without "r:" and "  routes:"


def _receivers_text(receivers: list[dict[str, Any]]) -> str | None:
    if not receivers:
        return ""
    text = render._direct({"receivers": receivers})
    return None if text is None else text.split("\n", 1)[1]  # without "receivers:"


def _strings(node: Any, found: dict[tuple[str, bool], None]) -> None:
    """Every string of ``node`` holding a stand-in, and whether it is a mapping key."""
    if isinstance(node, dict):
        for key, value in node.items():
            if _NAME in key or _TEAM in key:
                found[(key, True)] = None
            _strings(value, found)
    elif isinstance(node, list):
        for item in node:
            _strings(item, found)
    elif isinstance(node, str) and (_NAME in node or _TEAM in node):
        found[(node, False)] = None


class _Piece(NamedTuple):
    text: str  # the route item and the receivers of the stand-in service
    # (string, is key, style, lead) to check per service; lead: 0 (name) or 1 (team) when the check holds
    # anyway for a real text of that stand-in starting with a character render.unresolved_start allows
    checks: tuple[tuple[str, bool, str | None, int], ...]
    sizes: tuple[tuple[int, int, int], ...]  # each stand-in string's length and its counts of each stand-in


def _piece(tier: int, paged: bool, secrets_dir: str) -> _Piece | None:
    standin = Routing(_NAME, _TEAM, tier, paged, "")
    route, receivers = service_route(standin), service_receivers(standin, secrets_dir)
    route_text, receivers_text = _route_text(route), _receivers_text(receivers)
    if route_text is None or receivers_text is None:
        return None
    found: dict[tuple[str, bool], None] = {}
    _strings([route, receivers], found)
    checks = []
    sizes = tuple((len(text), text.count(_NAME), text.count(_TEAM)) for text, _ in found)
    for text, key in found:
        words = tuple(word for word in (_NAME, _TEAM) if word in text)
        if not render.substitution_keeps_style(text, key, words):
            lead = next((index for index, word in enumerate((_NAME, _TEAM)) if text.startswith(word)), -1)
            if lead >= 0 and not render.substitution_keeps_style(text, key, words, lead_unresolved=True):
                lead = -1
            checks.append((text, key, render.scalar_style(text, key), lead))
    return _Piece(route_text + "\0" + receivers_text, tuple(checks), sizes)


def _service_text(service: Routing, secrets_dir: str, pieces: dict[tuple[int, bool], _Piece | None]
                  ) -> tuple[str, str] | None:
    """The service's route item and receivers, as rendering them gives (None: a piece fell back)."""
    key = (service.tier, service.paged)
    if key not in pieces:
        pieces[key] = _piece(service.tier, service.paged, secrets_dir)
    piece = pieces[key]
    name, team = service.name, service.team
    if piece is not None and render.INERT.match(name) and render.INERT.match(team) \
            and "Nthlayer" not in name and "Nthlayer" not in team \
            and all(size + names * (len(name) - len(_NAME)) + teams * (len(team) - len(_TEAM)) <= render.MAX_SCALAR
                    for size, names, teams in piece.sizes) \
            and all((lead >= 0 and render.unresolved_start((name, team)[lead][0]))
                    or render.scalar_style(text.replace(_NAME, name).replace(_TEAM, team), key) == style
                    for text, key, style, lead in piece.checks):
        route, _, receivers = piece.text.replace(_NAME, name).replace(_TEAM, team).partition("\0")
        return route, receivers
    route_text, receivers_text = _route_text(service_route(service)), _receivers_text(
        service_receivers(service, secrets_dir))
    if route_text is None or receivers_text is None:
        return None
    return route_text, receivers_text


def _config_text(ordered: list[Routing], secrets_dir: str, head_text: str = "",
                 previous: tuple[bytes, Layout] | None = None) -> str | None:
    """:func:`alertmanager_config` of ``ordered`` as YAML text, as :func:`render.to_yaml` writes it, after
    ``head_text`` (None: render it whole)."""
    made = _config_layout(ordered, secrets_dir, head_text, previous)
    return None if made is None else made[0].decode("utf-8")


def _config_layout(ordered: list[Routing], secrets_dir: str, head_text: str, previous: tuple[bytes, Layout] | None
                   ) -> tuple[bytes, int, int, list[tuple[str, str, int, bool, int, int]]] | None:
    """:func:`_config_text` as UTF-8, with where each service's bytes are (a :class:`Layout` but its
    digest). The services ``previous`` holds with the same routing facts, before and after the first and
    the last that differ, are copied from it in two slices; the others are rendered (a one-spec edit of
    10,000 services renders one). Joined once: at 10,000 services the file is 15 MB, and each
    concatenation of it was another copy in memory."""
    if not ordered:
        return None
    document = alertmanager_config([], secrets_dir)
    routes_head = render._direct({"route": {**document["route"], "routes": ["-"]}})
    inhibit = render._direct({"inhibit_rules": document["inhibit_rules"]})
    fixed = _receivers_text(document["receivers"])
    if routes_head is None or inhibit is None or fixed is None:
        return None
    head = (head_text + routes_head[:routes_head.rindex("  - ")]).encode("utf-8")  # up to and with "  routes:"
    middle = (inhibit + "receivers:\n" + fixed).encode("utf-8")
    spans = [(s.name, s.team, s.tier, s.paged) for s in ordered]
    data, old = previous if previous is not None else (b"", Layout("", 0, 0, []))
    kept = [(name, team, tier, paged) for name, team, tier, paged, _, _ in old.services]
    sizes = [(route, receivers) for _, _, _, _, route, receivers in old.services]
    if sum(route for route, _ in sizes) + old.routes_at > old.receivers_at \
            or old.receivers_at + sum(receivers for _, receivers in sizes) != len(data):
        kept, sizes = [], []  # a layout that does not fit the bytes: every service is rendered
    before = 0  # services the same at the start, and at the end (not overlapping)
    while before < min(len(spans), len(kept)) and spans[before] == kept[before]:
        before += 1
    after = 0
    while after < min(len(spans), len(kept)) - before and spans[-1 - after] == kept[-1 - after]:
        after += 1
    routes: list[bytes] = []
    receivers: list[bytes] = []
    pieces: dict[tuple[int, bool], _Piece | None] = {}
    made = []
    for service in ordered[before:len(ordered) - after]:
        texts = _service_text(service, secrets_dir, pieces)
        if texts is None:
            return None
        route, receiving = texts[0].encode("utf-8"), texts[1].encode("utf-8")
        routes.append(route)
        receivers.append(receiving)
        made.append((len(route), len(receiving)))
    route_at = list(accumulate((route for route, _ in sizes), initial=old.routes_at))  # where each one begins
    receivers_at = list(accumulate((receiving for _, receiving in sizes), initial=old.receivers_at))
    first, last = len(kept) - after, len(kept)
    body = [head, data[route_at[0]:route_at[before]], *routes, data[route_at[first]:route_at[last]], middle,
            data[receivers_at[0]:receivers_at[before]], *receivers, data[receivers_at[first]:receivers_at[last]]]
    new_sizes = [*sizes[:before], *made, *sizes[first:]]
    layout = [(*key, route, receiving) for key, (route, receiving) in zip(spans, new_sizes)]
    routes_at = len(head)
    return (b"".join(body), routes_at, routes_at + sum(route for route, _ in new_sizes) + len(middle), layout)
