"""Sloth ``prometheus/v1`` specs → service spec dicts (``nthlayer import sloth``).

Facts of Sloth's format this relies on: a document has ``version: prometheus/v1``, ``service``,
``labels`` (on every rule) and ``slos``; an SLO has ``name``, ``objective`` (a percentage), optional
``description``, ``labels`` and ``plugins``, exactly one SLI (``events: {error_query, total_query}``,
``raw: {error_ratio_query}`` or ``plugin: {id, options}``) and ``alerting`` (``name``, ``labels``,
``annotations``, ``page_alert`` / ``ticket_alert`` each with ``disable``, ``labels``, ``annotations``).
Queries carry the Go template ``{{.window}}`` (spaces allowed inside the braces) for the range.

Mapping: an events SLI whose two queries are each ``sum(rate(SELECTOR[{{.window}}]))`` (or
``increase``) becomes an `events` SLI of the two selectors, which nthlayer rates itself; any other
events SLI becomes a `ratio_query` ``(error) / (total)``, and a raw SLI its query, with
``{{.window}}`` → ``$window``. Everything else is reported where it cannot be carried over.
"""
from __future__ import annotations

from typing import Any

from generators.errors import SpecError
from generators.importers.common import (
    TEMPLATE_WINDOW,
    WINDOW_PLACEHOLDER,
    MAX_LABEL_VALUE,
    Defaults,
    Draft,
    Imported,
    description,
    dns_name,
    finish,
    label_name_ok,
    lossy,
    percent_to_ratio,
    warn,
)
from generators.importers.sloth_queries import (
    events_pair,
    grouped,
    latency_sli,
    window_query,
)
from generators.spec import RESERVED_LABELS
from generators.yamlload import Located

VERSION = "prometheus/v1"
_SLO_KEYS = ("name", "objective", "description", "labels", "plugins", "sli", "alerting")
_ALERTING_KEYS = ("name", "labels", "annotations", "page_alert", "ticket_alert")
_ALERT_KEYS = ("disable", "labels", "annotations")
# What decides the spec's team and tier when the Sloth labels carry them (first found wins).
TEAM_LABELS = ("team", "owner")
TIER_LABEL = "tier"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _checked_mapping(located: Located, pointer: str, value: Any, warnings: list[SpecError]) -> dict[str, Any]:
    """``value`` when it is a mapping; anything else but absent is reported (and read as empty)."""
    if value is not None and not isinstance(value, dict):
        warnings.append(lossy(located, pointer, f"'{pointer.rsplit('/', 1)[-1]}'", "it is not a mapping"))
    return _mapping(value)


def _string_map(located: Located, pointer: str, value: Any, what: str, warnings: list[SpecError]) -> dict[str, str]:
    """A Sloth label/annotation map, keeping entries that are valid Prometheus label names with text values."""
    kept: dict[str, str] = {}
    for key, item in _checked_mapping(located, pointer, value, warnings).items():
        if not label_name_ok(key) or not isinstance(item, (str, int, float)) or isinstance(item, bool):
            warnings.append(lossy(located, f"{pointer}/{key}", f"{what} '{key}'",
                                  "it is not a Prometheus label name with a text value"))
            continue
        if what == "label" and len(str(item)) > MAX_LABEL_VALUE:
            warnings.append(lossy(located, f"{pointer}/{key}", f"{what} '{key}'",
                                  f"its value is longer than {MAX_LABEL_VALUE} characters"))
            continue
        kept[key] = str(item)
    return kept


