"""Composite SLOs: loading and validation (exact error lines), generated rules judged by real promtool,
the weighted-events maths, the OpenSLO composite form."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from generators.composite import composite_paths, validate_composites
from generators.composite_rules import composite_files
from generators.openslo_validate import validate_openslo_dir
from generators.spec import expand_paths, validate_specs

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "bad_composites"
CASES = sorted(p.name for p in CORPUS.glob("*.yaml"))
UPDATE_GOLDEN = os.environ.get("NTHLAYER_UPDATE_GOLDEN") == "1"


def _services(folder: str = "services") -> dict:
    result = validate_specs(expand_paths([folder]), None)
    assert not result.errors
    return {spec.service.name: spec.service for spec in result.specs}


def _lines(paths: list[str], services: dict | None = None) -> list[str]:
    result = validate_composites(paths, _services() if services is None else services)
    return [e.format() for e in sorted(result.errors)]


@pytest.mark.parametrize("name", CASES)
def test_bad_composite_reports_exact_lines(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    lines = _lines([f"tests/bad_composites/{name}"])
    expected_file = CORPUS / (name[:-5] + ".err")
    if UPDATE_GOLDEN:
        expected_file.write_text("".join(line + "\n" for line in lines))
    assert lines, f"{name} should be rejected"
    assert lines == expected_file.read_text().splitlines()


def test_every_corpus_file_has_expectations() -> None:
    assert {p.name[:-4] for p in CORPUS.glob("*.err")} == {n[:-5] for n in CASES}


def _build(tmp_path: Path, composite_yaml: str | None = None, services_dir: str = "services") -> Path:
    """The composite's files under tmp_path/out/composites/<name>/, from services_dir's specs."""
    services = _services(services_dir)
    paths = composite_paths(services_dir)
    if composite_yaml is not None:
        path = tmp_path / "composite.yaml"
        path.write_text(composite_yaml)
        paths = [str(path)]
    result = validate_composites(paths, services)
    assert not result.errors, [e.format() for e in result.errors]
    (loaded, members), = result.composites
    out = tmp_path / "out" / "composites" / loaded.composite.name
    for path, data in composite_files(loaded.composite, members, str(out)).items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return out


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_example_composite_rules_pass_promtool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    out = _build(tmp_path)
    prom = out / "prometheus"
    checked = _promtool("check", "rules", "composite.rules.yaml", cwd=prom)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "composite.test.yaml", cwd=prom)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    names = [line.split(": ", 1)[1] for line in (prom / "composite.test.yaml").read_text().splitlines()
             if line.startswith("- name: ")]
    assert [n.split(":")[0].strip("'") for n in names] == ["burst", "healthy", "quiet component"]


def _mutate(rules: Path, old: str, new: str) -> None:
    text = rules.read_text()
    assert old in text
    rules.write_text(text.replace(old, new))


def test_an_average_of_ratios_fails_the_generated_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quiet-component scenario tells weighted events from an average of the components' ratios."""
    monkeypatch.chdir(ROOT)
    prom = _build(tmp_path) / "prometheus"
    ratio = lambda s, slo: (f'(sum(slo:sli_errors:rate5m{{service="{s}",slo="{slo}"}}) / '  # noqa: E731
                            f'sum(slo:sli_requests:rate5m{{service="{s}",slo="{slo}"}}))')
    average = (f"({ratio('payment-api', 'availability')} + {ratio('inventory-api', 'availability')} + "
               f"{ratio('checkout-web', 'latency')}) / 3")
    _mutate(prom / "composite.rules.yaml",
            'slo:sli_errors:rate5m{composite="checkout",slo="checkout"}\n      /\n'
            '      slo:sli_requests:rate5m{composite="checkout",slo="checkout"}', average)
    tested = _promtool("test", "rules", "composite.test.yaml", cwd=prom)
    assert tested.returncode == 1
    assert "1.6666666666666666E-01" in tested.stdout + tested.stderr  # (0.5 + 0 + 0) / 3


