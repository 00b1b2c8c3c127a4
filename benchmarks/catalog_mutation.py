"""Mutation testing of the rules catalog: do a rule's own test cases pin what the rule says?

    python benchmarks/catalog_mutation.py [TECH ...] [--catalog DIR] [--json] [--list-survivors]
                                          [--fail-under PCT]

Each catalog rule is changed in small ways (mutants); a mutant is *killed* when the rule's own test
cases, built exactly as ``nthlayer catalog test`` builds them, fail under ``promtool test rules``
with the mutated rule. A mutant that survives is a change to the rule that no test notices. The
operators (docs/catalog.md, "Mutation testing"):

- ``threshold*2`` / ``threshold/2``: a comparison (``> >= < <= == !=``, with or without ``bool``)
  with a number operand (a literal, or arithmetic of literals such as ``7 * 86400``) gets that number
  doubled / halved. A 0 stays 0: both mutants are equivalent, counted apart and not run.
- ``guard-drop``: ``A and B`` and ``A unless B`` become ``A``. By the catalog's convention the
  condition is written first and guards (``and redis_memory_max_bytes > 0``, minimum traffic,
  ``unless`` exclusions) follow, so the right side is the one dropped.
- ``for*3``: ``for: D`` becomes ``3D``; ``for: 0m`` is equivalent (counted, not run).
- ``for-drop``: ``for: D`` becomes ``0m``, killed only by a case still pending (the condition true for
  less than ``D``, the alert silent); ``for: 0m`` is equivalent (counted, not run).

Each mutant is parsed back with the PromQL parser and must differ from the original. Mutants are
written as rule file + test file pairs into a temporary folder and run in batches, two promtool
processes at a time. The rule's unmutated tests run in the same batches: a rule whose own tests fail
is reported as broken and its mutants are not counted. Output order is deterministic.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import promql_parser as pq  # noqa: E402

from generators.catalog import (  # noqa: E402
    Technology,
    _duration_text_seconds,
    _tested,
    default_catalog_dir,
    load_catalog,
    promtool_test_document,
    rule_entry,
    rule_labels,
)
from generators.errors import SpecErrors, UserError  # noqa: E402
from generators.promql_scope import PromQLError, parse, render  # noqa: E402
from generators.render import write_all, yaml_bytes  # noqa: E402
from nthlayer.integrations.promtool import find_tool  # noqa: E402

COMPARISONS = frozenset({">", ">=", "<", "<=", "==", "!="})
GUARDS = frozenset({"and", "unless"})
OPERATORS = ("threshold*2", "threshold/2", "guard-drop", "for*3", "for-drop")
BATCH = 60  # test files per promtool run: small enough to keep both workers busy to the end
WORKERS = 2


class Mutant(NamedTuple):
    """One change to one rule. ``before``/``after`` name the change for a reader; ``expr``/``for_``
    are the mutated rule's fields. ``equivalent`` mutants behave like the original and are not run."""

    technology: str
    rule: str
    operator: str
    before: str
    after: str
    expr: str
    for_: str
    equivalent: bool = False


def _unwrap(node: Any) -> Any:
    while isinstance(node, pq.ParenExpr):
        node = node.expr
    return node


def _constant(node: Any) -> float | None:
    """The value of a number literal or of arithmetic over literals (``7 * 86400``), else None."""
    node = _unwrap(node)
    if isinstance(node, pq.NumberLiteral):
        return float(node.val)
    if isinstance(node, pq.UnaryExpr):
        inner = _constant(node.expr)
        return None if inner is None else -inner
    if isinstance(node, pq.BinaryExpr) and str(node.op) in ("+", "-", "*", "/"):
        left, right = _constant(node.lhs), _constant(node.rhs)
        if left is None or right is None or (str(node.op) == "/" and right == 0):
            return None
        return {"+": left + right, "-": left - right, "*": left * right,
                "/": left / right if right else 0.0}[str(node.op)]  # every entry is computed
    return None


