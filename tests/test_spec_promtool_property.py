"""Property: a spec that validates never builds a rule file promtool rejects.

Hypothesis writes hostile specs (Go templates, trailing newlines, odd unicode, regex metacharacters in
selectors, long values, quotes and backslashes); each one goes through the build's own path (validate,
then nthlayer.build's generators, shapes templating included); every rule file of the valid ones goes
to one `promtool check rules` call at the end, which must accept them all, and a few of the generated
SLO unit tests go to `promtool test rules`, which must pass them.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generators.errors import SpecErrors
from generators.spec import load_spec
from nthlayer.promtool import check_rules
from nthlayer.promtool import test_rules as promtool_unit_tests
from tests.conftest import ROOT

HOSTILE = ["{{", "}}", "{{ $value }}", "{{ query \"up\" }}", "{{.}}", "x\n", "\n", "\\", "\\\\", '"', "'", "`",
           "\u2028", "\u00e9t\u00e9", "\U0001f525", "\u200b", "\x7f", "\t", "%", "$", "$labels", "#", ": ",
           "- x", "a" * 300, "(", ")", "[", "]", "[[:alpha:]]", "a{2}", "x{{2}}", "(?!x)", "(?i)prod", ".*",
           "\\d+", "a|b", "\\C", "(?P<n>x)", "(?<n>x)", "\\Q.\\E", "a++", "\\z", "\\Z", "^", "|", "{", "}"]
pieces = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=6))
hostile_text = st.lists(pieces, min_size=1, max_size=4).map("".join)
matcher_value = st.tuples(st.sampled_from(["", "=~", "!~", "!=", "="]), hostile_text).map("".join)
label_names = st.sampled_from(["env", "instance", "job", "cluster", "code", "env\n", "__name__", "le", "a_b"])

hostile_specs = st.fixed_dictionaries(
    {"service": st.sampled_from(["hostile"] * 4 + ["hostile\n"]), "tier": st.sampled_from([1, 2, 3]),
     "team": st.just("t")},
    optional={
        "description": hostile_text,
        "runbook_url": hostile_text.map(lambda text: "https://runbooks.example.com/" + text),
        "labels": st.dictionaries(label_names, hostile_text, max_size=2),
        "observability": st.fixed_dictionaries({}, optional={"sli": st.fixed_dictionaries({}, optional={
            "selector": st.dictionaries(label_names, matcher_value, min_size=1, max_size=2),
            "error_matchers": st.dictionaries(label_names, matcher_value, min_size=1, max_size=2),
        })}),
        "dependencies": st.fixed_dictionaries({"technologies": st.lists(st.fixed_dictionaries(
            {"type": st.just("redis"), "name": st.sampled_from(["cache"] * 4 + ["cache\n"])},
            optional={"selector": st.dictionaries(label_names, matcher_value, min_size=1, max_size=2),
                      "runbook_url": hostile_text.map(lambda text: "https://x.example/" + text)}),
            max_size=1)}),
    },
)


def test_valid_hostile_specs_build_rule_files_promtool_accepts(tmp_path: Path) -> None:
    from nthlayer.build import _generate

    written: dict[str, dict] = {}  # rule file → the spec it came from
    unit_tests: dict[str, dict] = {}  # the SLO rules' generated promtool tests, likewise
    outcomes = {"valid": 0, "refused": 0}

    @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(spec=hostile_specs)
    def build(spec: dict) -> None:
        raw = yaml.safe_dump(spec, allow_unicode=True).encode("utf-8")
        try:
            service = load_spec("services/hostile.yaml", raw).service
        except SpecErrors as exc:
            assert exc.errors and all("\n" not in line for line in exc.lines())
            outcomes["refused"] += 1
            return
        outcomes["valid"] += 1
        out = tmp_path / str(len(written))
        files: dict[str, bytes] = {}
        for kind in ("slo_rules", "alerts"):
            files.update(_generate(kind, service, str(out), str(ROOT / "rules_catalog")))
        for path, data in files.items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
            if path.endswith(".rules.yaml"):
                written[path] = spec
            elif path.endswith("slo-rules.test.yaml"):
                unit_tests[path] = spec

    build()
    assert outcomes["refused"] and outcomes["valid"], outcomes  # the strategy reaches both sides
    result = check_rules(sorted(written))
    bad = sorted(path for path in written if f"{path}:" in result.output)
    assert result.ok, f"{result.output[-3000:]}\nspecs: {[written[p] for p in bad][:3]}"
    # The generated unit tests must pass too (their series must match the SLI as Prometheus does); a few
    # of them, as each costs promtool about a second.
    sample = sorted(unit_tests)[:6]
    result = promtool_unit_tests(sample)
    failed = [unit_tests[p] for p in sample if f"{p}\n  FAILED" in result.output]
    assert result.ok, f"{result.output[-3000:]}\nspecs: {failed[:3]}"


@pytest.mark.parametrize("regex", ["api|x{{2}}", "api|a{2}}", "api|\\{\\{"])
def test_sli_regex_quoted_in_an_annotation_prints_literally(tmp_path: Path, regex: str) -> None:
    """The absent-metrics alert quotes the SLI selector in its description: '{{' there is escaped, and
    the generated promtool tests expect it printed as written."""
    from generators.slo_rules import slo_rule_files

    raw = f"service: s\ntier: 1\nteam: t\nobservability:\n  sli:\n    selector: {{job: '=~{regex}'}}\n"
    files = slo_rule_files(load_spec("services/s.yaml", raw.encode()).service, str(tmp_path))
    for path, data in files.items():
        Path(path).write_bytes(data)
    result = check_rules(sorted(p for p in files if p.endswith(".rules.yaml")))
    assert result.ok, result.output
    # The generated unit tests expect the description as Prometheus prints it: the selector, braces and all.
    result = promtool_unit_tests(sorted(p for p in files if p.endswith(".test.yaml")))
    assert result.ok, result.output