def _sli(located: Located, at: str, sli: Any, what: str, warnings: list[SpecError]) -> dict[str, Any] | None:
    """The SLI kind entry (``{events: …}`` or ``{ratio_query: …}``) of a Sloth SLI, or None (reported)."""
    from generators.slo_spec import query_problem

    sli = _checked_mapping(located, f"{at}/sli", sli, warnings)
    kinds = [kind for kind in ("events", "raw", "plugin") if kind in sli]
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        warnings.append(lossy(located, f"{at}/sli", what, f"its SLI needs exactly one of events, raw or plugin "
                                                           f"(found: {found})"))
        return None
    kind = kinds[0]
    body = _checked_mapping(located, f"{at}/sli/{kind}", sli[kind], warnings)
    if kind == "plugin":
        warnings.append(lossy(located, f"{at}/sli/plugin", f"{what} (SLI plugin {body.get('id', '?')!r})",
                              "Sloth plugins are Go code nthlayer cannot run; declare the SLI's queries "
                              "as events or ratio_query"))
        return None
    keys = ("error_query", "total_query") if kind == "events" else ("error_ratio_query",)
    queries: dict[str, str] = {}
    for key in keys:
        query = body.get(key)
        if not isinstance(query, str) or not query.strip():
            warnings.append(lossy(located, f"{at}/sli/{kind}", what, f"its {kind} SLI has no {key}"))
            return None
        if not TEMPLATE_WINDOW.search(query):
            warnings.append(lossy(located, f"{at}/sli/{kind}/{key}", what,
                                  f"{key} does not use {{{{.window}}}} for its range"))
            return None
        queries[key] = query
    for key in body:
        if key not in keys:
            warnings.append(lossy(located, f"{at}/sli/{kind}/{key}", f"field '{key}'", "Sloth does not define it"))
    if kind == "events":
        pair = events_pair(queries["error_query"], queries["total_query"])
        if pair is not None:
            return {"events": {"bad": pair[0], "total": pair[1]}}
        latency = latency_sli(queries["error_query"], queries["total_query"])
        if latency is not None:
            if "buckets" in latency["latency"]:
                warnings.append(warn(located, f"{at}/sli/events/error_query", "histogram buckets assumed: the "
                                     f"default ones plus the threshold {latency['latency']['threshold']} (Sloth "
                                     "does not list them)"))
            return latency
        ratio = f"{grouped(queries['error_query'])}\n/\n{grouped(queries['total_query'])}"
        pointer = f"{at}/sli/events"
    else:
        ratio = window_query(queries["error_ratio_query"])
        pointer = f"{at}/sli/raw/error_ratio_query"
    problem = query_problem(ratio.replace(WINDOW_PLACEHOLDER, "5m"), counters=False)
    if problem:
        warnings.append(lossy(located, pointer, what, f"its query is {problem}" if problem.startswith("not ")
                              else f"of its query: {problem}"))
        return None
    return {"ratio_query": ratio}


def _alert_side(located: Located, at: str, side: str, alerting: dict[str, Any],
                warnings: list[SpecError]) -> tuple[bool, dict[str, str], dict[str, str]]:
    """(enabled, labels, annotations) of ``page_alert`` or ``ticket_alert``."""
    pointer = f"{at}/alerting/{side}"
    body = _checked_mapping(located, pointer, alerting.get(side), warnings)
    for key in body:
        if key not in _ALERT_KEYS:
            warnings.append(lossy(located, f"{pointer}/{key}", f"field '{key}'", "Sloth does not define it"))
    enabled = body.get("disable") is not True
    labels = _string_map(located, f"{pointer}/labels", body.get("labels"), "label", warnings)
    annotations = _string_map(located, f"{pointer}/annotations", body.get("annotations"), "annotation", warnings)
    return enabled, labels, annotations


def _shared(located: Located, at: str, what: str, sides: dict[str, tuple[bool, dict[str, str]]],
            warnings: list[SpecError]) -> dict[str, str]:
    """Page/ticket-specific labels (or annotations) nthlayer can keep: per SLO, nthlayer has one set for
    all its alerts, so an entry is kept when every enabled side has it with the same value."""
    enabled = {side: values for side, (on, values) in sides.items() if on}
    kept: dict[str, str] = {}
    for side, (on, values) in sorted(sides.items()):
        for key, value in sorted(values.items()):
            pointer = f"{at}/alerting/{side}/{what}s/{key}"
            if not on:
                warnings.append(lossy(located, pointer, f"{what} '{key}'", f"the {side} is disabled"))
            elif what == "label" and key in RESERVED_LABELS:
                warnings.append(lossy(located, pointer, f"{what} '{key}'", f"nthlayer sets '{key}' itself "
                                      "(page or ticket)" if key == "severity" else f"nthlayer sets '{key}' itself"))
            elif all(others.get(key) == value for others in enabled.values()):
                kept[key] = value
            else:
                warnings.append(lossy(located, pointer, f"{what} '{key}'", "nthlayer has one set of "
                                      f"{what}s for all alerts of an SLO and the other alert differs"))
    return kept


