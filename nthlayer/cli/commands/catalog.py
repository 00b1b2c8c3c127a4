"""``nthlayer catalog list|show|test|import``: browse, prove and extend the technology rules catalog."""
from __future__ import annotations

import argparse
import difflib
import sys

from generators.catalog import Technology, default_catalog_dir, load_catalog, load_technology, technology_files
from generators.errors import SpecErrors, UserError
from generators.schema_messages import plural
from nthlayer.ops.catalog import import_rules, test_catalog


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


def _test(catalog_dir: str, only: list[str], keep: str | None) -> int:
    verdict = test_catalog(catalog_dir, only, keep)
    if not verdict.checked.ok:
        print(verdict.checked.output, file=sys.stderr)
    if not verdict.tested.ok:
        print(verdict.tested.output, file=sys.stderr)
    print(f"catalog test {'passed' if verdict.ok else 'FAILED'}: {summary_line(verdict.selected)} "
          f"(promtool check rules: {'ok' if verdict.checked.ok else 'failed'}, "
          f"promtool test rules: {'ok' if verdict.tested.ok else 'failed'})")
    return 0 if verdict.ok else 1


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def _import(catalog_dir: str, path: str, into: str, strict: bool) -> int:
    result = import_rules(catalog_dir, path, into, strict, _warn)
    problems = result.problems
    for problem in SpecErrors(problems).errors:
        print(problem.format(), file=sys.stderr)
    if problems and strict:
        print(f"catalog import: {plural(len(problems), 'problem')}; nothing written", file=sys.stderr)
        return 1
    for tech, count in sorted(result.rules.items()):
        print(f"{tech}: {plural(count, 'rule')}")
    skipped = len({p.pointer for p in problems})
    print(f"imported {plural(sum(result.rules.values()), 'rule')} into "
          f"{plural(len(result.files), 'technology', 'technologies')} in {into} "
          f"({plural(len(result.written), 'file')} changed)" + (f"; {skipped} skipped (listed above)" if skipped else ""))
    return 0
