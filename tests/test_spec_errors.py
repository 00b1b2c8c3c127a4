"""The bad-input corpus: every broken spec gives exact, located error lines and no traceback."""
from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest

from generators.spec import validate_specs
from tests.conftest import ROOT, UPDATE_GOLDEN

CORPUS = ROOT / "tests" / "bad_specs"
KNOWN = ["postgres", "redis", "kafka", "mysql"]
CASES = sorted(p.name for p in CORPUS.glob("*.yaml"))


def _lines(paths: list[str]) -> list[str]:
    result = validate_specs(paths, KNOWN)
    return [e.format() for e in result.errors]


@pytest.mark.parametrize("name", CASES)
def test_bad_spec_reports_exact_lines(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    path = f"tests/bad_specs/{name}"
    lines = _lines([path])
    expected_file = CORPUS / (name[:-5] + ".err")
    if UPDATE_GOLDEN:
        expected_file.write_text("".join(line + "\n" for line in lines))
    assert lines, f"{name} should be rejected"
    assert lines == expected_file.read_text().splitlines()


def test_every_corpus_file_has_expectations() -> None:
    assert {p.name[:-4] for p in CORPUS.glob("*.err")} == {n[:-5] for n in CASES}


def test_duplicate_service_names_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("service: same\ntier: 1\nteam: t\n")
    (tmp_path / "b.yaml").write_text("team: t\nservice: same\ntier: 2\n")
    lines = _lines([str(tmp_path)])
    assert lines == [
        f"{tmp_path}/a.yaml:1:10: /service: duplicate service name 'same' (also in {tmp_path}/b.yaml)",
        f"{tmp_path}/b.yaml:2:10: /service: duplicate service name 'same' (also in {tmp_path}/a.yaml)",
    ]


def test_unknown_upstream_is_a_warning_not_an_error(tmp_path: Path) -> None:
    routed = "pagerduty:\n  schedule_ids: [PSCHED1]\n"  # no routing warning among the upstream ones
    (tmp_path / "a.yaml").write_text("service: a\ntier: 1\nteam: t\ndependencies:\n  upstream: [ghost, b]\n" + routed)
    (tmp_path / "b.yaml").write_text("service: b\ntier: 2\nteam: t\n" + routed)
    result = validate_specs([str(tmp_path)], KNOWN)
    assert result.errors == []
    assert [w.format() for w in result.warnings] == [
        f"{tmp_path}/a.yaml:5:14: /dependencies/upstream/0: warning: upstream service 'ghost' is not defined by any spec"
    ]


def test_multi_megabyte_file_is_refused_quickly_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w") as handle:
        handle.write("service: huge\ntier: 1\nteam: t\ndescription: |\n")
        for _ in range(60_000):
            handle.write("  " + "x" * 70 + "\n")
    tracemalloc.start()
    lines = _lines([str(path)])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert lines == [f"{path}:1:1: /: file is {os.path.getsize(path)} bytes; files larger than 262144 bytes are refused"]
    assert peak < 2 * 1024 * 1024  # read at most the limit, never the whole file


def test_alias_bomb_is_refused_in_bounded_memory() -> None:
    tracemalloc.start()
    started = time.process_time()
    lines = _lines([str(CORPUS / "alias-bomb.yaml")])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(lines) == 1 and "refusing to load it" in lines[0]
    assert peak < 50 * 1024 * 1024
    assert time.process_time() - started < 5  # generous: 9**9 expansions would take hours


def test_cli_prints_sorted_lines_and_exits_1(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli("validate", "--catalog", "tests/bad_specs", "tests/bad_specs/tier-0.yaml",
                             "tests/bad_specs/missing-required.yaml")
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        "tests/bad_specs/missing-required.yaml:1:1: /: missing required key 'service'",
        "tests/bad_specs/missing-required.yaml:1:1: /: missing required key 'team'",
        "tests/bad_specs/missing-required.yaml:1:1: /: missing required key 'tier'",
        "tests/bad_specs/tier-0.yaml:2:7: /tier: 0 is not a tier: use 1, 2, 3 or critical, standard, low",
        "4 errors in 2 files",
    ]
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["service.schema.json", "catalog.schema.json", "openslo-v1.schema.json"])
def test_shipped_schemas_are_valid_json_schema_2020_12(name: str) -> None:
    from jsonschema import Draft202012Validator

    from generators.spec import load_schema

    Draft202012Validator.check_schema(load_schema(name))  # raises SchemaError when not


def test_minimal_tier3_spec_is_valid(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text("service: small\ntier: 3\nteam: t\n")
    result = validate_specs([str(tmp_path)], KNOWN)
    assert [e.format() for e in result.errors] == []
    # Valid; its one warning is that its pages reach nobody (item 1), not about its defaults.
    assert [e.pointer for e in result.warnings] == ["/pagerduty"]
    assert result.specs[0].service.slo("latency").threshold_ms == 2500


@pytest.mark.parametrize("tier", [1, 2, 3, "critical", "standard", "low"])
def test_every_tier_default_is_valid_with_default_buckets(tmp_path: Path, tier: object) -> None:
    (tmp_path / "s.yaml").write_text(f"service: s\ntier: {tier}\nteam: t\n")
    assert validate_specs([str(tmp_path)], KNOWN).errors == []


def _patterns(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value)]
    return []


@pytest.mark.parametrize("name", ["service.schema.json", "catalog.schema.json", "openslo-v1.schema.json"])
def test_schema_patterns_match_whole_values(name: str) -> None:
    """jsonschema searches with Python's re, whose `$` also matches before a final newline."""
    import re

    from generators.spec import load_schema

    for pattern in _patterns(load_schema(name)):
        if pattern.endswith("$(?!\\n)"):
            continue
        assert not pattern.endswith("$"), f"{name}: {pattern} accepts a trailing newline"
    service = load_schema("service.schema.json")
    assert re.search(service["properties"]["service"]["pattern"], "evil\n") is None
    assert re.search(service["properties"]["service"]["pattern"], "evil") is not None
