"""OpenSLO v1 documents → service spec dicts (``nthlayer import openslo``), nthlayer's own output included.

Each document is checked against the OpenSLO v1 schema nthlayer validates its own output with; an invalid
one is an error. SLOs are grouped by ``spec.service``. SLIs map to SLI kinds:

- ``ratioMetric`` with ``counter: true`` (good or bad, plus total) → `events`; two selectors of one metric
  whose bad side only adds matchers → `availability`; a histogram's ``_bucket{le=…}`` over its ``_count``
  → `latency` with that threshold (the shapes nthlayer itself writes);
- ``ratioMetric`` ``raw`` or non-counter queries → `ratio_query`, when their range is written ``$window``
  (or Sloth's ``{{.window}}``); otherwise they have no window nthlayer could evaluate them over;
- ``thresholdMetric`` with the objective's ``op``/``value`` → `threshold` (good minutes).

A service whose SLOs are exactly nthlayer's two defaults (availability and latency with default alerting)
comes back without ``slos:``, its objectives as ``slo_overrides`` — the spec nthlayer exported it from.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from generators.errors import SpecError
from generators.importers.common import (
    Defaults,
    Draft,
    Imported,
    as_decimal,
    description as clean_description,
    dns_name,
    finish,
    lossy,
    warn,
    window_days,
)
from generators.importers.openslo_sli import Index, exact_condition, indicator
from generators.model import DEFAULT_WINDOW_DAYS
from generators.openslo import CONDITION_ANNOTATION
from generators.tiers import resolve_tier
from generators.yamlload import Located

API_VERSION = "openslo/v1"
_DURATION = re.compile(r"^([0-9]+)(m|h|d|w|M|Q|Y)$")
# metadata labels nthlayer writes on every document (generators.openslo): who owns it, not Prometheus labels.
_OWN_LABELS = ("service", "team", "tier", "slo", "owner")  # owner: the team when there is no team label
# The descriptions nthlayer generates for SLOs that have none (generators.openslo._objective_name).
_GENERATED_DESCRIPTION = re.compile(
    r"^[0-9.]+% of (requests succeed|requests complete within .+|minutes meet .+|events are good) over [0-9]+d$")
_WITHIN_MS = re.compile(r" within ([0-9.]+) ms over ")  # the tier's threshold (`latency: {}`), in ms


def _window(located: Located, warnings: list[SpecError]) -> int:
    """The SLO window in days (rolling), reporting what a day count cannot hold."""
    windows = located.data["spec"].get("timeWindow") or [{"duration": f"{DEFAULT_WINDOW_DAYS}d"}]
    window = windows[0]
    match = _DURATION.match(window["duration"])
    assert match, "the schema checks durations"
    count, unit = int(match.group(1)), match.group(2)
    days = {"d": count, "w": 7 * count}.get(unit)
    pointer = "/spec/timeWindow/0/duration"
    if days is None or not 1 <= days <= 99:
        warnings.append(lossy(located, pointer, f"time window {window['duration']}", "nthlayer windows are 1 to "
                              f"99 whole days; {DEFAULT_WINDOW_DAYS}d used"))
        days = DEFAULT_WINDOW_DAYS
    if window.get("isRolling") is False or "calendar" in window:
        warnings.append(lossy(located, "/spec/timeWindow/0", "calendar alignment", "nthlayer windows are rolling"))
    return days


def _alerting(index: Index, located: Located, tier: Any, days: int, warnings: list[SpecError]) -> dict[str, Any]:
    """Per-SLO switches from the SLO's alert policies. Policies matching nthlayer's own burn windows (their
    lookback, factor and severity) are understood; nthlayer's tier policy decides the rest, reported."""
    from generators.slo_maths import burn_factor, burn_windows

    policies = located.data["spec"].get("alertPolicies") or []
    if not policies:
        return {}
    known = {(w.long, burn_factor(w, days)): w.name for w in burn_windows(days)}
    severities: set[str] = set()
    foreign = False
    for number, item in enumerate(policies):
        pointer = f"/spec/alertPolicies/{number}"
        policy = index.get("AlertPolicy", item["alertPolicyRef"]) if "alertPolicyRef" in item else None
        spec = policy.data["spec"] if policy is not None else item.get("spec", {})
        conditions = spec.get("conditions") or []
        condition = conditions[0] if conditions else {}
        if "conditionRef" in condition:
            found = index.get("AlertCondition", condition["conditionRef"])
            condition = found.data if found is not None else {}
        body = condition.get("spec", {})
        rule = body.get("condition", {})
        threshold = as_decimal(rule.get("threshold"))
        name = known.get((rule.get("lookbackWindow"), threshold)) if threshold is not None else None
        severity = body.get("severity")
        if name is None or severity not in ("page", "ticket"):
            warnings.append(lossy(located, pointer, "alert policy", "nthlayer derives its burn-rate alerts from "
                                  "the tier (factors 14.4/6/3/1 over 1h/6h/1d/3d for 30 days)"))
            foreign = True
            continue
        severities.add(severity)
    if foreign:
        return {}  # someone else's alerting: the tier's policy stands, the policies are reported above
    # Only what nthlayer's own windows say: a tier that pages but no paging policy means paging was off.
    policy = resolve_tier(tier).burn_alerts
    result: dict[str, Any] = {}
    if "page" in policy.values() and "page" not in severities:
        result["page"] = False
    if "ticket" in policy.values() and "ticket" not in severities:
        result["ticket"] = False
    return result


