"""Convert alert rules in the awesome-prometheus-alerts data format into (untested) catalog files.

That format is one YAML file: ``groups`` → ``services`` → ``exporters`` →
``rules``, each rule with ``name`` (prose), ``description``, ``query``,
``severity`` and an optional ``for``. Each exporter of a service becomes one
technology file marked ``imported: true``. A rule that cannot be converted —
a missing field, PromQL that does not parse or reads a raw counter, a name
already used in the catalog or earlier in the file — is reported with its
line and left out; nothing is dropped silently.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping, NamedTuple

from generators.catalog import Technology
from generators.errors import SpecError
from generators.promql_scope import PromQLError, metric_names, raw_counters
from generators.render import yaml_bytes
from generators.yamlload import Located

_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_SEVERITIES = ("critical", "warning", "info")
# First matching keyword of the group (or service) name picks the catalog category.
_CATEGORY_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("basic resource", "host"), ("host", "host"), ("hardware", "host"), ("database", "database"),
    ("broker", "broker"), ("queue", "broker"), ("cache", "cache"), ("search", "search"), ("proxy", "proxy"),
    ("load balancer", "proxy"), ("runtime", "runtime"), ("orchestrat", "orchestration"),
    ("kubernetes", "orchestration"), ("container", "container"), ("storage", "storage"),
    ("security", "security"), ("network", "network"), ("ci", "ci"), ("monitoring", "monitoring"),
    ("observability", "monitoring"),
)


class ImportResult(NamedTuple):
    files: dict[str, bytes]  # catalog file path → bytes
    rules: dict[str, int]  # technology → rules imported
    problems: list[SpecError]  # every rule (or exporter) left out, and why


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def camel_name(text: str) -> str:
    """``"Postgresql too many connections"`` → ``PostgresqlTooManyConnections``."""
    return "".join(word[:1].upper() + word[1:] for word in re.split(r"[^A-Za-z0-9]+", text) if word)


def _category(*names: str) -> str:
    for name in names:
        lowered = f" {name.lower()} "
        for keyword, category in _CATEGORY_KEYWORDS:
            if re.search(rf"\b{re.escape(keyword)}", lowered):
                return category
    return "other"


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _items(located: Located, pointer: str, value: Any, key: str, problems: list[SpecError]) -> list[Any]:
    items = value.get(key) if isinstance(value, dict) else None
    if not isinstance(items, list):
        problems.append(located.error(pointer, f"expected a list under '{key}'; skipped"))
        return []
    return items


def _convert_rule(raw: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """A catalog rule, or None and the reasons it cannot be one."""
    if not isinstance(raw, dict):
        return None, ["expected a mapping"]
    reasons = [f"missing field '{key}'" for key in ("name", "description", "query", "severity") if not _text(raw.get(key))]
    if reasons:
        return None, reasons
    name = camel_name(raw["name"])
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name):
        reasons.append(f"name '{raw['name']}' does not make a CamelCase alert name")
    severity = str(raw["severity"]).strip()
    if severity not in _SEVERITIES:
        reasons.append(f"severity '{severity}' is not one of {', '.join(_SEVERITIES)}")
    duration = str(raw.get("for", "0m")).strip()
    if not _DURATION.fullmatch(duration):
        reasons.append(f"for '{duration}' is not a Prometheus duration")
    query = raw["query"].strip()
    try:
        used, unnamed = metric_names(query)
        counters = raw_counters(query)
    except PromQLError as exc:
        return None, reasons + [f"query is not valid PromQL: {exc}"]
    reasons.extend(unnamed)
    if not used:
        reasons.append("query reads no metric")
    reasons.extend(f"query reads counter {c} raw, without rate()/increase(); the catalog refuses that"
                   for c in counters)
    if reasons:
        return None, reasons
    return {
        "name": name,
        "expr": query,
        "for": duration,
        "severity": severity,
        "tiers": [1, 2, 3],
        "summary": raw["name"].strip(),
        "description": raw["description"].strip(),
        "metrics": sorted(used),
    }, []


def _technology_document(name: str, source: str, group: str, service: dict[str, Any],
                         exporter: dict[str, Any], rules: list[dict[str, Any]]) -> dict[str, Any]:
    exporter_name = _text(exporter.get("name")) or _text(exporter.get("slug")) or "unknown"
    exporter_doc: dict[str, Any] = {"name": exporter_name}
    url = _text(exporter.get("doc_url"))
    if url and re.match(r"^https?://", url):
        exporter_doc["url"] = url
    service_name = _text(service.get("name")) or name
    return {
        "apiVersion": "nthlayer.dev/v1",
        "kind": "TechnologyRules",
        "technology": name,
        "display_name": service_name[:80],
        "category": _category(group, service_name),
        "imported": True,
        "source": f"{source}: {group} / {service_name} / {exporter_name}",
        "exporter": exporter_doc,
        "rules": rules,
    }


RuleChecker = Callable[[list[dict[str, Any]]], dict[int, str]]


def import_awesome(located: Located, into: str, catalog: Mapping[str, Technology],
                   existing: Mapping[str, bool], check: RuleChecker | None = None) -> ImportResult:
    """Convert one loaded awesome-format file.

    ``catalog`` is the current catalog (rule names must not collide with it,
    except in technologies this import replaces); ``existing`` maps the
    technology files already in ``into`` to whether they were imported (only
    those may be overwritten). ``check`` gets every converted rule at once and
    returns the index → reason of those to refuse (the CLI asks promtool, which
    knows Prometheus's own PromQL dialect and template syntax).
    """
    problems: list[SpecError] = []
    source = os.path.basename(located.path)
    planned: list[tuple[str, str, str, dict[str, Any], dict[str, Any], list[tuple[str, dict[str, Any]]]]] = []
    for gi, group in enumerate(_items(located, "", located.data, "groups", problems)):
        group_name = _text(group.get("name")) if isinstance(group, dict) else None
        for si, service in enumerate(_items(located, f"/groups/{gi}", group, "services", problems)):
            exporters = _items(located, f"/groups/{gi}/services/{si}", service, "exporters", problems)
            service_slug = slug(str(service.get("name", ""))) if isinstance(service, dict) else ""
            for ei, exporter in enumerate(exporters):
                at = f"/groups/{gi}/services/{si}/exporters/{ei}"
                if not isinstance(exporter, dict) or not service_slug:
                    problems.append(located.error(at, "exporter without a service name or not a mapping; skipped"))
                    continue
                tech = service_slug
                if len(exporters) > 1:
                    tech = f"{service_slug}-{slug(str(exporter.get('slug') or exporter.get('name') or ei))}"
                rules = []
                for ri, raw in enumerate(exporter.get("rules") or []):
                    rule, reasons = _convert_rule(raw)
                    if rule is None:
                        problems.extend(located.error(f"{at}/rules/{ri}", f"rule skipped: {r}") for r in reasons)
                    else:
                        rules.append((f"{at}/rules/{ri}", rule))
                planned.append((tech, at, group_name or "", service, exporter, rules))
    if check is not None:
        converted = [rule for *_, rules in planned for _, rule in rules]
        refused = check(converted)
        index = 0
        for *_, rules in planned:
            kept_rules = []
            for pointer, rule in rules:
                if index in refused:
                    problems.append(located.error(pointer, f"rule skipped: promtool: {refused[index]}"))
                else:
                    kept_rules.append((pointer, rule))
                index += 1
            rules[:] = kept_rules
    # Re-importing replaces the files an earlier import wrote, so their rule names are free again.
    replaced = {name for name, tech in catalog.items()
                if tech.imported and os.path.normpath(os.path.dirname(tech.path)) == os.path.normpath(into)}
    taken: dict[str, str] = {}
    for tech_name in sorted(catalog):
        if tech_name not in replaced:
            for rule in catalog[tech_name].rules:
                taken.setdefault(rule["name"], f"catalog technology {tech_name}")
    files: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    seen_tech: dict[str, str] = {}
    for tech, at, group_name, service, exporter, rules in planned:
        if tech in seen_tech:
            problems.append(located.error(at, f"technology '{tech}' already comes from {seen_tech[tech]}; skipped"))
            continue
        seen_tech[tech] = at
        if existing.get(tech) is False:
            problems.append(located.error(at, f"{into}/{tech}.yaml exists and was not imported; not overwritten"))
            continue
        kept: list[dict[str, Any]] = []
        queries: dict[str, str] = {}
        for pointer, rule in rules:
            line = located.where(pointer)[0]
            if rule["name"] in taken:
                problems.append(located.error(pointer, f"rule skipped: name {rule['name']} is already used by "
                                                       f"{taken[rule['name']]}"))
                continue
            if rule["expr"] in queries:
                problems.append(located.error(pointer, f"rule skipped: same query as {queries[rule['expr']]}"))
                continue
            taken[rule["name"]] = f"{located.path}:{line}"
            queries[rule["expr"]] = f"{rule['name']} ({located.path}:{line})"
            kept.append(rule)
        if not kept:
            problems.append(located.error(at, f"no importable rules for technology '{tech}'; no file written"))
            continue
        document = _technology_document(tech, source, group_name, service, exporter, kept)
        files[os.path.join(into, f"{tech}.yaml")] = yaml_bytes(document, source)
        counts[tech] = len(kept)
    return ImportResult(files, counts, problems)


__all__ = ["ImportResult", "RuleChecker", "import_awesome", "camel_name", "slug"]
