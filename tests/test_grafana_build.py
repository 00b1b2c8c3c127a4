"""Dashboards in the doit build: one spec edit rewrites only its dashboard; the overview follows the set of
services; a catalog edit regenerates its dependants' dashboards; the build's templated dashboards equal
direct generation."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_doit_build import _doit, _ran, _snapshot


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "services", tmp_path / "services")
    return tmp_path


def _changed(before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]) -> list[str]:
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


def test_one_spec_edit_rewrites_only_its_dashboard(workspace: Path) -> None:
    first = _doit(workspace)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "grafana-overview" in _ran(first)
    out = workspace / "out"
    services = sorted(p.stem for p in (workspace / "services").glob("*.yaml"))
    for name in services:
        assert json.loads((out / name / "grafana" / "dashboard.json").read_bytes())["uid"] == name
    overview = json.loads((out / "grafana" / "overview.json").read_bytes())
    assert all(name in overview["panels"][0]["targets"][0]["expr"] for name in services)
    provisioning = (out / "grafana" / "provisioning" / "dashboards.yaml").read_text()
    assert all(f"path: $NTHLAYER_OUT/{name}/grafana" in provisioning for name in services)
    before = _snapshot(out)

    spec = workspace / "services" / "search-api.yaml"
    spec.write_text(spec.read_text().replace("availability: 0.998", "availability: 0.997"))
    edit = _doit(workspace)
    assert edit.returncode == 0, edit.stderr
    assert _ran(edit) == ["service:search-api"]  # the overview names services only: not rebuilt
    changed = _changed(before, _snapshot(out))
    assert "search-api/grafana/dashboard.json" in changed
    assert all(path.startswith("search-api/") for path in changed), changed
    assert "SLO availability: 99.7% over" in (out / "search-api" / "grafana" / "dashboard.json").read_text()
    assert _ran(_doit(workspace)) == []


def test_the_overview_follows_added_and_removed_services(workspace: Path) -> None:
    assert _doit(workspace).returncode == 0
    out = workspace / "out"
    before = _snapshot(out)
    source = (workspace / "services" / "payment-api.yaml").read_text()
    (workspace / "services" / "refund-api.yaml").write_text(source.replace("service: payment-api", "service: refund-api"))
    added = _doit(workspace)
    assert added.returncode == 0, added.stderr
    ran = _ran(added)
    assert {"alertmanager", "grafana-overview", "service:refund-api"} <= set(ran)
    assert [task for task in ran if task.startswith("service:")] == ["service:refund-api"]
    changed = _changed(before, _snapshot(out))
    assert "grafana/overview.json" in changed and "grafana/provisioning/dashboards.yaml" in changed
    assert "refund-api/grafana/dashboard.json" in changed
    # (besides the other files that list every service: routing, the kustomization, the report)
    others = [p for p in changed if not p.startswith(("refund-api/", "grafana/", "alertmanager/", "reports/"))
              and p != "kustomization.yaml"]
    assert others == []
    assert "refund-api" in (out / "grafana" / "overview.json").read_text()

    (workspace / "services" / "refund-api.yaml").unlink()
    removed = _doit(workspace)
    assert removed.returncode == 0
    assert {"grafana-overview", "prune"} <= set(_ran(removed))
    assert not (out / "refund-api").exists()
    assert "refund-api" not in (out / "grafana" / "overview.json").read_text()
    assert "refund-api" not in (out / "grafana" / "provisioning" / "dashboards.yaml").read_text()
    assert _snapshot(out).keys() == before.keys()


def test_a_catalog_edit_regenerates_the_dependants_dashboards(workspace: Path) -> None:
    catalog = workspace / "rules_catalog"
    shutil.copytree(ROOT / "rules_catalog", catalog)
    env = {"NTHLAYER_CATALOG": str(catalog)}
    assert _doit(workspace, env=env).returncode == 0
    out = workspace / "out"
    before = _snapshot(out)
    users = sorted(p.stem for p in (workspace / "services").glob("*.yaml") if "type: redis" in p.read_text())
    redis = catalog / "redis.yaml"
    redis.write_text(redis.read_text().replace("expr: redis_up == 0", "expr: redis_up < 1", 1))
    result = _doit(workspace, env=env)
    assert result.returncode == 0, result.stderr
    assert _ran(result) == [f"service:{name} (alerts, grafana, kubernetes)" for name in users]
    changed = _changed(before, _snapshot(out))
    assert changed == sorted([f"{n}/grafana/dashboard.json" for n in users]
                             + [f"{n}/prometheus/alerts.rules.yaml" for n in users]
                             + [f"{n}/k8s.yaml" for n in users])
    dashboard = json.loads((out / users[0] / "grafana" / "dashboard.json").read_bytes())
    down = [panel for row in dashboard["panels"] for panel in row.get("panels", []) if panel["title"] == "RedisDown"]
    assert [step["value"] for step in down[0]["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [None, 1.0]


def test_build_dashboards_equal_direct_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through doit's workers and the per-shape templates: every dashboard of 60 synthesized services (a few
    shapes, each seen many times) is the bytes generating that service directly gives."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from run import synthesize
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from generators import grafana
    from generators.catalog import load_technologies
    from generators.spec import load_spec

    names = synthesize(tmp_path, 60)
    result = _doit(tmp_path)
    assert result.returncode == 0, result.stderr
    monkeypatch.chdir(tmp_path)
    for name in names:
        path = f"services/{name}.yaml"
        service = load_spec(path, Path(path).read_bytes()).service
        catalog = load_technologies(str(ROOT / "rules_catalog"), service.technology_types)
        for file, data in grafana.dashboard_files(service, catalog, f"out/{name}/grafana").items():
            assert Path(file).read_bytes() == data, file


def test_build_check_judges_the_dashboards_and_a_rebuild_restores_them(workspace: Path) -> None:
    import os
    import subprocess

    assert _doit(workspace).returncode == 0
    out = workspace / "out"
    dashboard = out / "user-service" / "grafana" / "dashboard.json"
    good = dashboard.read_bytes()
    dashboard.write_text("{}\n")
    (out / "grafana" / "overview.json").unlink()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")},
           "NTHLAYER_CATALOG": str(ROOT / "rules_catalog")}
    check = subprocess.run([sys.executable, "-m", "nthlayer", "build", "--check"], cwd=workspace, env=env,
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 1
    assert check.stdout.splitlines() == ["out/grafana/overview.json: missing",
                                         "out/user-service/grafana/dashboard.json: edited"]
    rebuilt = _doit(workspace)
    assert _ran(rebuilt) == ["grafana-overview", "service:user-service"]
    assert dashboard.read_bytes() == good and (out / "grafana" / "overview.json").exists()
