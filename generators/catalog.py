"""The rules catalog: one YAML file per technology, validated, loaded once per process.

Each rule carries its own test cases; :func:`promtool_test_files` turns a
technology file into a Prometheus rule file plus a ``promtool test rules``
file that proves every rule fires on its firing cases and stays silent on its
healthy ones.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from generators.catalog_labels import lint_metric_labels
from generators.discovery import lint_discovery
from generators.errors import SpecError, SpecErrors, UserError
from generators.promql_scope import PromQLError, metric_names, raw_counters
from generators.render import write_if_changed
from generators.slo_maths import duration_seconds
from generators.spec import schema_errors
from generators.yamlload import Located, load_yaml, read_bounded

CATALOG_ENV = "NTHLAYER_CATALOG"
DEFAULT_EVAL_MARGIN_SECONDS = 300
CATALOG_MAX_BYTES = 2 * 1024 * 1024


def default_catalog_dir() -> str:
    """$NTHLAYER_CATALOG, else ./rules_catalog, else the catalog of this checkout, else the one installed
    with the package (pyproject.toml ships rules_catalog/ as generators/rules_catalog)."""
    env = os.environ.get(CATALOG_ENV)
    if env:
        return env
    if os.path.isdir("rules_catalog"):
        return "rules_catalog"
    here = Path(__file__).resolve().parent
    checkout = here.parent / "rules_catalog"
    return str(checkout if checkout.is_dir() else here / "rules_catalog")


_LISTINGS: dict[str, tuple[int, dict[str, str]]] = {}


def technology_files(catalog_dir: str) -> dict[str, str]:
    """technology name → file path, from the file names alone (no parsing). The listing is kept per
    process while the folder's mtime stays the same (adding, removing or renaming a file changes it):
    a build asks once per service."""
    try:
        stamp = os.stat(catalog_dir).st_mtime_ns
        cached = _LISTINGS.get(catalog_dir)
        if cached is not None and cached[0] == stamp:
            return dict(cached[1])
        names = sorted(os.listdir(catalog_dir))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    files = {name[:-5]: os.path.join(catalog_dir, name) for name in names
             if name.endswith(".yaml") and not name.startswith(".")}
    _LISTINGS[catalog_dir] = (stamp, files)
    return dict(files)


@dataclass(frozen=True)
class Technology:
    """One validated catalog file. ``located`` keeps the line marks for later error messages."""

    name: str
    path: str
    data: dict[str, Any]
    located: Located | None = field(default=None, compare=False, repr=False)

    @property
    def rules(self) -> list[dict[str, Any]]:
        return self.data["rules"]

    @property
    def imported(self) -> bool:
        return bool(self.data.get("imported"))

    @property
    def test_cases(self) -> int:
        return sum(len(rule.get("tests", [])) for rule in self.rules)

    def error(self, pointer: str, message: str) -> SpecError:
        if self.located is None:
            return SpecError(self.path, 1, 1, pointer, message)
        return self.located.error(pointer, message)


def _duration_text_seconds(text: str) -> int:
    total = 0
    number = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit():
            number += ch
            i += 1
            continue
        unit = "ms" if text[i:i + 2] == "ms" else ch
        i += len(unit)
        total += 0 if unit == "ms" else int(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400,
                                                        "w": 604800, "y": 31536000}[unit]
        number = ""
    return total


def default_eval_time(rule: dict[str, Any]) -> str:
    seconds = _duration_text_seconds(rule["for"]) + DEFAULT_EVAL_MARGIN_SECONDS
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def lint_rules(located: Located) -> list[SpecError]:
    """Checks on each rule's PromQL that a schema cannot make.

    The expression must parse; the declared ``metrics`` must be exactly the
    metric names it reads (so the list can be checked against what the exporter
    really exposes); counters must go through rate()/increase()/… because a raw
    counter value means nothing once the process restarts.
    """
    errors: list[SpecError] = []
    for index, rule in enumerate(located.data["rules"]):
        at = f"/rules/{index}"
        try:
            used, problems = metric_names(rule["expr"])
            counters = raw_counters(rule["expr"], rule.get("gauges", ()))
        except PromQLError as exc:
            errors.append(located.error(f"{at}/expr", f"{rule['name']}: expr is not valid PromQL: {exc}"))
            continue
        errors.extend(located.error(f"{at}/expr", f"{rule['name']}: {problem}") for problem in problems)
        declared = set(rule["metrics"])
        if used != declared:
            parts = []
            if used - declared:
                parts.append(f"expr reads {', '.join(sorted(used - declared))} but metrics does not list it")
            if declared - used:
                parts.append(f"metrics lists {', '.join(sorted(declared - used))} but expr does not read it")
            errors.append(located.error(f"{at}/metrics", f"{rule['name']}: {'; '.join(parts)}"))
        stray_gauges = sorted(set(rule.get("gauges", ())) - declared)
        if stray_gauges:
            errors.append(located.error(f"{at}/gauges",
                                        f"{rule['name']}: gauges names {', '.join(stray_gauges)}, not in metrics"))
        for counter in counters:
            errors.append(located.error(f"{at}/expr", (
                f"{rule['name']}: counter {counter} is used raw; wrap it in rate(), irate() or increase() "
                "(or list it under gauges if the exporter documents it as a gauge)")))
    return errors


@lru_cache(maxsize=None)
def load_technology(path: str) -> Technology:
    """Load, validate and lint one catalog file (cached: parsed once per process)."""
    return _validated(path, read_bounded(path, CATALOG_MAX_BYTES))


# What decides whether a catalog file is valid, besides its bytes.
_VALIDATING_CODE = ("catalog.py", "catalog_labels.py", "discovery.py", "promql_scope.py", "spec.py", "yamlload.py", "errors.py", "slo_maths.py",
                    "schemas/catalog.schema.json")


@lru_cache(maxsize=None)
def _validating_code() -> bytes:
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _VALIDATING_CODE:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
    for package in ("promql-parser", "jsonschema", "fastjsonschema"):
        digest.update(f"{package}={importlib.metadata.version(package)}\0".encode())
    return digest.digest()


_CACHED: dict[tuple[str, str, int, int], Technology] = {}


def load_technology_cached(path: str, cache_dir: str) -> Technology:
    """:func:`load_technology`, with the validated data kept in ``cache_dir/<technology>.json`` under a
    hash of the file's bytes and of the validating code. Every build process needs the technologies of
    the services it builds; reading one back costs a JSON parse instead of a YAML parse, a schema check
    and a PromQL lint (20 ms a file; a first build's two workers each validated the whole catalog).
    Technologies read back carry no line marks: build errors never point into the catalog. Within a
    process a file is read once per version (size and mtime)."""
    stat = os.stat(path)
    memo = (path, cache_dir, stat.st_size, stat.st_mtime_ns)
    if memo in _CACHED:
        return _CACHED[memo]
    raw = read_bounded(path, CATALOG_MAX_BYTES)
    key = hashlib.sha256(_validating_code() + raw).hexdigest()
    stem = Path(path).name[:-5]
    record_path = os.path.join(cache_dir, f"{stem}.json")
    try:
        with open(record_path, "rb") as handle:
            record = json.loads(handle.read())
        if record.get("key") == key:
            _CACHED[memo] = Technology(stem, path, record["data"])
            return _CACHED[memo]
    except (OSError, ValueError, AttributeError):
        pass  # missing or unreadable: validate
    tech = _CACHED[memo] = _validated(path, raw)
    text = json.dumps({"key": key, "data": tech.data}, sort_keys=True)
    if json.loads(text)["data"] == tech.data:  # only data JSON keeps exactly (no int keys, dates, …)
        write_if_changed(record_path, text.encode("utf-8"))
    return tech


def _validated(path: str, raw: bytes) -> Technology:
    located = load_yaml(path, raw, CATALOG_MAX_BYTES)
    if not isinstance(located.data, dict):
        raise SpecErrors([located.error("", "expected a mapping at the top level")])
    errors = schema_errors(located, "catalog.schema.json")
    if errors:
        raise SpecErrors(errors)
    data = located.data
    stem = Path(path).name[:-5]
    if data["technology"] != stem:
        errors.append(located.error("/technology", f"technology '{data['technology']}' must match the file name '{stem}'"))
    for index, rule in enumerate(data["rules"]):
        tests = rule.get("tests", [])
        if data.get("imported") or rule.get("untested"):
            continue
        if not any(t["alerts"] for t in tests) or not any(not t["alerts"] for t in tests):
            errors.append(located.error(f"/rules/{index}/tests",
                                        f"rule {rule['name']} needs at least one test where it fires and one "
                                        "where it stays silent"))
    errors.extend(lint_rules(located))
    errors.extend(lint_metric_labels(located))
    errors.extend(lint_discovery(located))
    if errors:
        raise SpecErrors(errors)
    return Technology(stem, path, data, located)


def duplicate_rule_errors(technologies: Mapping[str, Technology]) -> list[SpecError]:
    """Alert names must be unique across the whole catalog (Alertmanager routes and runbooks key on them)."""
    errors: list[SpecError] = []
    seen: dict[str, tuple[Technology, int]] = {}
    for name in sorted(technologies):
        tech = technologies[name]
        for index, rule in enumerate(tech.rules):
            first = seen.setdefault(rule["name"], (tech, index))
            if first != (tech, index):
                other_tech, other_index = first
                line = other_tech.located.where(f"/rules/{other_index}")[0] if other_tech.located else 1
                errors.append(tech.error(f"/rules/{index}/name",
                                         f"duplicate rule name {rule['name']} (also {other_tech.path}:{line})"))
    return errors


def load_catalog(catalog_dir: str) -> dict[str, Technology]:
    """Every technology of a catalog; raises SpecErrors with all problems (incl. duplicate rule names)."""
    technologies: dict[str, Technology] = {}
    errors: list[SpecError] = []
    for name, path in technology_files(catalog_dir).items():
        try:
            technologies[name] = load_technology(path)
        except SpecErrors as exc:
            errors.extend(exc.errors)
    errors.extend(duplicate_rule_errors(technologies))
    if errors:
        raise SpecErrors(errors)
    return technologies


def load_technologies(catalog_dir: str, names: Iterable[str],
                      cache_dir: str | None = None) -> dict[str, Technology]:
    """Just the named technologies (what one service needs); UserError for a name the catalog lacks.
    With ``cache_dir``, validated files are kept there (:func:`load_technology_cached`)."""
    files = technology_files(catalog_dir)
    wanted = sorted(set(names))
    unknown = [name for name in wanted if name not in files]
    if unknown:
        known = sorted(files)
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise UserError(f"unknown technology {', '.join(hints)} in catalog {catalog_dir}; "
                        "'nthlayer catalog list' shows the known ones")
    technologies: dict[str, Technology] = {}
    errors: list[SpecError] = []
    for name in wanted:
        try:
            technologies[name] = (load_technology(files[name]) if cache_dir is None
                                  else load_technology_cached(files[name], cache_dir))
        except SpecErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise SpecErrors(errors)
    return technologies


def rule_labels(tech: Technology, rule: dict[str, Any]) -> dict[str, str]:
    """The static labels a catalog rule carries before a service adds its own."""
    return {"severity": rule["severity"], "technology": tech.name, **rule.get("labels", {})}


def rule_entry(rule: dict[str, Any], labels: dict[str, str], expr: str | None = None) -> dict[str, Any]:
    """One Prometheus alerting rule (without annotations) in the order promtool prints them."""
    entry: dict[str, Any] = {"alert": rule["name"], "expr": rule["expr"] if expr is None else expr}
    if _duration_text_seconds(rule["for"]) > 0:
        entry["for"] = rule["for"]
    if "keep_firing_for" in rule:
        entry["keep_firing_for"] = rule["keep_firing_for"]
    entry["labels"] = labels
    return entry


def catalog_rule_group(tech: Technology, with_annotations: bool = True) -> dict[str, Any]:
    """The technology's rules as one Prometheus rule group, unscoped."""
    rules = []
    for rule in tech.rules:
        entry = rule_entry(rule, rule_labels(tech, rule))
        if with_annotations:
            entry["annotations"] = {"summary": rule["summary"], "description": rule["description"]}
        rules.append(entry)
    return {"groups": [{"name": f"catalog-{tech.name}", "rules": rules}]}


def _tested(tech: Technology, rule: dict[str, Any]) -> bool:
    return not (tech.imported or rule.get("untested")) and bool(rule.get("tests"))


def promtool_test_document(tech: Technology, rule_file: str, only: str | None = None) -> dict[str, Any]:
    """A ``promtool test rules`` document with one test per rule test case (``only``: one rule's).

    The rule file it points at has no annotations: promtool compares
    annotations too, and they are templates checked by ``promtool check
    rules`` instead; the unit tests judge the expression, ``for`` and labels.
    """
    tests = []
    for rule in tech.rules:
        if not _tested(tech, rule) or only not in (None, rule["name"]):
            continue
        for case in rule["tests"]:
            expected = [{"exp_labels": {**case_labels, **rule_labels(tech, rule)}} for case_labels in case["alerts"]]
            tests.append({
                "name": f"{rule['name']}: {case['name']}",
                "interval": case.get("interval", "1m"),
                "input_series": [{"series": s["series"], "values": s["values"]} for s in case["series"]],
                "alert_rule_test": [{
                    "eval_time": case.get("eval_time", default_eval_time(rule)),
                    "alertname": rule["name"],
                    "exp_alerts": expected,
                }],
            })
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}


