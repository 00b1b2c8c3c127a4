"""What the spec importers share: names made valid, the spec dict assembled in the house's key order,
its bytes with a where-from header, and lossy fields reported as warnings.

Each importer maps documents (``Located``, with line marks) to :class:`Draft` services and a list of
warnings (``SpecError`` with ``warning=True``): every field it could not carry over is one line,
``FILE:line:col: /pointer: warning: … not imported because …``. Pure: no I/O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, NamedTuple

from generators.errors import SpecError
from generators.model import DEFAULT_BUCKETS, DEFAULT_WINDOW_DAYS, Matcher
from generators.render import to_yaml
from generators.slo_spec import WINDOW_PLACEHOLDER
from generators.tiers import TIER_ALIASES, TIERS
from generators.yamlload import Located

# Sloth's window template (Go template syntax, spaces allowed inside the braces); OpenSLO documents written
# for Sloth carry it too. Imports turn it into the spec's own placeholder.
TEMPLATE_WINDOW = re.compile(r"\{\{\s*\.window\s*\}\}")
DEFAULT_TIER = 2  # "standard": neither Sloth nor OpenSLO has tiers; the middle one pages least by surprise
_TEAM = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Defaults(NamedTuple):
    """What the command line supplies where the source has nothing: ``--team`` and ``--tier``."""

    team: str | None = None
    tier: int | str = DEFAULT_TIER


@dataclass
class Draft:
    """One service being imported: the spec's fields, and where they came from."""

    name: str
    origin: SpecError  # where the service was first seen (for errors about the whole service)
    sources: list[str] = field(default_factory=list)
    team: str | None = None
    tier: int | str | None = None
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    observability: dict[str, Any] = field(default_factory=dict)
    slos: list[dict[str, Any]] | None = field(default_factory=list)  # None: the tier's default SLOs


class Imported(NamedTuple):
    """An importer's answer: spec dicts by service name, warnings (lossy fields, assumptions) and errors
    (a service that cannot be written at all, e.g. no team)."""

    specs: dict[str, dict[str, Any]]
    sources: dict[str, list[str]]
    warnings: list[SpecError]
    errors: list[SpecError]


def warn(located: Located, pointer: str, message: str) -> SpecError:
    return located.error(pointer, message, warning=True)


def lossy(located: Located, pointer: str, what: str, because: str) -> SpecError:
    """The one line that reports a field left behind."""
    return warn(located, pointer, f"{what} not imported because {because}")


def dns_name(text: str) -> str:
    """``text`` as a DNS label (lowercase letters, digits, '-'; at most 63): what service and SLO names must be."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].rstrip("-")
    return name or "unnamed"


def percent_to_ratio(value: Any) -> Decimal | None:
    """A percentage (99.9) as the exact ratio (0.999), or None when it is not a number in (0, 100)."""
    ratio = as_decimal(value)
    if ratio is None or not 0 < ratio < 100:
        return None
    return (ratio / 100).normalize()


def as_decimal(value: Any) -> Decimal | None:
    """A YAML number as the Decimal the user wrote (repr of a float is its shortest exact spelling)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


MAX_DESCRIPTION = 500  # the spec schema's limit
MAX_LABEL_VALUE = 200


def description(located: Located, pointer: str, text: str, warnings: list[SpecError]) -> str:
    """A description on one line, cut to the spec's limit (the cut reported)."""
    flat = " ".join(text.split())
    if len(flat) > MAX_DESCRIPTION:
        warnings.append(lossy(located, pointer, f"description past {MAX_DESCRIPTION} characters",
                              "the spec's descriptions are at most that long"))
    return flat[:MAX_DESCRIPTION]


def buckets_with(threshold: Decimal) -> list[Decimal]:
    """The default histogram buckets plus ``threshold``: what an import assumes when the source names a
    bucket boundary but not the buckets."""
    return sorted(set(DEFAULT_BUCKETS) | {threshold})


def label_name_ok(name: Any) -> bool:
    return isinstance(name, str) and bool(_LABEL_NAME.match(name))


def selector_spec(matchers: list[Matcher] | tuple[Matcher, ...]) -> dict[str, str]:
    """Matchers as a spec selector (``label: value``, a regex or negative match prefixed by its operator)."""
    spec = {}
    for label, op, value in matchers:
        if op == "=":
            # A value that itself starts like an operator needs the explicit '=' (generators.model.parse_matcher).
            spec[label] = "=" + value if value.startswith(("=", "!")) else value
        else:
            spec[label] = op + value
    return dict(sorted(spec.items()))


Candidate = tuple[str, Any, Located, str]  # (what, value, where it is, its pointer)


def _first_valid(candidates: list[Candidate], parse: Callable[[Any], Any], noun: str, invalid: str,
                 warnings: list[SpecError]) -> Any:
    """The parsed value of the first valid candidate (None if none). Invalid candidates, and valid ones
    that say something else than the chosen one, are reported."""
    chosen: tuple[Any, str] | None = None
    for what, value, located, pointer in candidates:
        parsed = parse(value)
        if parsed is None:
            warnings.append(lossy(located, pointer, f"{what} {value!r}", invalid))
        elif chosen is None:
            chosen = (parsed, what)
        elif parsed != chosen[0]:
            warnings.append(warn(located, pointer, f"{what} {value!r} not used as the {noun} because "
                                                   f"{chosen[1]} {chosen[0]!r} comes first"))
    return chosen[0] if chosen else None