def test_a_composite_blind_to_one_component_fails_the_burst_test(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropping the bursting component's errors from the sum silences the fast alert: the test says so."""
    monkeypatch.chdir(ROOT)
    prom = _build(tmp_path) / "prometheus"
    _mutate(prom / "composite.rules.yaml",
            '2 * (sum(slo:sli_errors:rate5m{service="payment-api",slo="availability"}) or vector(0))',
            '2 * (sum(slo:sli_errors:rate5m{service="payment-api",slo="none"}) or vector(0))')
    tested = _promtool("test", "rules", "composite.test.yaml", cwd=prom)
    assert tested.returncode == 1
    assert "alertname: SLOBurnRateFast" in tested.stdout + tested.stderr


WEIGHTED = """\
name: two
team: t
objective: 0.999
components:
  - service: payment-api
    slo: availability
    weight: 0.25
  - service: user-service
    slo: latency
    weight: 3
alerting:
  route_via: payment-api
"""


def test_weighted_events_for_fractional_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another objective and fractional weights: promtool agrees with the weighted-events value."""
    monkeypatch.chdir(ROOT)
    prom = _build(tmp_path, WEIGHTED) / "prometheus"
    text = (prom / "composite.rules.yaml").read_text()
    assert '0.25 * (sum(slo:sli_requests:rate5m{service="payment-api",slo="availability"}) or vector(0))' in text
    assert '3 * (sum(slo:sli_errors:rate5m{service="user-service",slo="latency"}) or vector(0))' in text
    # 0.25 × 0.005 bad of 0.25 × 0.01 + 3 × 1000 events
    assert "value: 4.166663194447338e-07" in (prom / "composite.test.yaml").read_text()
    tested = _promtool("test", "rules", "composite.test.yaml", cwd=prom)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_openslo_composite_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    import yaml

    out = _build(tmp_path)
    assert validate_openslo_dir(str(out)) == []
    documents = list(yaml.safe_load_all((out / "openslo" / "checkout.yaml").read_text()))
    slo = next(d for d in documents if d["kind"] == "SLO")
    assert "indicator" not in slo["spec"] and "indicatorRef" not in slo["spec"]
    assert [(o["indicator"]["metadata"]["name"], o["compositeWeight"], o["target"])
            for o in slo["spec"]["objectives"]] == [
        ("payment-api-availability", 2, 0.99), ("inventory-api-availability", 1, 0.99),
        ("checkout-web-latency", 1, 0.99)]
    assert slo["spec"]["budgetingMethod"] == "Occurrences"
    assert [d["kind"] for d in documents].count("AlertPolicy") == 4


def test_openslo_schema_refuses_an_slo_without_any_indicator(tmp_path: Path) -> None:
    from generators.openslo_validate import validate_openslo_dir as check

    path = tmp_path / "x.yaml"
    path.write_text("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\nspec:\n  service: s\n"
                    "  budgetingMethod: Occurrences\n  objectives:\n    - target: 0.9\n")
    assert [e.format() for e in check(str(path))] == [
        f"{path}:5:3: /spec: an SLO needs exactly one of 'indicator' and 'indicatorRef', or (a composite SLO) "
        "at least two objectives with one each"]


def test_generation_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    first = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in _build(tmp_path / "a").rglob("*") if p.is_file()}
    second = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in _build(tmp_path / "b").rglob("*") if p.is_file()}
    assert first == second and len(first) == 3
    # No YAML anchors or aliases (a shared object in a document would make them): every value written out.
    assert not [name for name, data in first.items() if b"&id0" in data or b"*id0" in data]


def test_a_component_slo_that_counts_no_events_is_refused(tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.mkdir()
    (services / "a.yaml").write_text(
        "service: a\ntier: 2\nteam: t\nslos:\n  - name: queue\n    objective: 0.99\n"
        "    threshold: {query: 'max(queue_depth)', op: '<', value: 100}\n")
    (services / "b.yaml").write_text("service: b\ntier: 2\nteam: t\n")
    (services / "composites").mkdir()
    path = services / "composites" / "j.yaml"
    path.write_text("name: j\nteam: t\nobjective: 0.99\ncomponents:\n  - {service: a, slo: queue}\n"
                    "  - {service: b, slo: availability}\nalerting: {route_via: b}\n")
    assert _lines([str(path)], _services(str(services))) == [
        f"{path}:5:23: /components/0/slo: a/queue is a threshold SLO, which counts no events; a composite "
        "pools events, so its components must be availability, latency or events SLOs"]


def test_tier_defaults_to_the_most_critical_component(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = validate_composites(composite_paths("services"), _services())
    (loaded, _), = result.composites
    assert loaded.composite.tier is not None and loaded.composite.tier.number == 1
    assert result.warnings == []


GUARDED = """\
name: guarded
team: t
objective: 0.995
window: 28d
components:
  - service: search-api
    slo: availability
    weight: 0.5
  - service: order-worker
    slo: latency
alerting:
  route_via: search-api
  min_request_rate: 500
"""


def test_a_high_traffic_guard_and_another_window_still_prove_the_burst(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    prom = _build(tmp_path, GUARDED) / "prometheus"
    assert ">= 500" in (prom / "composite.rules.yaml").read_text()
    tested = _promtool("test", "rules", "composite.test.yaml", cwd=prom)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "- name: 'burst:" in (prom / "composite.test.yaml").read_text()
