"""``nthlayer import sloth|openslo``: golden conversions, every lossy field reported, the round trip of our own
OpenSLO output, and imported specs that validate and build rules promtool accepts.

Goldens: ``tests/golden/imports/<format>/input`` → ``expected/`` (the spec files, and ``warnings.txt``: what
the command prints on stderr). ``NTHLAYER_UPDATE_GOLDEN=1`` rewrites ``expected/``; review the diff.
"""
from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from generators.importers.common import percent_to_ratio
from generators.importers.sloth_queries import rated_selector
from tests.conftest import ROOT, UPDATE_GOLDEN, requires_promtool

GOLDEN = ROOT / "tests" / "golden" / "imports"
EXAMPLES = ROOT / "tests" / "golden" / "examples"


def _inputs(source: str) -> list[str]:
    folder = GOLDEN / source / "input"
    return [str((folder / name).relative_to(ROOT)) for name in sorted(os.listdir(folder))]


def _golden_run(source: str, tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch, *options: str) -> Path:
    """Import the golden inputs (paths as a user in the repository types them) and compare with expected/."""
    monkeypatch.chdir(ROOT)
    into = tmp_path / "services"
    code, out, err = run_cli("import", source, *_inputs(source), "--into", str(into), *options)
    assert code == 0, err
    expected = GOLDEN / source / "expected"
    written = {name: (into / name).read_text() for name in sorted(os.listdir(into))}
    warnings = "".join(line + "\n" for line in err.splitlines())
    if UPDATE_GOLDEN:
        shutil.rmtree(expected, ignore_errors=True)
        expected.mkdir()
        for name, text in written.items():
            (expected / name).write_text(text)
        (expected / "warnings.txt").write_text(warnings)
    assert sorted(written) == sorted(n for n in os.listdir(expected) if n != "warnings.txt")
    for name, text in written.items():
        assert text == (expected / name).read_text(), name
    assert warnings == (expected / "warnings.txt").read_text()
    assert out.splitlines()[-1].startswith(f"imported {len(written)} service(s)")
    return into


