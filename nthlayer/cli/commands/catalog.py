"""``nthlayer catalog list|show|test|import``: browse, prove and extend the technology rules catalog."""
from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import sys
import tempfile
from typing import Any

from generators.catalog import (
    Technology,
    default_catalog_dir,
    load_catalog,
    load_technology,
    promtool_test_files,
    technology_files,
)
from generators.errors import SpecErrors, UserError
from generators.render import write_all, yaml_bytes
from generators.schema_messages import plural
from nthlayer.integrations.promtool import ToolResult

IMPORT_MAX_BYTES = 16 * 1024 * 1024  # the whole public awesome-prometheus-alerts file is far smaller


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", metavar="DIR", default=None,
                        help="catalog folder (default: $NTHLAYER_CATALOG or rules_catalog/)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, text: str) -> argparse.ArgumentParser:
        # The same line in 'catalog --help' and atop the action's own --help.
        return sub.add_parser(name, help=text, description=text)

    listing = action("list", "list the technologies, one line each: category, rules, test cases, name")
    listing.add_argument("--summary", action="store_true", help="print only the totals")
    show = action("show", "print one technology's exporter and rules: expression, severity, tiers, tests")
    show.add_argument("technology", metavar="TECH", help="a technology name, as 'nthlayer catalog list' shows it")
    test = action("test", "generate promtool tests from the catalog and run promtool on them")
    test.add_argument("technologies", nargs="*", metavar="TECH", help="only these technologies (default: all)")
    test.add_argument("--keep", metavar="DIR", help="write the generated rule and test files here and keep them")
    imp = action("import", "convert an awesome-prometheus-alerts style rules file into catalog files")
    imp.add_argument("file", help="YAML file: groups → services → exporters → rules")
    imp.add_argument("--into", metavar="DIR", required=True, help="folder to write <technology>.yaml files into")
    imp.add_argument("--strict", action="store_true", help="write nothing and exit 1 if any rule cannot be imported")


def run(args: argparse.Namespace) -> int:
    catalog_dir = args.catalog or default_catalog_dir()
    if args.action == "list":
        return _list(catalog_dir, args.summary)
    if args.action == "show":
        return _show(catalog_dir, args.technology)
    if args.action == "test":
        return _test(catalog_dir, args.technologies, args.keep)
    if args.action == "import":
        return _import(catalog_dir, args.file, args.into, args.strict)
    raise UserError(f"unknown action {args.action}")


def summary_line(catalog: dict[str, Technology]) -> str:
    """``48 technologies, 412 rules, 830 test cases`` (+ imported rules when there are any)."""
    rules = sum(len(t.rules) for t in catalog.values())
    imported = sum(len(t.rules) for t in catalog.values() if t.imported)
    cases = sum(t.test_cases for t in catalog.values())
    line = f"{plural(len(catalog), 'technology', 'technologies')}, {plural(rules, 'rule')}, " \
           f"{plural(cases, 'test case')}"
    return line + (f" ({imported} imported, untested)" if imported else "")


def _list(catalog_dir: str, summary: bool) -> int:
    catalog = load_catalog(catalog_dir)
    if not summary:
        width = max((len(name) for name in catalog), default=10)
        for name, tech in sorted(catalog.items()):
            flag = "  imported" if tech.imported else ""
            print(f"{name:<{width}}  {tech.data['category']:<13}  {plural(len(tech.rules), 'rule'):>9}  "
                  f"{plural(tech.test_cases, 'test'):>10}  {tech.data['display_name']}{flag}")
    print(summary_line(catalog))
    return 0


