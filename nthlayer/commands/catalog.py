"""``nthlayer catalog list|show|test``: browse and prove the technology rules catalog."""
from __future__ import annotations

import argparse
import sys
import tempfile

from generators.catalog import default_catalog_dir, load_catalog, promtool_test_files
from generators.errors import UserError
from generators.render import write_all


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", default=None, help="catalog folder (default: $NTHLAYER_CATALOG or rules_catalog/)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    test = sub.add_parser("test", help="generate promtool tests from the catalog and run promtool on them")
    test.add_argument("technologies", nargs="*", help="only these technologies (default: all)")
    test.add_argument("--keep", metavar="DIR", help="write the generated rule and test files here and keep them")


def run(args: argparse.Namespace) -> int:
    catalog_dir = args.catalog or default_catalog_dir()
    if args.action == "test":
        return _test(catalog_dir, args.technologies, args.keep)
    raise UserError(f"unknown action {args.action}")


def _test(catalog_dir: str, only: list[str], keep: str | None) -> int:
    from nthlayer.promtool import check_rules, test_rules

    catalog = load_catalog(catalog_dir)
    unknown = sorted(set(only) - set(catalog))
    if unknown:
        raise UserError(f"unknown technology: {', '.join(unknown)}")
    selected = [catalog[name] for name in (only or sorted(catalog))]
    with tempfile.TemporaryDirectory(prefix="nthlayer-catalog-") as tmp:
        out_dir = keep or tmp
        files: dict[str, bytes] = {}
        for tech in selected:
            files.update(promtool_test_files(tech, out_dir))
        write_all(files)
        rule_files = sorted(p for p in files if p.endswith(".rules.yaml"))
        test_files = sorted(p for p in files if p.endswith(".test.yaml"))
        checked = check_rules(rule_files)
        tested = test_rules(test_files)
    rules = sum(len(t.rules) for t in selected)
    cases = sum(len(r.get("tests", [])) for t in selected for r in t.rules)
    if not checked.ok:
        print(checked.output, file=sys.stderr)
    if not tested.ok:
        print(tested.output, file=sys.stderr)
    verdict = "passed" if checked.ok and tested.ok else "FAILED"
    print(f"catalog test {verdict}: {len(selected)} technologies, {rules} rules, {cases} test cases "
          f"(promtool check rules: {'ok' if checked.ok else 'failed'}, "
          f"promtool test rules: {'ok' if tested.ok else 'failed'})")
    return 0 if checked.ok and tested.ok else 1