def _number_text(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _preorder(tree: Any, wanted: Callable[[Any], bool]) -> list[Any]:
    found: list[Any] = []
    pq.walk(tree, lambda node: (found.append(node) if wanted(node) else None) or True, lambda node: True)
    return found


def _replace_nth(tree: Any, wanted: Callable[[Any], bool], index: int, make: Callable[[Any], Any]) -> Any:
    """``tree`` with the ``index``-th node (pre-order) that ``wanted`` accepts replaced by ``make(node)``.
    transform visits in the same pre-order as walk up to the replacement; later nodes are left alone."""
    seen = [0]
    done = [False]

    def pre(node: Any) -> Any:
        if done[0] or not wanted(node):
            return None
        seen[0] += 1
        if seen[0] - 1 != index:
            return None
        done[0] = True
        return make(node)

    result = pq.transform(parse(render(tree)), pre, None)
    if not done[0]:
        raise PromQLError("mutation target not reached")
    return result


def _is_threshold(node: Any) -> bool:
    return (isinstance(node, pq.BinaryExpr) and str(node.op) in COMPARISONS
            and (_constant(node.rhs) is not None) != (_constant(node.lhs) is not None))


def _is_guard(node: Any) -> bool:
    return isinstance(node, pq.BinaryExpr) and str(node.op) in GUARDS


def _mutated_text(original: str, tree: Any) -> str:
    """The mutant's PromQL, proven to parse back to ``tree`` and to differ from the original."""
    text = render(tree)
    if str(parse(text)) != str(tree) or str(parse(text)) == str(parse(original)):
        raise PromQLError(f"mutant does not render faithfully or changes nothing: {text}")
    return text


def _comparison_text(node: Any, side: str, value_text: str) -> str:
    op = str(node.op) + (" bool" if node.modifier is not None and node.modifier.return_bool else "")
    return f"{op} {value_text}" if side == "rhs" else f"{value_text} {op}"


def threshold_mutants(expr: str) -> Iterator[tuple[str, str, str, str | None]]:
    """(operator, before, after, mutated expr or None when equivalent) for every threshold."""
    tree = parse(expr)
    for index, node in enumerate(_preorder(tree, _is_threshold)):
        side = "rhs" if _constant(node.rhs) is not None else "lhs"
        operand = getattr(node, side)
        value = _constant(operand) or 0.0  # not None: _is_threshold found a constant on this side
        before = _comparison_text(node, side, render(_unwrap(operand)))
        for operator, new in (("threshold*2", value * 2), ("threshold/2", value / 2)):
            after = _comparison_text(node, side, _number_text(new))
            if value == 0:
                yield operator, before, after, None
                continue

            def make(target: Any, side: str = side, new: float = new) -> Any:
                lhs = pq.parse(_number_text(new)) if side == "lhs" else target.lhs
                rhs = pq.parse(_number_text(new)) if side == "rhs" else target.rhs
                return pq.parse(f"({render(lhs)}) {_binary_op_text(target)} ({render(rhs)})")

            yield operator, before, after, _mutated_text(expr, _replace_nth(tree, _is_threshold, index, make))


def _binary_op_text(node: Any) -> str:
    """The operator of a binary expression with its modifiers (``and on (x)``, ``> bool``), as the
    renderer writes it: the text between the rendered operands."""
    whole = render(node)
    left, right = render(node.lhs), render(node.rhs)
    if not (whole.startswith(left) and whole.endswith(right)):
        raise PromQLError(f"cannot find the operator of {whole}")
    return whole[len(left):len(whole) - len(right)].strip()


def guard_mutants(expr: str) -> Iterator[tuple[str, str, str, str | None]]:
    """(operator, before, after, mutated expr) for every ``and``/``unless``: the right side dropped."""
    tree = parse(expr)
    for index, node in enumerate(_preorder(tree, _is_guard)):
        before = f"{_binary_op_text(node)} {render(node.rhs)}"
        mutated = _replace_nth(tree, _is_guard, index, lambda target: pq.parse(f"({render(target.lhs)})"))
        yield "guard-drop", before, "(dropped)", _mutated_text(expr, mutated)


def _duration_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def rule_mutants(tech: Technology, rule: dict[str, Any]) -> list[Mutant]:
    """Every mutant of one rule, in a fixed order: thresholds, guards (both in expression order),
    for tripled, for dropped."""
    mutants: list[Mutant] = []
    expr = rule["expr"]
    try:
        found = [*threshold_mutants(expr), *guard_mutants(expr)]
    except PromQLError as exc:  # a rendering the tool cannot do faithfully: say which rule, stop
        raise UserError(f"{tech.name}/{rule['name']}: cannot build its mutants: {exc}") from None
    for operator, before, after, mutated in found:
        mutants.append(Mutant(tech.name, rule["name"], operator, before, after,
                              mutated if mutated is not None else expr, rule["for"], mutated is None))
    seconds = _duration_text_seconds(rule["for"])
    tripled = _duration_text(seconds * 3) if seconds else rule["for"]
    mutants.append(Mutant(tech.name, rule["name"], "for*3", f"for: {rule['for']}", f"for: {tripled}",
                          expr, tripled, seconds == 0))
    # for: 0m fires on the first evaluation where the condition holds: only a still-pending case
    # (condition true for less than D, alert expected silent) tells it from for: D.
    mutants.append(Mutant(tech.name, rule["name"], "for-drop", f"for: {rule['for']}", "for: 0m",
                          expr, "0m", seconds == 0))
    return mutants


def _rule_file(tech: Technology, rule: dict[str, Any], expr: str, for_: str) -> bytes:
    entry = rule_entry({**rule, "for": for_}, rule_labels(tech, rule), expr)
    return yaml_bytes({"groups": [{"name": f"catalog-{tech.name}", "rules": [entry]}]}, tech.path)


def _promtool_verdicts(tmp: str, test_files: list[str]) -> dict[str, str]:
    """test file (relative to tmp) → ``passed``, ``failed`` (some test case failed) or ``error: …``
    (promtool could not run it, e.g. the rule file did not load), from one ``promtool test rules`` run.
    promtool writes ``Unit Testing:  FILE``, then ``  SUCCESS`` or ``  FAILED:`` followed by the
    ``alertname: …, time: …`` of each failed case or by a load error. stdout and stderr are read as one
    stream, so each file's lines stay together (promtool writes both unbuffered)."""
    completed = subprocess.run([find_tool("promtool"), "test", "rules", *test_files], cwd=tmp,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800,
                               check=False)
    blocks: dict[str, list[str]] = {}
    current: list[str] = []
    for line in completed.stdout.splitlines():
        if line.startswith("Unit Testing:"):
            current = blocks.setdefault(line.split(":", 1)[1].strip(), [])
        elif line.strip():
            current.append(line)
    verdicts: dict[str, str] = {}
    for path in test_files:
        lines = blocks.get(path)
        if lines and lines[0].strip() == "SUCCESS":
            verdicts[path] = "passed"
        elif lines and lines[0].strip() == "FAILED:" and any(l.lstrip().startswith("alertname: ") for l in lines):
            verdicts[path] = "failed"
        else:
            verdicts[path] = "error: " + " ".join(l.strip() for l in (lines or ["promtool did not report it"]))
    return verdicts


def _unit_files(tech: Technology, rule: dict[str, Any], stem: str, expr: str, for_: str) -> dict[str, bytes]:
    """``<stem>.rules.yaml`` (the rule with this expr and for) and ``<stem>.test.yaml`` (the rule's own
    test cases, built from the unchanged rule as ``nthlayer catalog test`` builds them)."""
    document = promtool_test_document(tech, f"{Path(stem).name}.rules.yaml", only=rule["name"])
    return {f"{stem}.rules.yaml": _rule_file(tech, rule, expr, for_),
            f"{stem}.test.yaml": yaml_bytes(document, tech.path)}


def run_mutants(catalog: dict[str, Technology], names: list[str]) -> tuple[list[tuple[Mutant, bool]], list[str]]:
    """(mutant, killed) for every mutant of the named technologies (equivalent ones: killed False, not
    run), and the rules whose own tests fail (their mutants are left out)."""
    jobs: list[tuple[Mutant, str | None]] = []  # every mutant in order, with its test file (None: not run)
    baselines: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for name in names:
        tech = catalog[name]
        for rule_index, rule in enumerate(tech.rules):
            if not _tested(tech, rule):
                continue
            base = f"{name}/{rule_index:03d}"
            files.update(_unit_files(tech, rule, f"{base}-original", rule["expr"], rule["for"]))
            baselines[f"{name}/{rule['name']}"] = f"{base}-original.test.yaml"
            for index, mutant in enumerate(rule_mutants(tech, rule)):
                if mutant.equivalent:
                    jobs.append((mutant, None))
                    continue
                files.update(_unit_files(tech, rule, f"{base}-m{index:02d}", mutant.expr, mutant.for_))
                jobs.append((mutant, f"{base}-m{index:02d}.test.yaml"))
    with tempfile.TemporaryDirectory(prefix="nthlayer-mutation-") as tmp:
        write_all({f"{tmp}/{path}": data for path, data in files.items()})
        test_files = sorted(baselines.values()) + [path for _m, path in jobs if path is not None]
        batches = [test_files[i:i + BATCH] for i in range(0, len(test_files), BATCH)]
        verdicts: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for result in pool.map(lambda batch: _promtool_verdicts(tmp, batch), batches):
                verdicts.update(result)
    broken = sorted(rule for rule, path in baselines.items() if verdicts[path] != "passed")
    results: list[tuple[Mutant, bool]] = []
    for mutant, path in jobs:
        if f"{mutant.technology}/{mutant.rule}" in broken:
            continue
        if path is not None and verdicts[path].startswith("error"):
            raise UserError(f"promtool could not test the {mutant.operator} mutant of {mutant.technology}/"
                            f"{mutant.rule} ({mutant.expr!r}, for {mutant.for_}): {verdicts[path]}")
        results.append((mutant, path is not None and verdicts[path] == "failed"))
    return results, broken


def _tally(results: list[tuple[Mutant, bool]]) -> dict[str, int]:
    judged = [killed for mutant, killed in results if not mutant.equivalent]
    return {"killed": sum(judged), "total": len(judged),
            "equivalent": sum(1 for mutant, _k in results if mutant.equivalent)}


def _rated(tally: dict[str, int]) -> dict[str, Any]:
    """The tally with its kill rate in percent (None when nothing was run: no rate to speak of)."""
    rate = round(100.0 * tally["killed"] / tally["total"], 1) if tally["total"] else None
    return {**tally, "kill_rate": rate}


def _row(label: str, width: int, t: dict[str, Any]) -> str:
    rate = "-" if t["kill_rate"] is None else f"{t['kill_rate']:.1f} %"
    return f"{label:<{width}}  {t['killed']:>6}/{t['total']:<5}  {t['equivalent']:>10}  {rate:>10}"


def report(results: list[tuple[Mutant, bool]], broken: list[str], names: list[str]) -> dict[str, Any]:
    """The numbers: per technology, per operator and overall, plus the surviving mutants."""
    per_tech = {name: _tally([r for r in results if r[0].technology == name]) for name in names}
    per_operator = {op: _tally([r for r in results if r[0].operator == op]) for op in OPERATORS}
    overall = _tally(results)
    survivors = [{"technology": m.technology, "rule": m.rule, "operator": m.operator,
                  "before": m.before.replace("{}", ""), "after": m.after, "expr": m.expr, "for": m.for_}
                 for m, killed in results if not killed and not m.equivalent]
    return {"overall": _rated(overall),
            "operators": {op: _rated(t) for op, t in per_operator.items()},
            "technologies": {name: _rated(t) for name, t in per_tech.items()},
            "broken_rules": broken, "survivors": survivors}


def print_text(summary: dict[str, Any], list_survivors: bool) -> None:
    width = max([len(name) for name in summary["technologies"]] + [10])
    print(f"{'technology':<{width}}  killed/total  equivalent  kill rate")
    for name, t in summary["technologies"].items():
        print(_row(name, width, t))
    print()
    for op, t in summary["operators"].items():
        print(_row(op, width, t))
    for rule in summary["broken_rules"]:
        print(f"broken: {rule}: its own tests fail, mutants not counted")
    if list_survivors:
        print()
        for s in summary["survivors"]:
            print(f"survivor: {s['technology']}/{s['rule']}  {s['operator']}  {s['before']} -> {s['after']}")
    o = summary["overall"]
    rate = "no mutant run" if o["kill_rate"] is None else f"{o['kill_rate']:.1f} %"
    print(f"catalog mutation: {o['killed']} of {o['total']} mutants killed ({rate}), "
          f"{o['equivalent']} equivalent not run, {len(summary['survivors'])} survived")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("technologies", nargs="*", help="only these technologies (default: all)")
    parser.add_argument("--catalog", default=None, help="catalog folder (default: as nthlayer catalog)")
    parser.add_argument("--json", action="store_true", help="print the numbers and survivors as JSON")
    parser.add_argument("--list-survivors", action="store_true", help="list every mutant no test kills")
    parser.add_argument("--fail-under", type=float, metavar="PCT",
                        help="exit 1 when the kill rate is below PCT (or a rule's own tests fail)")
    args = parser.parse_args(argv)
    catalog_dir = args.catalog or default_catalog_dir()
    try:
        catalog = load_catalog(catalog_dir)
        unknown = sorted(set(args.technologies) - set(catalog))
        if unknown:
            raise UserError(f"unknown technology: {', '.join(unknown)}")
        names = sorted(set(args.technologies)) or sorted(catalog)
        results, broken = run_mutants(catalog, names)
    except SpecErrors as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"catalog_mutation: error: {exc}", file=sys.stderr)
        return 1
    summary = report(results, broken, names)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_text(summary, args.list_survivors)
    if args.fail_under is not None and ((summary["overall"]["kill_rate"] or 0.0) < args.fail_under or broken):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
