"""Check that generators.render's direct YAML emitter writes exactly PyYAML's bytes.

    python benchmarks/yaml_equivalence.py [SERVICES_DIR ...] [--random 20000]

Every document the generators produce for the specs in SERVICES_DIR (default: services/ and the golden
test inputs) is emitted both ways and compared, then random documents built from awkward strings
(quotes, colons, hashes, leading dashes, numbers, booleans, line breaks, tabs, non-ASCII) are too.
Exit status 1 on the first difference, which is printed.
"""
from __future__ import annotations

import argparse
import random
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generators import render  # noqa: E402

CHECKED = [0]
DIRECT = render.to_yaml


def compare(document: Any) -> None:
    fast, slow = DIRECT(document), render._pyyaml(document)
    CHECKED[0] += 1
    if fast != slow:
        print(f"MISMATCH for {document!r}\n--- direct\n{fast}--- pyyaml\n{slow}", file=sys.stderr)
        raise SystemExit(1)


def generated(folders: list[str]) -> None:
    from generators.catalog import default_catalog_dir
    from generators.errors import SpecErrors
    from generators.spec import expand_paths, load_spec
    from nthlayer.buildsys.kinds import PER_SERVICE, generate

    original = render.to_yaml

    def checking(document: Any) -> str:
        compare(document)
        return DIRECT(document)

    render.to_yaml = checking  # yaml_bytes looks the name up at call time
    try:
        for path in expand_paths(folders):
            try:
                service = load_spec(path).service
            except SpecErrors:
                continue
            for kind in PER_SERVICE:
                generate(kind, service, "out", default_catalog_dir())
    finally:
        render.to_yaml = original


PIECES = ["a", "b", "x y", ":", ": ", " #", "#", "-", "- ", "?", "'", '"', "\\", "{", "}", "[", "]", ",", "|",
          ">", "*", "&", "!", "%", "@", "`", "\n", "\n\n", " ", "\t", "é", "→", "1", "0.5", "1e3", "true", "no",
          "null", "~", "...", "---", "=", "<<", "0x1F", "2024-05-01", "sum(rate(x{a=~\"5..\"}[5m]))", "\r", "\x85"]


def random_documents(count: int, seed: int = 1) -> None:
    rng = random.Random(seed)

    def text() -> str:
        return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 6)))

    shared: list[Any] = [[], {}, Decimal("0.999"), [1], {"a": 1}]

    def value(depth: int) -> Any:
        roll = rng.random()
        if roll < 0.05:
            return rng.choice(shared)  # the same object twice: PyYAML writes anchors and aliases
        if depth < 3 and roll < 0.2:
            return {text() or "k": value(depth + 1) for _ in range(rng.randint(0, 3))}
        if depth < 3 and roll < 0.35:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return rng.choice([text(), text(), text(), rng.randint(-5, 5), None, True, 1.5, Decimal("1.50"), [], {}])

    for _ in range(count):
        compare({"k": value(0), text() or "z": [value(0), {"m": value(1)}]})


def short_strings() -> None:
    """Every string of up to three characters over an alphabet of YAML indicators, digits and letters."""
    alphabet = " -?:#,[]{}'\"a1.ytn~=<%@`|>!&*\n"
    words = [""] + list(alphabet)
    words += [a + b for a in alphabet for b in alphabet]
    words += [a + b + c for a in alphabet for b in alphabet for c in alphabet]
    for start in range(0, len(words), 50):
        chunk = words[start:start + 50]
        compare({"k": chunk})
        compare({"m": {w: w for w in chunk if "\n" not in w}})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("folders", nargs="*", default=[str(ROOT / "services"), str(ROOT / "tests" / "golden")])
    parser.add_argument("--random", type=int, default=20_000, help="random documents to compare")
    args = parser.parse_args()
    generated([f for f in args.folders if Path(f).exists()])
    short_strings()
    random_documents(args.random)
    print(f"{CHECKED[0]} documents: direct emitter == PyYAML")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
