"""The rules catalog's operations: prove it with promtool (``catalog test``) and grow it from an
awesome-prometheus-alerts style file (``catalog import``)."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from generators.catalog import Technology, load_catalog, load_technology, promtool_test_files, technology_files
from generators.errors import SpecError, SpecErrors, UserError
from generators.render import write_all, yaml_bytes
from nthlayer.integrations.promtool import ToolResult, check_rules, test_rules

IMPORT_MAX_BYTES = 16 * 1024 * 1024  # the whole public awesome-prometheus-alerts file is far smaller


def _test_in_parallel(test_files: list[str]) -> ToolResult:
    """``promtool test rules`` over the files, split across the CPUs (each test is independent)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(os.cpu_count() or 1, len(test_files)))
    chunks = [test_files[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(test_rules, chunks))
    return ToolResult(all(r.ok for r in results), "\n".join(r.output for r in results if not r.ok))


@dataclass(frozen=True)
class CatalogTest:
    """promtool's verdicts on the selected technologies' rules (check) and generated tests (test)."""
    selected: dict[str, Technology]
    checked: ToolResult
    tested: ToolResult

    @property
    def ok(self) -> bool:
        return self.checked.ok and self.tested.ok


def test_catalog(catalog_dir: str, only: list[str], keep: str | None) -> CatalogTest:
    """Generate promtool tests for the technologies ``only`` names (none: all), check the rules and run
    the tests; ``keep``: write the files there and leave them."""
    catalog = load_catalog(catalog_dir)
    unknown = sorted(set(only) - set(catalog))
    if unknown:
        raise UserError(f"unknown technology: {', '.join(unknown)}")
    selected = [catalog[name] for name in (only or sorted(catalog))]
    if not selected:
        raise UserError(f"no technology files in {catalog_dir}")
    with tempfile.TemporaryDirectory(prefix="nthlayer-catalog-") as tmp:
        out_dir = keep or tmp
        files: dict[str, bytes] = {}
        for tech in selected:
            files.update(promtool_test_files(tech, out_dir))
        write_all(files)
        rule_files = sorted(f"{out_dir}/{tech.name}.rules.yaml" for tech in selected)
        test_files = sorted(p for p in files if p.endswith(".test.yaml"))
        checked = check_rules(rule_files)
        tested = _test_in_parallel(test_files) if test_files else ToolResult(True, "")
    return CatalogTest({t.name: t for t in selected}, checked, tested)


def _existing_files(into: str) -> dict[str, bool]:
    """Technology files already in ``into`` → whether an earlier import wrote them (may be replaced)."""
    existing: dict[str, bool] = {}
    for name, path in technology_files(into).items():
        try:
            existing[name] = load_technology(path).imported
        except SpecErrors:
            existing[name] = False  # not ours to overwrite, whatever it is
    return existing


_PROMTOOL_RULE = re.compile(r'group "r(\d+)", rule \d+, "[^"]*": (.*)$')


def _promtool_checker(rules: list[dict[str, Any]], warn: Callable[[str], None]) -> dict[int, str]:
    """Index → promtool's complaint, for converted rules Prometheus itself would refuse (one promtool run)."""
    if not rules:
        return {}
    if shutil.which("promtool") is None:
        warn("warning: promtool is not installed; converted rules were not checked by it")
        return {}
    groups = [{"name": f"r{i}", "rules": [{
        "alert": rule["name"], "expr": rule["expr"], "for": rule["for"], "labels": {"severity": rule["severity"]},
        "annotations": {"summary": rule["summary"], "description": rule["description"]},
    }]} for i, rule in enumerate(rules)]
    with tempfile.TemporaryDirectory(prefix="nthlayer-import-") as tmp:
        path = os.path.join(tmp, "converted.rules.yaml")
        write_all({path: yaml_bytes({"groups": groups}, "import")})
        result = check_rules([path])
    if result.ok:
        return {}
    refused: dict[int, str] = {}
    for line in result.output.splitlines():
        match = _PROMTOOL_RULE.search(line)
        if match:
            refused.setdefault(int(match.group(1)), match.group(2))
    if not refused:
        raise UserError(f"promtool rejected the converted rules: {result.output}")
    return refused


@dataclass(frozen=True)
class CatalogImport:
    """What an import converted: the files (written unless strict and there were problems), rules per
    technology, the rules it could not import, and the paths whose bytes changed."""
    files: dict[str, bytes]
    rules: dict[str, int]
    problems: list[SpecError]
    written: list[str]


def import_rules(catalog_dir: str, path: str, into: str, strict: bool, warn: Callable[[str], None]
                 ) -> CatalogImport:
    """Convert an awesome-prometheus-alerts style file into catalog files in ``into``; every file is proven
    to load as catalog before any is written, and with ``strict`` nothing is written when a rule could not
    be imported (``written`` is then empty)."""
    from functools import partial

    from generators.catalog_import import import_awesome
    from generators.yamlload import load_yaml, read_bounded

    located = load_yaml(path, read_bounded(path, IMPORT_MAX_BYTES), IMPORT_MAX_BYTES)
    catalog = load_catalog(catalog_dir) if os.path.isdir(catalog_dir) else {}
    result = import_awesome(located, into, catalog, _existing_files(into), partial(_promtool_checker, warn=warn))
    # Prove every file loads as catalog (schema + PromQL lint) before any of them lands in `into`;
    # a failure here is a bug in the converter, so it stops the import.
    with tempfile.TemporaryDirectory(prefix="nthlayer-import-") as tmp:
        staged = {os.path.join(tmp, os.path.basename(p)): data for p, data in result.files.items()}
        write_all(staged)
        for staged_path in sorted(staged):
            load_technology(staged_path)
    written = [] if result.problems and strict else write_all(result.files)
    return CatalogImport(result.files, dict(result.rules), list(result.problems), written)