def promtool_test_files(tech: Technology, out_dir: str) -> dict[str, bytes]:
    """What ``catalog test`` hands to promtool for one technology.

    ``<out>/<tech>.rules.yaml`` is the complete rule group, for ``promtool
    check rules``. The unit tests come per rule: ``<out>/<tech>/<Rule>.rules.yaml``
    (that rule alone, without annotations) and ``<out>/<tech>/<Rule>.test.yaml``.
    One rule per file because promtool evaluates every rule of the file at every
    step of every test: a file per technology made the catalog's tests 4x slower.
    """
    from generators.render import yaml_bytes

    source = tech.path
    files = {f"{out_dir}/{tech.name}.rules.yaml": yaml_bytes(catalog_rule_group(tech), source)}
    bare = catalog_rule_group(tech, with_annotations=False)["groups"][0]
    for rule, entry in zip(tech.rules, bare["rules"]):
        if not _tested(tech, rule):
            continue
        name = rule["name"]
        group = {"groups": [{"name": bare["name"], "rules": [entry]}]}
        files[f"{out_dir}/{tech.name}/{name}.rules.yaml"] = yaml_bytes(group, source)
        files[f"{out_dir}/{tech.name}/{name}.test.yaml"] = yaml_bytes(
            promtool_test_document(tech, f"{name}.rules.yaml", only=name), source)
    return files


__all__ = ["Technology", "default_catalog_dir", "technology_files", "load_technology", "load_technology_cached",
           "load_catalog", "load_technologies", "lint_rules", "duplicate_rule_errors", "rule_labels", "rule_entry",
           "catalog_rule_group", "promtool_test_files", "duration_seconds"]
