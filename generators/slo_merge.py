"""SLO entries from elsewhere (an SLO generator plugin) merged into a spec, in the spec's own terms.

Pure: a spec document and a list of ``slos:`` entries in, a new document out, which the caller
validates with the spec's own checks (generators.spec.validate_located). Merging by name: an entry
naming an SLO the spec has overrides it key by key (naming an SLI kind replaces the SLO's SLI), a new
name is appended. A spec with the default availability/latency pair (no ``slos:``) is first written
as the equivalent ``slos:`` list, so both forms merge alike.
"""
from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any, Mapping, Sequence

from generators.model import SLI_KINDS
from generators.tiers import resolve_tier


class EntryProblem(ValueError):
    """A returned entry that is not an SLO entry at all (not a mapping, no name): ``index`` says which."""

    def __init__(self, index: int | None, message: str) -> None:
        super().__init__(message)
        self.index = index


def plain(value: Any) -> Any:
    """``value`` as the JSON-like data a YAML spec holds: mappings as dicts, sequences (not strings) as
    lists, Decimal as int or float; anything else as it is (the schema then says what is wrong)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:  # most values: no ABC checks
        return value
    if kind is dict or isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if kind is list or kind is tuple or isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    return value


def default_slo_entries(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``slos:`` form of a spec's default pair: the same objectives, window and thresholds."""
    tier = resolve_tier(data["tier"])
    overrides = data.get("observability", {}).get("slo_overrides", {})
    latency: dict[str, Any] = {}
    if "latency" in overrides:  # milliseconds there; the histogram's unit (seconds) here
        latency["threshold"] = plain(Decimal(repr(overrides["latency"])) / 1000)
    return [
        {"name": "availability", "objective": overrides.get("availability", plain(tier.availability)),
         "availability": {}},
        {"name": "latency", "objective": overrides.get("latency_target", plain(tier.latency_target)),
         "latency": latency},
    ]


def merge_slo_entries(data: Mapping[str, Any], entries: Any) -> tuple[dict[str, Any], dict[int, int]]:
    """``data`` (a schema-valid spec document, not modified) with ``entries`` merged into its SLOs; and,
    for each ``slos`` index an entry wrote, that entry's index in ``entries`` (to word errors in the
    caller's terms). Raise :class:`EntryProblem` when ``entries`` is not a list of named mappings."""
    if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
        raise EntryProblem(None, f"must return a list of SLO entries, not {type(entries).__name__}")
    merged = copy.deepcopy(dict(data))
    if "slos" in merged:
        slos = merged["slos"]
    else:
        slos = default_slo_entries(merged)
        observability = merged.get("observability", {})
        observability.pop("slo_overrides", None)
    where = {entry["name"]: index for index, entry in enumerate(slos)}
    origins: dict[int, int] = {}
    for number, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise EntryProblem(number, f"an SLO entry must be a mapping, not {type(entry).__name__}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise EntryProblem(number, "an SLO entry needs a 'name' (text)")
        entry = plain(entry)
        if name in where:
            current = slos[where[name]]
            if any(kind in entry for kind in SLI_KINDS):  # a new SLI replaces the old one
                for kind in SLI_KINDS:
                    current.pop(kind, None)
            current.update(entry)
            origins[where[name]] = number
        else:
            where[name] = len(slos)
            origins[len(slos)] = number
            slos.append(entry)
    merged["slos"] = slos
    return merged, origins


__all__ = ["EntryProblem", "default_slo_entries", "merge_slo_entries", "plain"]