def _alerting(located: Located, at: str, alerting: Any, slo_labels: dict[str, str],
              warnings: list[SpecError]) -> dict[str, Any]:
    alerting = _checked_mapping(located, f"{at}/alerting", alerting, warnings)
    for key in alerting:
        if key not in _ALERTING_KEYS:
            warnings.append(lossy(located, f"{at}/alerting/{key}", f"field '{key}'", "Sloth does not define it"))
    if isinstance(alerting.get("name"), str):
        warnings.append(lossy(located, f"{at}/alerting/name", f"alert name '{alerting['name']}'",
                              "nthlayer names its burn-rate alerts itself (the 'slo' label tells SLOs apart)"))
    page, page_labels, page_notes = _alert_side(located, at, "page_alert", alerting, warnings)
    ticket, ticket_labels, ticket_notes = _alert_side(located, at, "ticket_alert", alerting, warnings)
    labels = dict(slo_labels)
    for key, value in _string_map(located, f"{at}/alerting/labels", alerting.get("labels"), "label", warnings).items():
        if key in RESERVED_LABELS:
            warnings.append(lossy(located, f"{at}/alerting/labels/{key}", f"label '{key}'",
                                  f"nthlayer sets '{key}' itself"))
        else:
            labels[key] = value
    annotations = _string_map(located, f"{at}/alerting/annotations", alerting.get("annotations"), "annotation",
                              warnings)
    labels.update(_shared(located, at, "label", {"page_alert": (page, page_labels),
                                                 "ticket_alert": (ticket, ticket_labels)}, warnings))
    annotations.update(_shared(located, at, "annotation", {"page_alert": (page, page_notes),
                                                           "ticket_alert": (ticket, ticket_notes)}, warnings))
    result: dict[str, Any] = {}
    if not page:
        result["page"] = False
    if not ticket:
        result["ticket"] = False
    if not page and not ticket:
        # Sloth has no budget alerts; an SLO with both its alerts disabled was meant to alert on nothing.
        result["budget"] = False
    if labels:
        result["labels"] = dict(sorted(labels.items()))
    if annotations:
        result["annotations"] = dict(sorted(annotations.items()))
    return result


def _slo(located: Located, at: str, raw: Any, warnings: list[SpecError]) -> dict[str, Any] | None:
    """One spec `slos:` entry from one Sloth SLO, or None (the reasons reported)."""
    if not isinstance(raw, dict):
        warnings.append(lossy(located, at, "SLO", "it is not a mapping"))
        return None
    for key in raw:
        if key not in _SLO_KEYS:
            warnings.append(lossy(located, f"{at}/{key}", f"field '{key}'", "Sloth does not define it"))
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        warnings.append(lossy(located, at, "SLO", "it has no name"))
        return None
    slug = dns_name(name)
    if slug != name:
        warnings.append(warn(located, f"{at}/name", f"SLO name '{name}' imported as '{slug}' "
                                                    "(nthlayer names are DNS labels)"))
    objective = percent_to_ratio(raw.get("objective"))
    if objective is None:
        warnings.append(lossy(located, f"{at}/objective", f"SLO '{name}'",
                              f"objective {raw.get('objective')!r} is not a "
                              "percentage above 0 and below 100 (100 % leaves no error budget)"))
        return None
    sli = _sli(located, at, raw.get("sli"), f"SLO '{name}'", warnings)
    if sli is None:
        return None
    if raw.get("plugins"):
        warnings.append(lossy(located, f"{at}/plugins", "SLO plugins", "nthlayer does not run Sloth plugins"))
    slo_labels = _string_map(located, f"{at}/labels", raw.get("labels"), "label", warnings)
    for key in sorted(slo_labels):
        if key in RESERVED_LABELS:
            warnings.append(lossy(located, f"{at}/labels/{key}", f"label '{key}'", f"nthlayer sets '{key}' itself"))
            del slo_labels[key]
    if slo_labels:
        warnings.append(lossy(located, f"{at}/labels", "SLO labels on recording rules",
                              "nthlayer puts per-SLO labels on alerts only (imported as alerting labels)"))
    entry: dict[str, Any] = {"name": slug, "objective": objective}
    if isinstance(raw.get("description"), str) and raw["description"].strip():
        entry["description"] = description(located, f"{at}/description", raw["description"], warnings)
    entry.update(sli)
    alerting = _alerting(located, at, raw.get("alerting"), slo_labels, warnings)
    if alerting:
        entry["alerting"] = alerting
    return entry


