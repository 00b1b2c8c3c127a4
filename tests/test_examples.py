"""The bundled example services, built as `doit` builds them: golden bytes, and the real tools' verdicts."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from generators.openslo_validate import validate_openslo_dir
from nthlayer.buildsys.composites import expected_composite_files
from nthlayer.buildsys.kinds import PER_SERVICE, generate
from nthlayer.buildsys.plan import load_service, make_plan
from nthlayer.integrations.promtool import amtool_check_config
from tests.conftest import ROOT, UPDATE_GOLDEN, requires_amtool, requires_promtool

GOLDEN = ROOT / "tests" / "golden" / "examples"
# Technology alerts have their own golden test on a fixed fixture catalog (test_tech_alerts.py):
# here they are judged by promtool, so the goldens do not churn whenever the real catalog grows.
GOLDEN_KINDS = ("openslo", "slo_rules", "pagerduty")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from generators.alertmanager import alertmanager_files
    from generators.render import write_all

    out = tmp_path_factory.mktemp("examples") / "out"
    cwd = os.getcwd()
    os.chdir(ROOT)  # specs are named as a user names them: services/<name>.yaml
    try:
        plan = make_plan("services", str(out), "rules_catalog")
        assert [e.errors for e in plan.entries if e.errors] == []
        files: dict[str, bytes] = {}
        services = [load_service(e.path) for e in plan.valid]
        for service in services:
            for kind in PER_SERVICE:
                files.update(generate(kind, service, str(out), "rules_catalog"))
        files.update(alertmanager_files(services, str(out / "alertmanager")))
        composites, errors = expected_composite_files(plan)  # services/composites/ (docs/composites.md)
        assert errors == [] and composites
        files.update(composites)
        write_all(files)
    finally:
        os.chdir(cwd)
    return out


def _relative(out: Path, kinds: tuple[str, ...]) -> dict[str, bytes]:
    result = {}
    for path in sorted(out.rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(out))
        if rel.endswith(("alerts.rules.yaml", "k8s.yaml")) or "/grafana/" in rel:
            # dashboards and Kubernetes manifests (the PrometheusRule holds the alerts too) have goldens of
            # their own (tests/test_grafana.py, tests/test_kubernetes.py)
            continue
        result[rel] = path.read_bytes()
    return result


def test_examples_match_golden(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    actual = {rel: data.replace(str(built).encode(), b"out") for rel, data in _relative(built, GOLDEN_KINDS).items()}
    if UPDATE_GOLDEN:
        for old in GOLDEN.rglob("*"):
            if old.is_file():
                old.unlink()
        for rel, data in actual.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_bytes(data)
    expected = {str(p.relative_to(GOLDEN)): p.read_bytes() for p in sorted(GOLDEN.rglob("*")) if p.is_file()}
    assert sorted(actual) == sorted(expected)
    for rel in expected:
        assert actual[rel].decode() == expected[rel].decode(), rel


def test_every_example_service_has_every_artifact(built: Path) -> None:
    services = sorted(p.stem for p in (ROOT / "services").glob("*.yaml"))
    assert len(services) >= 8
    for name in services:
        for rel in ("openslo.yaml",
                    "prometheus/slo.rules.yaml", "prometheus/slo-rules.test.yaml", "prometheus/scrape.yaml",
                    "prometheus/alerts.rules.yaml", "pagerduty.json", "grafana/dashboard.json"):
            assert (built / name / rel).is_file(), f"{name}/{rel}"


def test_examples_cover_tiers_types_and_technologies() -> None:
    services = [load_service(str(p)) for p in sorted((ROOT / "services").glob("*.yaml"))]
    assert {s.tier.number for s in services} == {1, 2, 3}
    assert {s.type for s in services} >= {"api", "web", "grpc", "worker", "stream", "batch"}
    assert len({t.type for s in services for t in s.technologies}) >= 10
    assert {s.slo("availability").window_days for s in services} >= {7, 28, 30}


@requires_promtool
def test_promtool_checks_and_tests_every_generated_rule_file(built: Path) -> None:
    rule_files = sorted(str(p) for p in built.rglob("*.rules.yaml"))
    assert len(rule_files) == 2 * len(list((ROOT / "services").glob("*.yaml"))) + \
        len(list((ROOT / "services" / "composites").glob("*.yaml")))
    checked = subprocess.run(["promtool", "check", "rules", *rule_files], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = sorted(str(p) for p in built.rglob("*.test.yaml"))
    tested = subprocess.run(["promtool", "test", "rules", *tests], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(tests)


def test_generated_openslo_validates(built: Path) -> None:
    assert validate_openslo_dir(str(built)) == []


@requires_amtool
def test_amtool_accepts_the_example_routing(built: Path) -> None:
    result = amtool_check_config(str(built / "alertmanager" / "alertmanager.yml"))
    assert result.ok, result.output
