"""Property: a spec that validates never builds a rule file promtool rejects.

Hypothesis writes hostile specs (Go templates, trailing newlines, odd unicode, regex metacharacters in
selectors, long values, quotes and backslashes); each one goes through the build's own path (validate,
then the build's generators (nthlayer.buildsys.kinds), shapes templating included); every rule file of the valid ones goes
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
from generators.promql import quote
from generators.spec import load_spec
from nthlayer.integrations.promtool import check_rules
from nthlayer.integrations.promtool import test_rules as promtool_unit_tests
from tests.conftest import ROOT

HOSTILE = ["{{", "}}", "{{ $value }}", "{{ query \"up\" }}", "{{.}}", "x\n", "\n", "\\", "\\\\", '"', "'", "`",
           "\u2028", "\u00e9t\u00e9", "\U0001f525", "\u200b", "\x7f", "\t", "%", "$", "$labels", "#", ": ",
           "- x", "a" * 300, "(", ")", "[", "]", "[[:alpha:]]", "a{2}", "x{{2}}", "(?!x)", "(?i)prod", ".*",
           "\\d+", "a|b", "\\C", "(?P<n>x)", "(?<n>x)", "\\Q.\\E", "a++", "\\z", "\\Z", "^", "|", "{", "}"]
pieces = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=6))
hostile_text = st.lists(pieces, min_size=1, max_size=4).map("".join)
matcher_value = st.tuples(st.sampled_from(["", "=~", "!~", "!=", "="]), hostile_text).map("".join)
label_names = st.sampled_from(["env", "instance", "job", "cluster", "code", "env\n", "__name__", "le", "a_b"])

# `slos:` entries of every SLI kind, with hostile selectors, queries (regexes written into their matchers,
# quoted or not) and alert text. Each value is hostile about half the time: a spec is valid only when all of
# its values are, and the property needs valid specs with SLOs to build.
# (HOSTILE's templates and non-RE2 regexes also stand alone, as most mixtures fail some other check first.)
slo_text = st.one_of(st.sampled_from(["Checkout works", "p99 under 500 ms", "https://dash.example/d/1"]),
                     st.sampled_from(["{{ $value }}", "{{ query \"up\" }}", "x }}", "{{"]), hostile_text)
slo_regex = st.one_of(st.sampled_from(["api", "5..", "a|b", "prod|prod-.*"]),
                      st.sampled_from(["(?!x).*", "a++", "(?<n>x)", "x{1001}", "foo([", "\\C"]), hostile_text)
slo_selectors = st.dictionaries(st.sampled_from(["job", "code", "env", "le", "__name__"]),
                                st.tuples(st.sampled_from(["", "=~", "!~", "!=", "="]), slo_regex).map("".join),
                                min_size=1, max_size=2)
query_matcher = st.tuples(st.sampled_from(["job", "code", "__name__"]), st.sampled_from(["=~", "!~", "="]),
                          slo_regex, st.sampled_from([True, True, True, False]))
query_matchers = st.lists(query_matcher, min_size=1, max_size=2).map(
    lambda found: ",".join(f"{label}{op}{quote(value) if quoted else value}" for label, op, value, quoted in found))
counter = st.tuples(st.sampled_from(["errs_total", "reqs_total", ""]), query_matchers).map(
    lambda parts: f"{parts[0]}{{{parts[1]}}}")
query = st.one_of(counter, counter.map(lambda text: f"sum({text})"), hostile_text)
slo_entry = st.fixed_dictionaries(
    {"name": st.sampled_from([""] * 6 + ["a\n", "{{x}}"])},  # "": a unique name (duplicates are refused)
    optional={
        "description": slo_text,
        "alerting": st.fixed_dictionaries({}, optional={
            "labels": st.dictionaries(st.sampled_from(["route", "owner", "__x", "severity"]), slo_text, max_size=2),
            "annotations": st.dictionaries(st.sampled_from(["dash", "summary", "__y"]), slo_text, max_size=2),
        }),
    },
).flatmap(lambda entry: st.one_of(
    st.fixed_dictionaries({}, optional={"selector": slo_selectors, "error_matchers": slo_selectors}).map(
        lambda body: {**entry, "availability": body}),
    st.fixed_dictionaries({"threshold": st.sampled_from([0.5, 0.25, 1])}, optional={"selector": slo_selectors}).map(
        lambda body: {**entry, "latency": body}),
    st.tuples(st.sampled_from(["bad", "good"]), query, query).map(
        lambda qs: {**entry, "events": {qs[0]: qs[1], "total": qs[2]}}),
    st.tuples(query, query).map(
        lambda qs: {**entry, "ratio_query": f"sum(rate({qs[0]}[$window])) / sum(rate({qs[1]}[$window]))"}),
    st.tuples(query, st.sampled_from(["<", ">=", "!="]), st.sampled_from([0, 0.5, 100])).map(
        lambda parts: {**entry, "threshold": {"query": parts[0], "op": parts[1], "value": parts[2]}}),
))
slo_lists = st.lists(slo_entry, min_size=1, max_size=3).map(
    lambda entries: [{**entry, "name": entry["name"] or f"s{index}"} for index, entry in enumerate(entries)])

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
        "slos": slo_lists,
    },
)


# Specs whose only hostile part is their `slos:`, so that many of them are valid and build.
hostile_slo_specs = st.fixed_dictionaries(
    {"service": st.just("hostile"), "tier": st.sampled_from([1, 2, 3]), "team": st.just("t"), "slos": slo_lists})


def test_valid_hostile_specs_build_rule_files_promtool_accepts(tmp_path: Path) -> None:
    _build_and_check(tmp_path, hostile_specs, 50)


def test_valid_hostile_slos_build_rule_files_promtool_accepts(tmp_path: Path) -> None:
    _build_and_check(tmp_path, hostile_slo_specs, 40)


def _build_and_check(tmp_path: Path, specs: st.SearchStrategy[dict], examples: int) -> None:
    """The property over ``examples`` specs drawn from ``specs``."""
    from nthlayer.buildsys.kinds import generate

    written: dict[str, dict] = {}  # rule file → the spec it came from
    unit_tests: dict[str, dict] = {}  # the SLO rules' generated promtool tests, likewise
    outcomes = {"valid": 0, "refused": 0}

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(spec=specs)
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
            files.update(generate(kind, service, str(out), str(ROOT / "rules_catalog")))
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
    files = _slo_rule_files(tmp_path, f"{{job: '=~{regex}'}}")
    result = check_rules(sorted(p for p in files if p.endswith(".rules.yaml")))
    assert result.ok, result.output
    # The generated unit tests expect the description as Prometheus prints it: the selector, braces and all.
    result = promtool_unit_tests(sorted(p for p in files if p.endswith(".test.yaml")))
    assert result.ok, result.output


@pytest.mark.parametrize("selector", ["{job: api, env: ''}", "{job: api, region: '', env: prod}"])
def test_a_selector_label_matched_empty_is_no_label_of_the_absent_alert(tmp_path: Path, selector: str) -> None:
    """``env=""`` matches series without ``env``: absent() of such a selector gives no ``env`` label
    (Prometheus keeps no label with an empty value), so the generated tests must not expect one (found by
    the property test above)."""
    files = _slo_rule_files(tmp_path, selector)
    result = promtool_unit_tests(sorted(p for p in files if p.endswith(".test.yaml")))
    assert result.ok, result.output


def _slo_rule_files(folder: Path, selector: str) -> list[str]:
    """The SLO rule and promtool test files of a tier-1 spec with this SLI selector, written in ``folder``."""
    from generators.slo_rules import slo_rule_files

    raw = f"service: s\ntier: 1\nteam: t\nobservability:\n  sli:\n    selector: {selector}\n"
    files = slo_rule_files(load_spec("services/s.yaml", raw.encode()).service, str(folder))
    for path, data in files.items():
        Path(path).write_bytes(data)
    return sorted(files)


@pytest.mark.parametrize("expr", ['{job!~""}', '{__name__!=""}', 'sum({job!~""}) / sum(up)'])
def test_a_selector_the_rater_cannot_render_is_a_promql_error_not_a_crash(expr: str) -> None:
    """Found by the property test above: the rater puts placeholders in each selector's values, and
    ``{job!~"…"}`` no longer has a matcher that rejects the empty value, which the parser refuses. That
    refusal is a PromQLError (validation words it as the query's problem), not a bare ValueError."""
    from generators.promql_scope import PromQLError, rate_selectors

    with pytest.raises(PromQLError, match="non-empty matcher"):
        rate_selectors(expr, "5m")