def import_sloth(documents: list[Located], defaults: Defaults) -> Imported:
    """Sloth ``prometheus/v1`` documents (of one or more files) → one spec per Sloth service.

    Documents naming the same service are merged (their SLOs in file order); a second SLO of the same
    name is reported and left out.
    """
    warnings: list[SpecError] = []
    errors: list[SpecError] = []
    drafts: dict[str, Draft] = {}
    teams: dict[str, list[tuple[str, Any, Located, str]]] = {}
    tiers: dict[str, list[tuple[str, Any, Located, str]]] = {}
    for located in documents:
        data = located.data
        if not isinstance(data, dict) or data.get("version") != VERSION:
            hint = (" (this looks like OpenSLO: use 'nthlayer import openslo')"
                    if isinstance(data, dict) and "apiVersion" in data else "")
            errors.append(located.error("/version" if isinstance(data, dict) and "version" in data else "",
                                        f"not a Sloth spec: expected version: {VERSION}{hint}"))
            continue
        service = data.get("service")
        if not isinstance(service, str) or not service.strip():
            errors.append(located.error("/service", "a Sloth spec needs a service name"))
            continue
        name = dns_name(service)
        if name != service:
            warnings.append(warn(located, "/service", f"service name '{service}' imported as '{name}' "
                                                      "(nthlayer names are DNS labels)"))
        for key in data:
            if key not in ("version", "service", "labels", "slos", "slo_plugins"):
                warnings.append(lossy(located, f"/{key}", f"field '{key}'", "Sloth does not define it"))
        if data.get("slo_plugins"):
            warnings.append(lossy(located, "/slo_plugins", "SLO plugins", "nthlayer does not run Sloth plugins"))
        draft = drafts.get(name)
        if draft is None:
            draft = drafts[name] = Draft(name, located.error("/service", ""))
        if located.path not in draft.sources:
            draft.sources.append(located.path)
        labels = _string_map(located, "/labels", data.get("labels"), "label", warnings)
        for key in TEAM_LABELS:
            if key in labels:
                teams.setdefault(name, []).append((f"label {key}", labels[key], located, f"/labels/{key}"))
        if "owner" in labels and "team" not in labels:
            warnings.append(warn(located, "/labels/owner", f"team '{labels['owner']}' assumed from the owner label"))
        if TIER_LABEL in labels:
            tiers.setdefault(name, []).append((f"label {TIER_LABEL}", labels[TIER_LABEL], located,
                                               f"/labels/{TIER_LABEL}"))
        for key, value in sorted(labels.items()):
            if key in RESERVED_LABELS:
                if key not in ("team", "tier"):  # those two became the spec's team and tier
                    warnings.append(lossy(located, f"/labels/{key}", f"label '{key}'", f"nthlayer sets '{key}' itself"))
            elif draft.labels.get(key, value) != value:
                warnings.append(lossy(located, f"/labels/{key}", f"label '{key}: {value}'", "another document of "
                                      f"service '{name}' sets it to '{draft.labels[key]}'"))
            else:
                draft.labels[key] = value
        taken = {slo["name"] for slo in draft.slos or []}
        slos = data.get("slos")
        if slos is not None and not isinstance(slos, list):
            warnings.append(lossy(located, "/slos", "slos", "it is not a list"))
            slos = []
        for index, raw in enumerate(slos or []):
            entry = _slo(located, f"/slos/{index}", raw, warnings)
            if entry is None:
                continue
            if entry["name"] in taken:
                warnings.append(lossy(located, f"/slos/{index}/name", f"SLO '{entry['name']}'",
                                      f"service '{name}' already has an SLO named '{entry['name']}'"))
                continue
            taken.add(entry["name"])
            assert draft.slos is not None
            draft.slos.append(entry)
    result = finish(drafts, teams, tiers, defaults, warnings)
    return result._replace(errors=result.errors + errors)


__all__ = ["import_sloth", "VERSION", "TEAM_LABELS", "TIER_LABEL"]