def _show(catalog_dir: str, name: str) -> int:
    files = technology_files(catalog_dir)
    if name not in files:
        close = difflib.get_close_matches(name, sorted(files), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else "; 'nthlayer catalog list' shows the known ones"
        raise UserError(f"unknown technology '{name}'{hint}")
    tech = load_technology(files[name])
    data = tech.data
    exporter = data["exporter"]
    print(f"{data['display_name']} ({tech.name}, {data['category']}) — {tech.path}")
    print(f"exporter: {exporter['name']}" + (f" <{exporter['url']}>" if "url" in exporter else ""))
    if data.get("description"):
        print(data["description"].strip())
    if tech.imported:
        print(f"imported from {data.get('source', 'an external file')}; rules are untested")
    for rule in tech.rules:
        tiers = ",".join(str(t) for t in sorted(rule["tiers"]))
        print()
        print(f"{rule['name']}  {rule['severity']}  tiers {tiers}  for {rule['for']}  "
              f"{plural(len(rule.get('tests', [])), 'test')}")
        for line in rule["expr"].strip().splitlines():
            print(f"    {line}")
        print(f"  {rule['summary']}")
        print(f"  metrics: {', '.join(rule['metrics'])}")
    return 0


def _test_in_parallel(test_files: list[str]) -> ToolResult:
    """``promtool test rules`` over the files, split across the CPUs (each test is independent)."""
    from concurrent.futures import ThreadPoolExecutor

    from nthlayer.integrations.promtool import test_rules

    workers = max(1, min(os.cpu_count() or 1, len(test_files)))
    chunks = [test_files[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(test_rules, chunks))
    return ToolResult(all(r.ok for r in results), "\n".join(r.output for r in results if not r.ok))


def _test(catalog_dir: str, only: list[str], keep: str | None) -> int:
    from nthlayer.integrations.promtool import check_rules

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
    if not checked.ok:
        print(checked.output, file=sys.stderr)
    if not tested.ok:
        print(tested.output, file=sys.stderr)
    verdict = "passed" if checked.ok and tested.ok else "FAILED"
    print(f"catalog test {verdict}: {summary_line({t.name: t for t in selected})} "
          f"(promtool check rules: {'ok' if checked.ok else 'failed'}, "
          f"promtool test rules: {'ok' if tested.ok else 'failed'})")
    return 0 if checked.ok and tested.ok else 1


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


def _promtool_checker(rules: list[dict[str, Any]]) -> dict[int, str]:
    """Index → promtool's complaint, for converted rules Prometheus itself would refuse (one promtool run)."""
    if not rules:
        return {}
    if shutil.which("promtool") is None:
        print("warning: promtool is not installed; converted rules were not checked by it", file=sys.stderr)
        return {}
    from nthlayer.integrations.promtool import check_rules

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


def _import(catalog_dir: str, path: str, into: str, strict: bool) -> int:
    from generators.catalog_import import import_awesome
    from generators.yamlload import load_yaml, read_bounded

    located = load_yaml(path, read_bounded(path, IMPORT_MAX_BYTES), IMPORT_MAX_BYTES)
    catalog = load_catalog(catalog_dir) if os.path.isdir(catalog_dir) else {}
    result = import_awesome(located, into, catalog, _existing_files(into), _promtool_checker)
    # Prove every file loads as catalog (schema + PromQL lint) before any of them lands in `into`;
    # a failure here is a bug in the converter, so it stops the import.
    with tempfile.TemporaryDirectory(prefix="nthlayer-import-") as tmp:
        staged = {os.path.join(tmp, os.path.basename(p)): data for p, data in result.files.items()}
        write_all(staged)
        for staged_path in sorted(staged):
            load_technology(staged_path)
    problems = result.problems
    for problem in SpecErrors(problems).errors:
        print(problem.format(), file=sys.stderr)
    if problems and strict:
        print(f"catalog import: {plural(len(problems), 'problem')}; nothing written", file=sys.stderr)
        return 1
    written = write_all(result.files)
    for tech, count in sorted(result.rules.items()):
        print(f"{tech}: {plural(count, 'rule')}")
    skipped = len({p.pointer for p in problems})
    print(f"imported {plural(sum(result.rules.values()), 'rule')} into "
          f"{plural(len(result.files), 'technology', 'technologies')} in {into} "
          f"({plural(len(written), 'file')} changed)" + (f"; {skipped} skipped (listed above)" if skipped else ""))
    return 0
