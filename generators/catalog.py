"""The rules catalog: one YAML file per technology, validated, loaded once per process.

Each rule carries its own test cases; :func:`promtool_test_files` turns a
technology file into a Prometheus rule file plus a ``promtool test rules``
file that proves every rule fires on its firing cases and stays silent on its
healthy ones.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from generators.errors import SpecError, SpecErrors
from generators.slo_maths import duration_seconds
from generators.spec import schema_errors
from generators.yamlload import load_yaml

CATALOG_ENV = "NTHLAYER_CATALOG"
DEFAULT_EVAL_MARGIN_SECONDS = 300
CATALOG_MAX_BYTES = 2 * 1024 * 1024


def default_catalog_dir() -> str:
    """$NTHLAYER_CATALOG, else ./rules_catalog, else the catalog next to this checkout."""
    env = os.environ.get(CATALOG_ENV)
    if env:
        return env
    if os.path.isdir("rules_catalog"):
        return "rules_catalog"
    return str(Path(__file__).resolve().parent.parent / "rules_catalog")


def technology_files(catalog_dir: str) -> dict[str, str]:
    """technology name → file path, from the file names alone (cheap: no parsing)."""
    try:
        names = sorted(os.listdir(catalog_dir))
    except FileNotFoundError:
        return {}
    return {name[:-5]: os.path.join(catalog_dir, name) for name in names
            if name.endswith(".yaml") and not name.startswith(".")}


@dataclass(frozen=True)
class Technology:
    name: str
    path: str
    data: dict[str, Any]

    @property
    def rules(self) -> list[dict[str, Any]]:
        return self.data["rules"]


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


@lru_cache(maxsize=None)
def load_technology(path: str) -> Technology:
    """Load and validate one catalog file (cached: parsed once per process)."""
    from generators.yamlload import read_bounded

    located = load_yaml(path, read_bounded(path, CATALOG_MAX_BYTES))
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
    if errors:
        raise SpecErrors(errors)
    return Technology(stem, path, data)


def load_catalog(catalog_dir: str) -> dict[str, Technology]:
    """Every technology of a catalog; raises SpecErrors with all problems (incl. duplicate rule names)."""
    technologies: dict[str, Technology] = {}
    errors: list[SpecError] = []
    for name, path in technology_files(catalog_dir).items():
        try:
            technologies[name] = load_technology(path)
        except SpecErrors as exc:
            errors.extend(exc.errors)
    seen: dict[str, str] = {}
    for tech in technologies.values():
        for index, rule in enumerate(tech.rules):
            if rule["name"] in seen:
                errors.append(SpecError(tech.path, 1, 1, f"/rules/{index}/name",
                                        f"duplicate rule name {rule['name']} (also in {seen[rule['name']]})"))
            seen.setdefault(rule["name"], tech.path)
    if errors:
        raise SpecErrors(errors)
    return technologies


def rule_labels(tech: Technology, rule: dict[str, Any]) -> dict[str, str]:
    """The static labels a catalog rule carries before a service adds its own."""
    return {"severity": rule["severity"], "technology": tech.name, **rule.get("labels", {})}


def catalog_rule_group(tech: Technology, with_annotations: bool = True) -> dict[str, Any]:
    """The technology's rules as one Prometheus rule group, unscoped."""
    rules = []
    for rule in tech.rules:
        entry: dict[str, Any] = {"alert": rule["name"], "expr": rule["expr"]}
        if rule["for"] not in ("0s", "0m"):
            entry["for"] = rule["for"]
        if "keep_firing_for" in rule:
            entry["keep_firing_for"] = rule["keep_firing_for"]
        entry["labels"] = rule_labels(tech, rule)
        if with_annotations:
            entry["annotations"] = {"summary": rule["summary"], "description": rule["description"]}
        rules.append(entry)
    return {"groups": [{"name": f"catalog-{tech.name}", "rules": rules}]}


def promtool_test_document(tech: Technology, rule_file: str) -> dict[str, Any]:
    """A ``promtool test rules`` document with one test per rule test case.

    Annotations are templates and are checked by ``promtool check rules``;
    the unit tests judge the expression, ``for`` and labels.
    """
    tests = []
    for rule in tech.rules:
        if rule.get("untested"):
            continue
        for case in rule.get("tests", []):
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
    """The rule file (annotations stripped) and the test file for one technology."""
    from generators.render import yaml_bytes

    rule_name = f"{tech.name}.rules.yaml"
    source = tech.path
    return {
        f"{out_dir}/{rule_name}": yaml_bytes(catalog_rule_group(tech, with_annotations=False), source),
        f"{out_dir}/{tech.name}.test.yaml": yaml_bytes(promtool_test_document(tech, rule_name), source),
    }


__all__ = ["Technology", "default_catalog_dir", "technology_files", "load_technology", "load_catalog",
           "catalog_rule_group", "promtool_test_files", "duration_seconds"]