def resolve_team(draft: Draft, candidates: list[Candidate], defaults: Defaults,
                 warnings: list[SpecError]) -> str | None:
    """The team: the first valid candidate from the source, else ``--team`` (reported as assumed)."""
    team = _first_valid(candidates, lambda v: v if isinstance(v, str) and _TEAM.match(v) else None, "team",
                        "it is not a valid team name (lowercase letters, digits, '-' and '_')", warnings)
    if team is not None:
        return str(team)
    if defaults.team is not None:
        warnings.append(warn(draft_located(draft), draft.origin.pointer,
                             f"team '{defaults.team}' assumed (from --team): the source names no team"))
    return defaults.team


def resolve_tier(draft: Draft, candidates: list[Candidate], defaults: Defaults,
                 warnings: list[SpecError]) -> int | str:
    """The tier: the first valid candidate from the source (1-3 or critical/standard/low, as number or
    text), else ``--tier`` (default 2), reported as assumed."""
    found = _first_valid(candidates, _tier_value, "tier", "it is not a tier (1, 2, 3, critical, standard or low)",
                         warnings)
    if found is not None:
        return found  # type: ignore[no-any-return]
    tier = _tier_value(defaults.tier)
    assert tier is not None, "the command line checks --tier"
    warnings.append(warn(draft_located(draft), draft.origin.pointer,
                         f"tier {tier} assumed (--tier, default {DEFAULT_TIER}): the source has no tier"))
    return tier


def _tier_value(value: Any) -> int | str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value in TIERS:
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit() and int(text) in TIERS:
            return int(text)
        if text in TIER_ALIASES:
            return text
    return None


def draft_located(draft: Draft) -> Located:
    """A stand-in ``Located`` that places messages where the draft's service was first seen."""
    origin = draft.origin
    located = Located(origin.path, None)
    located.marks[origin.pointer] = (origin.line, origin.col)
    return located


def window_days(days: list[int]) -> tuple[int, list[int | None]]:
    """The service's window and each SLO's own window
    (None where it is the service's)."""
    # The most common window (the first of equals) is the service's: what observability.window said.
    service = max(days, key=lambda d: (days.count(d), -days.index(d))) if days else DEFAULT_WINDOW_DAYS
    return service, [None if d == service else d for d in days]


def spec_dict(draft: Draft, team: str, tier: int | str) -> dict[str, Any]:
    """The service spec in the order the README documents it."""
    spec: dict[str, Any] = {"service": draft.name, "tier": tier, "team": team}
    if draft.description:
        spec["description"] = draft.description
    if draft.labels:
        spec["labels"] = dict(sorted(draft.labels.items()))
    if draft.observability:
        spec["observability"] = draft.observability
    if draft.slos is not None:
        spec["slos"] = draft.slos
    return spec


def finish(drafts: dict[str, Draft], team_candidates: dict[str, list[Candidate]],
           tier_candidates: dict[str, list[Candidate]], defaults: Defaults,
           warnings: list[SpecError], shape: Callable[[Draft, int | str], None] | None = None) -> Imported:
    """Resolve each draft's team and tier and turn it into a spec dict; a service without a team is an error.
    ``shape(draft, tier)`` completes a draft whose SLOs depend on its tier (OpenSLO's alert policies)."""
    specs: dict[str, dict[str, Any]] = {}
    sources: dict[str, list[str]] = {}
    errors: list[SpecError] = []
    for name in sorted(drafts):
        draft = drafts[name]
        team = resolve_team(draft, team_candidates.get(name, []), defaults, warnings)
        tier = resolve_tier(draft, tier_candidates.get(name, []), defaults, warnings)
        if shape is not None:
            shape(draft, tier)
        if team is None:
            errors.append(draft.origin._replace(
                message=f"service '{name}' names no team: pass --team or give it a 'team' or 'owner' label"))
            continue
        specs[name] = spec_dict(draft, team, tier)
        sources[name] = draft.sources
    return Imported(specs, sources, warnings, errors)


def _fresh(value: Any) -> Any:
    """A copy sharing no object between two places: the YAML writer turns a repeated object into an
    anchor and alias (``&id001``), which a spec a person edits should not have."""
    if isinstance(value, dict):
        return {key: _fresh(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fresh(item) for item in value]
    if isinstance(value, Decimal):
        return Decimal(str(value))
    return value


def spec_bytes(spec: dict[str, Any], tool: str, sources: list[str]) -> bytes:
    """The spec file: a comment saying where it came from (it is the user's to edit from now on), then YAML."""
    origin = ", ".join(sources)
    head = (f"# Imported by nthlayer from {tool} ({origin}).\n"
            "# Review the warnings the import printed; from now on this file is the source: edit it freely.\n")
    return (head + to_yaml(_fresh(spec))).encode("utf-8")


__all__ = ["TEMPLATE_WINDOW", "WINDOW_PLACEHOLDER", "DEFAULT_TIER", "MAX_LABEL_VALUE", "Defaults", "Draft", "Imported",
           "warn", "lossy", "description", "dns_name", "percent_to_ratio", "as_decimal", "buckets_with",
           "label_name_ok", "selector_spec", "window_days", "finish", "spec_bytes"]