def _metadata_warnings(located: Located, warnings: list[SpecError]) -> None:
    metadata = located.data["metadata"]
    for key in sorted(metadata.get("labels") or {}):
        if key not in _OWN_LABELS:
            warnings.append(lossy(located, f"/metadata/labels/{key}", f"label '{key}'", "OpenSLO labels classify "
                                  "documents; nthlayer's labels are Prometheus labels (add it under labels: if meant)"))
    if set(metadata.get("annotations") or {}) - {CONDITION_ANNOTATION}:
        warnings.append(lossy(located, "/metadata/annotations", "annotations", "nthlayer specs have no document "
                                                                               "annotations"))


def _slo_name(located: Located, service: str) -> str:
    metadata = located.data["metadata"]
    label = (metadata.get("labels") or {}).get("slo")
    if isinstance(label, str):
        return dns_name(label)
    name = metadata["name"]
    return dns_name(name[len(service) + 1:] if name.startswith(f"{service}-") and len(name) > len(service) + 1
                    else name)


def _slo_entries(index: Index, draft: Draft, slos: list[Located], tier: Any, warnings: list[SpecError]) -> None:
    """The draft's SLO entries (or, for nthlayer's two defaults, its slo_overrides), now that its tier is known."""
    entries: list[dict[str, Any]] = []
    days: list[int] = []
    for located in slos:
        spec = located.data["spec"]
        _metadata_warnings(located, warnings)
        base = _slo_name(located, draft.name)
        sli_document: Any = spec.get("indicator")
        at = "/spec/indicator/spec"
        if sli_document is None:
            sli_doc = index.get("SLI", spec["indicatorRef"])
            if sli_doc is None:
                warnings.append(lossy(located, "/spec/indicatorRef", f"SLO '{base}'",
                                      f"no SLI named '{spec['indicatorRef']}' is among the documents"))
                continue
            _metadata_warnings(sli_doc, warnings)
            sli_document, sli_at, sli_located = sli_doc.data, "/spec", sli_doc
        else:
            sli_at, sli_located = at, located
        window = _window(located, warnings)
        if spec.get("budgetingMethod") == "RatioTimeslices":
            warnings.append(lossy(located, "/spec/budgetingMethod", "budgeting method RatioTimeslices",
                                  "nthlayer counts events, or good minutes for threshold SLIs"))
        alerting = _alerting(index, located, tier, window, warnings)
        description = spec.get("description", "")
        objectives = spec["objectives"]
        for number, objective in enumerate(objectives):
            at_objective = f"/spec/objectives/{number}"
            name = base if len(objectives) == 1 else f"{base}-{number + 1}"
            if "indicator" in objective or "indicatorRef" in objective:
                warnings.append(lossy(located, at_objective, "objective", "composite SLOs are not supported"))
                continue
            for key in ("timeSliceTarget", "compositeWeight"):
                if key in objective and not (key == "timeSliceTarget" and objective[key] == 1):
                    warnings.append(lossy(located, f"{at_objective}/{key}", key, "nthlayer has no such setting"))
            slice_window = objective.get("timeSliceWindow")
            if slice_window is not None and slice_window not in ("1m", 60):
                warnings.append(lossy(located, f"{at_objective}/timeSliceWindow", f"time slice {slice_window}",
                                      "nthlayer's threshold SLIs judge each minute"))
            target = as_decimal(objective.get("target"))
            if target is None:
                percent = as_decimal(objective.get("targetPercent"))
                target = (percent / 100).normalize() if percent is not None else None
            if target is None or not 0 < target < 1:
                warnings.append(lossy(located, at_objective, f"SLO '{name}'", "its target is not above 0 and below 1"))
                continue
            kind = indicator(index, draft.name, sli_located, sli_at, sli_document.get("spec"), objective,
                              exact_condition(located), f"SLO '{name}'", warnings)
            if kind is None:
                continue
            ms = _WITHIN_MS.search(objective.get("displayName", ""))
            if "latency" in kind and ms and Decimal(ms.group(1)) == resolve_tier(tier).latency_ms \
                    and kind["latency"]["threshold"] * 1000 == Decimal(ms.group(1)):
                del kind["latency"]["threshold"]  # the tier's threshold, as the exported spec had it
            if "threshold" in kind and spec.get("budgetingMethod") == "Occurrences":
                warnings.append(warn(located, "/spec/budgetingMethod", "a threshold SLI is imported as good minutes "
                                                                        "(Timeslices), not occurrences"))
            entry: dict[str, Any] = {"name": name, "objective": target}
            if description and not _GENERATED_DESCRIPTION.match(description):
                entry["description"] = clean_description(located, "/spec/description", description, warnings)
            entry.update(kind)
            if alerting:
                entry["alerting"] = dict(alerting)
            if any(e["name"] == name for e in entries):
                warnings.append(lossy(located, "/metadata/name", f"SLO '{name}'",
                                      f"service '{draft.name}' already has an SLO "
                                      f"named '{name}'"))
                continue
            entries.append(entry)
            days.append(window)
    service_days, own_days = window_days(days)
    if service_days != DEFAULT_WINDOW_DAYS:
        draft.observability["window"] = f"{service_days}d"
    for number, own in enumerate(own_days):
        if own is not None:  # placed where the spec's documentation has it: after the objective
            entry = entries[number]
            entries[number] = {"name": entry.pop("name"), "objective": entry.pop("objective"),
                               "window": f"{own}d", **entry}
    if not _as_defaults(draft, entries, tier):
        draft.slos = entries