def test_sloth_golden(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    into = _golden_run("sloth", tmp_path, run_cli, monkeypatch, "--team", "imaging")
    assert sorted(os.listdir(into)) == ["checkout.yaml", "image-resizer.yaml", "search.yaml"]


def test_openslo_golden(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    into = _golden_run("openslo", tmp_path, run_cli, monkeypatch)
    assert sorted(os.listdir(into)) == ["ledger.yaml", "page-render.yaml"]


def test_every_lossy_field_is_one_warning_line() -> None:
    """Each warning names its file, line, column and pointer, and says why (the goldens' stderr)."""
    for source in ("sloth", "openslo"):
        lines = (GOLDEN / source / "expected" / "warnings.txt").read_text().splitlines()
        assert lines, source
        for line in lines:
            path, row, col, rest = line.split(":", 3)
            assert path.startswith(f"tests/golden/imports/{source}/input/") and row.isdigit() and col.isdigit()
            assert rest.startswith(" /") and ": warning: " in rest, line
            assert any(phrase in rest for phrase in (" not imported because ", " assumed", " imported as ",
                                                     " not used as the ")), line


def test_sloth_objective_is_exact() -> None:
    assert percent_to_ratio(99.9) == Decimal("0.999")
    assert str(percent_to_ratio(99.95)) == "0.9995"
    assert str(percent_to_ratio(99.999)) == "0.99999"
    assert percent_to_ratio(99) == Decimal("0.99")
    assert percent_to_ratio(100) is None and percent_to_ratio(0) is None and percent_to_ratio("99") is None


@pytest.mark.parametrize(("query", "selector"), [
    ('sum(rate(a_total{job="x"}[{{.window}}]))', 'a_total{job="x"}'),
    ("sum(increase(a_total[{{ .window }}]))", "a_total"),
    ('(\n  sum(\n    rate(a_total{code=~"5.."}[{{.window}}])\n  )\n)', 'a_total{code=~"5.."}'),
    ("sum by (x) (rate(a_total[{{.window}}]))", None),  # grouped: a ratio per group, not one count
    ("sum(rate(a_total[{{.window}}])) - sum(rate(b_total[{{.window}}]))", None),
    ("sum(rate(a_total[{{.window}}] offset 1h))", None),
    ("sum(irate(a_total[{{.window}}]))", None),
    ("sum(rate(a_total[5m]))", None),
])
def test_sloth_events_shape(query: str, selector: str | None) -> None:
    function = "increase" if "increase" in query else "rate"
    assert rated_selector(query, function) == selector


def test_sloth_events_need_one_function_on_both_sides() -> None:
    from generators.importers.sloth_queries import events_pair

    rate, increase = "sum(rate(a_total[{{.window}}]))", "sum(increase(b_total[{{.window}}]))"
    assert events_pair(rate, rate.replace("a_", "b_")) == ("a_total", "b_total")
    assert events_pair(increase.replace("b_", "a_"), increase) == ("a_total", "b_total")
    assert events_pair(rate, increase) is None  # errors per second over events per window: not a ratio of events


@pytest.mark.parametrize(("error", "latency"), [
    ('sum(rate(h_count{job="a"}[{{.window}}])) - sum(rate(h_bucket{job="a",le="0.5"}[{{.window}}]))',
     {"threshold": Decimal("0.5"), "histogram": "h", "selector": {"job": "a"}}),
    ('sum(rate(h_count{job="a"}[{{.window}}])) - sum(rate(h_bucket{job="b",le="0.5"}[{{.window}}]))', None),
    ('sum(rate(h_count{job="a"}[{{.window}}])) - sum(rate(g_bucket{job="a",le="0.5"}[{{.window}}]))', None),
    ('sum(rate(h_count{job="a"}[{{.window}}])) - sum(rate(h_bucket{job="a",le=~"0.5"}[{{.window}}]))', None),
    ('sum(rate(h_count{job="a"}[{{.window}}])) + sum(rate(h_bucket{job="a",le="0.5"}[{{.window}}]))', None),
])
def test_sloth_histogram_shape_is_a_latency_sli(error: str, latency: dict | None) -> None:
    from generators.importers.sloth_queries import latency_sli

    found = latency_sli(error, 'sum(rate(h_count{job="a"}[{{.window}}]))')
    assert found == (None if latency is None else {"latency": latency})


def test_openslo_round_trip_of_every_example(tmp_path: Path, run_cli) -> None:
    """Our OpenSLO output of each example service → import → a spec that generates the same OpenSLO again."""
    from generators.openslo import openslo_files
    from generators.spec import load_spec

    services = sorted(p.name for p in EXAMPLES.iterdir() if (p / "openslo.yaml").is_file())
    assert len(services) >= 10
    for name in services:
        source = EXAMPLES / name / "openslo.yaml"
        into = tmp_path / "services"
        code, _out, err = run_cli("import", "openslo", str(source), "--into", str(into))
        # Nothing lost; the one assumption: OpenSLO does not list histogram buckets, so a threshold off the
        # default buckets brings its own (the spec the example came from declared them).
        assumed = [line for line in err.splitlines() if "histogram buckets assumed" not in line]
        assert (code, assumed) == (0, []), name
        spec = load_spec(str(into / f"{name}.yaml")).service
        again = openslo_files(spec, "out")
        assert sorted(again) == ["out/openslo.yaml"]
        original = source.read_text().split("\n", 1)[1]  # past the generated-from header
        assert again["out/openslo.yaml"].decode().split("\n", 1)[1] == original, name


def test_round_trip_gives_back_the_spec(tmp_path: Path, run_cli) -> None:
    """payment-api's OpenSLO comes back as the very spec fields OpenSLO carries (tier, team, overrides)."""
    import yaml

    code, _out, _err = run_cli("import", "openslo", str(EXAMPLES / "payment-api" / "openslo.yaml"),
                               "--into", str(tmp_path))
    assert code == 0
    imported = yaml.safe_load((tmp_path / "payment-api.yaml").read_text())
    assert imported == {"service": "payment-api", "tier": 1, "team": "payments",
                        "observability": {"slo_overrides": {"availability": 0.9995}}}
    text = (tmp_path / "payment-api.yaml").read_text()
    assert text.startswith("# Imported by nthlayer from openslo (")


def test_refuses_to_overwrite_without_force(tmp_path: Path, run_cli) -> None:
    source = str(EXAMPLES / "payment-api" / "openslo.yaml")
    target = tmp_path / "payment-api.yaml"
    target.write_text("service: payment-api\n")
    code, _out, err = run_cli("import", "openslo", source, "--into", str(tmp_path))
    assert code == 1
    assert f"{target}:1:1: /: exists; not overwritten (use --force to replace it)" in err.splitlines()
    assert target.read_text() == "service: payment-api\n"
    code, _out, err = run_cli("import", "openslo", source, "--into", str(tmp_path), "--force")
    assert code == 0, err
    assert "availability: 0.9995" in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["payment-api.yaml"]  # no temporary file left behind


def test_no_team_is_an_error_and_other_services_are_written(tmp_path: Path, run_cli,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli("import", "sloth", "tests/golden/imports/sloth/input/many.yml", "--into", str(tmp_path))
    assert code == 1
    assert ("tests/golden/imports/sloth/input/many.yml:18:10: /service: service 'image-resizer' names no team: "
            "pass --team or give it a 'team' or 'owner' label") in err.splitlines()
    assert sorted(os.listdir(tmp_path)) == ["search.yaml"]
    assert f"wrote {tmp_path}/search.yaml" in out


def test_wrong_format_is_a_clear_error(tmp_path: Path, run_cli) -> None:
    openslo = str(EXAMPLES / "payment-api" / "openslo.yaml")
    code, _out, err = run_cli("import", "sloth", openslo, "--into", str(tmp_path / "s"))
    assert code == 1
    assert err.splitlines()[0] == (f"{openslo}:3:1: /: not a Sloth spec: expected version: prometheus/v1 "
                                   "(this looks like OpenSLO: use 'nthlayer import openslo')")
    sloth = tmp_path / "sloth.yaml"
    sloth.write_text('version: "prometheus/v1"\nservice: x\nslos: [\n')
    code, _out, err = run_cli("import", "openslo", str(sloth), "--into", str(tmp_path / "s"))
    assert code == 1
    assert err.startswith(f"{sloth}:4:1: /: YAML syntax error: ")
    assert not (tmp_path / "s").exists()


def test_imported_specs_validate(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    # Valid specs; whether they meet an organisation's rules is its policies' say: the imported Sloth
    # checkout service is critical with a 0.995 SLO and no PagerDuty, which the defaults deny.
    (tmp_path / "nthlayer.toml").write_text('[policy]\ndisable = ["tier1-objective", "tier1-pagerduty"]\n')
    monkeypatch.setenv("NTHLAYER_CONFIG", str(tmp_path / "nthlayer.toml"))
    for source in ("sloth", "openslo"):
        code, _out, err = run_cli("validate", "--quiet", str(GOLDEN / source / "expected"))
        assert (code, err) == (0, ""), source


@requires_promtool
def test_imported_specs_build_rules_promtool_accepts(tmp_path: Path) -> None:
    """Every imported golden spec builds SLO rules `promtool check rules` accepts, and the promtool tests
    generated for them (a burst pages where paging is on, steady traffic is silent) pass."""
    from generators.render import write_all
    from generators.slo_rules import slo_rule_files
    from generators.spec import load_spec
    from nthlayer.integrations.promtool import check_rules, test_rules

    files: dict[str, bytes] = {}
    kinds: set[str] = set()
    for source in ("sloth", "openslo"):
        for path in sorted((GOLDEN / source / "expected").glob("*.yaml")):
            service = load_spec(str(path)).service
            kinds |= {slo.kind for slo in service.slos}
            files.update(slo_rule_files(service, str(tmp_path / service.name)))
    assert kinds == {"events", "latency", "ratio_query", "threshold"}
    write_all(files)
    rules = sorted(p for p in files if p.endswith(".rules.yaml"))
    tests = sorted(p for p in files if p.endswith(".test.yaml"))
    assert len(rules) == 5 and tests
    checked = check_rules(rules)
    assert checked.ok, checked.output
    tested = test_rules(tests)
    assert tested.ok, tested.output

def test_openslo_round_trip_of_every_sli_kind(tmp_path: Path, run_cli) -> None:
    """A spec with every SLI kind, per-SLO windows and alerting switches: export → import → export is identical,
    with nothing reported; the imported spec has the same SLOs in the same order (out/<service>/openslo.yaml is one
    stream, in the spec's SLO order)."""
    import yaml

    from generators.openslo import openslo_files
    from generators.render import write_all
    from generators.spec import load_spec

    source = GOLDEN / "roundtrip" / "orders-api.yaml"
    exported = openslo_files(load_spec(str(source)).service, str(tmp_path / "a"))
    write_all(exported)
    code, _out, err = run_cli("import", "openslo", *sorted(exported), "--into", str(tmp_path / "services"))
    assert (code, err) == (0, "")
    imported = tmp_path / "services" / "orders-api.yaml"
    again = openslo_files(load_spec(str(imported)).service, str(tmp_path / "a"))
    assert sorted(again) == sorted(exported)
    for path, data in exported.items():
        assert again[path].split(b"\n", 1)[1] == data.split(b"\n", 1)[1], path
    original = yaml.safe_load(source.read_text())
    back = yaml.safe_load(imported.read_text())
    assert back["slos"] == original["slos"]  # one stream, in the spec's order
    assert {k: v for k, v in back.items() if k != "slos"} == {k: v for k, v in original.items() if k != "slos"}


def test_malformed_sloth_fields_are_reported_not_crashed_on(tmp_path: Path, run_cli) -> None:
    source = tmp_path / "odd.yml"
    source.write_text(
        "version: prometheus/v1\n"
        "service: odd\n"
        "labels: [a, b]\n"
        "slos:\n"
        "  - name: one\n"
        "    objective: 99.5\n"
        "    sli: {events: {error_query: 'sum(rate(e_total[{{.window}}]))',\n"
        "                   total_query: 'sum(rate(t_total[{{.window}}]))'}}\n"
        "    alerting: {page_alert: off, ticket_alert: {labels: {bad-label: x}}}\n"
        "  - name: two\n"
        "    objective: 99.5\n"
        "    sli: [1]\n")
    code, _out, err = run_cli("import", "sloth", str(source), "--into", str(tmp_path / "s"), "--team", "t")
    assert code == 0
    assert err.splitlines() == [
        f"{source}:2:10: /service: warning: team 't' assumed (from --team): the source names no team",
        f"{source}:2:10: /service: warning: tier 2 assumed (--tier, default 2): the source has no tier",
        f"{source}:3:9: /labels: warning: 'labels' not imported because it is not a mapping",
        f"{source}:9:28: /slos/0/alerting/page_alert: warning: 'page_alert' not imported because it is not a mapping",
        f"{source}:9:68: /slos/0/alerting/ticket_alert/labels/bad-label: warning: label 'bad-label' not imported "
        "because it is not a Prometheus label name with a text value",
        f"{source}:12:10: /slos/1/sli: warning: 'sli' not imported because it is not a mapping",
        f"{source}:12:10: /slos/1/sli: warning: SLO 'two' not imported because its SLI needs exactly one of events, "
        "raw or plugin (found: none)",
    ]
    assert "events:\n    bad: e_total\n    total: t_total\n" in (tmp_path / "s" / "odd.yaml").read_text()


def test_tier_option_and_labels(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """--tier fills in for a source without a tier label; a tier label wins over it (checkout's tier: "1")."""
    monkeypatch.chdir(ROOT)
    code, _out, err = run_cli("import", "sloth", *_inputs("sloth"), "--into", str(tmp_path), "--team", "imaging",
                              "--tier", "low")
    assert code == 0
    assert "tests/golden/imports/sloth/input/many.yml:4:10: /service: warning: tier low assumed (--tier, default 2): " \
           "the source has no tier" in err.splitlines()
    assert "tier: low\n" in (tmp_path / "search.yaml").read_text()
    assert "tier: 1\n" in (tmp_path / "checkout.yaml").read_text()
    code, _out, err = run_cli("import", "sloth", *_inputs("sloth"), "--into", str(tmp_path), "--tier", "4")
    assert code == 64 and "invalid choice: '4'" in err


def test_spec_file_has_no_yaml_aliases() -> None:
    """A value used twice (a latency threshold that is also one of the buckets) is written twice, not as an
    anchor and alias."""
    from generators.importers.common import buckets_with, spec_bytes

    threshold = Decimal("0.4")
    spec = {"service": "s", "slos": [{"latency": {"threshold": threshold, "buckets": buckets_with(threshold)}}]}
    text = spec_bytes(spec, "sloth", ["x.yml"]).decode()
    assert "&" not in text and "*" not in text and "threshold: 0.4\n" in text and "  - 0.4\n" in text


def test_documents_of_one_service_that_disagree_on_team_or_tier(tmp_path: Path, run_cli) -> None:
    source = tmp_path / "two.yml"
    slo = ("slos:\n  - name: {name}\n    objective: 99\n    sli: {{raw: {{error_ratio_query: "
           "'max_over_time(e[{{{{.window}}}}])'}}}}\n")
    source.write_text("version: prometheus/v1\nservice: api\nlabels: {team: a, tier: '1'}\n" + slo.format(name="one")
                      + "---\nversion: prometheus/v1\nservice: api\nlabels: {team: b, owner: a, tier: '3'}\n"
                      + slo.format(name="two"))
    code, _out, err = run_cli("import", "sloth", str(source), "--into", str(tmp_path / "s"))
    assert code == 0, err
    assert err.splitlines() == [
        f"{source}:11:16: /labels/team: warning: label team 'b' not used as the team because label team 'a' comes "
        "first",
        f"{source}:11:35: /labels/tier: warning: label tier '3' not used as the tier because label tier 1 comes first"]
    text = (tmp_path / "s" / "api.yaml").read_text()
    assert "tier: 1\nteam: a\nlabels:\n  owner: a\nslos:\n- name: one\n" in text and "- name: two\n" in text