def _as_defaults(draft: Draft, entries: list[dict[str, Any]], tier: Any) -> bool:
    """Whether ``entries`` are nthlayer's two default SLOs; if so, write them as the spec that produces
    them (``slo_overrides`` and ``observability.sli``, no ``slos:``)."""
    entries = sorted(entries, key=lambda e: e["name"])
    if [e["name"] for e in entries] != ["availability", "latency"] or "availability" not in entries[0] \
            or "latency" not in entries[1] or any(set(e) - {"name", "objective", "availability", "latency"}
                                                  for e in entries):
        return False
    availability, latency = entries[0]["availability"], entries[1]["latency"]
    if availability.get("selector") != latency.get("selector"):
        return False  # the two defaults share the service's selector
    defaults = resolve_tier(tier)
    overrides: dict[str, Any] = {}
    if entries[0]["objective"] != defaults.availability:
        overrides["availability"] = entries[0]["objective"]
    threshold_ms = (latency["threshold"] * 1000).normalize() if "threshold" in latency else defaults.latency_ms
    if threshold_ms != defaults.latency_ms:
        overrides["latency"] = threshold_ms
    if entries[1]["objective"] != defaults.latency_target:
        overrides["latency_target"] = entries[1]["objective"]
    sli: dict[str, Any] = {}
    for source, target in (("selector", "selector"), ("requests_metric", "requests_metric"),
                           ("error_matchers", "error_matchers")):
        if source in availability:
            sli[target] = availability[source]
    if "histogram" in latency:
        sli["latency_histogram"] = latency["histogram"]
    if "buckets" in latency:
        sli["latency_buckets"] = latency["buckets"]
    if overrides:
        draft.observability["slo_overrides"] = overrides
    if sli:
        draft.observability["sli"] = sli
    draft.slos = None
    return True


def import_openslo(documents: list[Located], defaults: Defaults) -> Imported:
    """OpenSLO v1 documents (of one or more files) → one spec per service their SLOs name."""
    from generators.spec import schema_errors

    warnings: list[SpecError] = []
    errors: list[SpecError] = []
    index = Index()
    for located in documents:
        data = located.data
        version = data.get("apiVersion") if isinstance(data, dict) else None
        if isinstance(version, str) and version.startswith("openslo/") and version != API_VERSION:
            warnings.append(lossy(located, "/apiVersion", f"{data.get('kind', 'document')} of {version}",
                                  f"only {API_VERSION} is supported"))
            continue
        if not isinstance(data, dict) or version != API_VERSION:
            hint = " (this looks like a Sloth spec: use 'nthlayer import sloth')" \
                if isinstance(data, dict) and "version" in data else ""
            errors.append(located.error("", f"not an OpenSLO document: expected apiVersion: {API_VERSION}{hint}"))
            continue
        found = schema_errors(located, "openslo-v1.schema.json")
        if found:
            errors.extend(found)
            continue
        index.add(located, warnings)
    drafts: dict[str, Draft] = {}
    slos: dict[str, list[Located]] = {}
    teams: dict[str, list[tuple[str, Any, Located, str]]] = {}
    tiers: dict[str, list[tuple[str, Any, Located, str]]] = {}

    def draft_of(service: str, located: Located, pointer: str) -> Draft:
        name = dns_name(service)
        if name not in drafts:
            if name != service:
                warnings.append(warn(located, pointer, f"service name '{service}' imported as '{name}' "
                                                       "(nthlayer names are DNS labels)"))
            drafts[name] = Draft(name, located.error(pointer, ""))
        draft = drafts[name]
        if located.path not in draft.sources:
            draft.sources.append(located.path)
        labels = located.data["metadata"].get("labels") or {}
        for key in ("team", "owner"):
            if key in labels:
                teams.setdefault(name, []).append((f"label {key}", labels[key], located, f"/metadata/labels/{key}"))
        if "owner" in labels and "team" not in labels:
            warnings.append(warn(located, "/metadata/labels/owner", f"team {labels['owner']!r} assumed from the "
                                                                    "owner label"))
        if "tier" in labels:
            tiers.setdefault(name, []).append(("label tier", labels["tier"], located, "/metadata/labels/tier"))
        return draft

    for name, located in index.by_kind.get("Service", {}).items():
        draft = draft_of(name, located, "/metadata/name")
        index.used.add(("Service", name))
        _metadata_warnings(located, warnings)
        description = located.data["spec"].get("description", "")
        if description and not re.match(rf"^{re.escape(name)}, owned by \S+ \(tier [123]\)$", description):
            draft.description = clean_description(located, "/spec/description", description, warnings)
    for name, located in index.by_kind.get("SLO", {}).items():
        index.used.add(("SLO", name))
        draft = draft_of(located.data["spec"]["service"], located, "/spec/service")
        slos.setdefault(draft.name, []).append(located)
    for name, located in index.by_kind.get("AlertNotificationTarget", {}).items():
        if located.data["spec"]["target"] == "pagerduty" and name.endswith("-pagerduty"):
            index.used.add(("AlertNotificationTarget", name))  # nthlayer's own: the spec's pagerduty block makes it

    def shape(draft: Draft, tier: Any) -> None:
        _slo_entries(index, draft, slos.get(draft.name, []), tier, warnings)

    result = finish(drafts, teams, tiers, defaults, warnings, shape)
    for kind, named in sorted(index.by_kind.items()):
        for name, located in sorted(named.items()):
            if (kind, name) not in index.used:
                warnings.append(lossy(located, "/metadata/name", f"{kind} '{name}'", "no imported SLO refers to it"
                                      if kind != "AlertNotificationTarget" else
                                      "nthlayer routes alerts from the spec's pagerduty block"))
    return result._replace(errors=result.errors + errors)


__all__ = ["import_openslo", "API_VERSION"]
