"""The Kubernetes manifests in the doit build: what a build writes, what an edit rewrites (the DAG), the
project's [kubernetes] settings as an input, and kustomize's verdict on the result."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from generators.crd_schema import kubernetes_loader, manifest_problems
from tests.conftest import ROOT
from tests.test_doit_build import _doit, _ran, _snapshot


def _changed(before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]) -> list[str]:
    return sorted(p for p in after.keys() | before.keys() if before.get(p) != after.get(p))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "services", tmp_path / "services")
    return tmp_path


def test_build_writes_valid_manifests_for_every_service(workspace: Path) -> None:
    first = _doit(workspace)
    assert first.returncode == 0, first.stdout + first.stderr
    out = workspace / "out"
    services = sorted(p.stem for p in (workspace / "services").glob("*.yaml"))
    assert yaml.safe_load((out / "kustomization.yaml").read_text())["resources"] == [
        f"{name}/k8s.yaml" for name in services]
    assert not (out / "k8s").exists()
    for name in services:
        assert not (out / name / "k8s").exists()  # one file, no folder
        rule, route = yaml.safe_load_all((out / name / "k8s.yaml").read_text())
        assert (rule["kind"], route["kind"]) == ("PrometheusRule", "AlertmanagerConfig")
        assert manifest_problems(rule) == []
        assert manifest_problems(route) == []
        groups = []
        for path in (out / name / "prometheus" / "slo.rules.yaml", out / name / "prometheus" / "alerts.rules.yaml"):
            if path.exists():
                groups += yaml.safe_load(path.read_text())["groups"]
        assert rule["spec"]["groups"] == groups  # the rule files' groups, as the build wrote them
    built = subprocess.run(["kubectl", "kustomize", str(out)], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in yaml.load_all(built.stdout, Loader=kubernetes_loader()))
    assert kinds == sorted((kind, name) for name in services for kind in ("AlertmanagerConfig", "PrometheusRule"))


def test_one_spec_edit_rewrites_its_manifests_and_nothing_else(workspace: Path) -> None:
    assert _doit(workspace).returncode == 0
    out = workspace / "out"
    before = _snapshot(out)
    spec = workspace / "services" / "search-api.yaml"
    spec.write_text(spec.read_text().replace("availability: 0.998", "availability: 0.997"))
    edited = _doit(workspace)
    assert edited.returncode == 0, edited.stderr
    # The service list is unchanged: out/kustomization.yaml is not rebuilt.
    assert _ran(edited) == ["service:search-api"]
    changed = _changed(before, _snapshot(out))
    assert "search-api/k8s.yaml" in changed
    assert all(p.startswith("search-api/") for p in changed), changed

    # A new service changes the list: out/kustomization.yaml is rebuilt, and only it besides the service.
    before = _snapshot(out)
    shutil.copy(spec, workspace / "services" / "search-api-eu.yaml")
    (workspace / "services" / "search-api-eu.yaml").write_text(spec.read_text().replace(
        "service: search-api", "service: search-api-eu"))
    added = _doit(workspace)
    assert added.returncode == 0, added.stderr
    # (prune runs when the list of services changes; it removes nothing here)
    assert _ran(added) == ["alertmanager", "grafana-overview", "k8s", "prune", "report", "service:search-api-eu"]
    changed = _changed(before, _snapshot(out))
    # (and the other files that list every service: the Grafana overview, the report's index and its page)
    assert [p for p in changed if not p.startswith(("search-api-eu/", "grafana/", "reports/"))] == [
        "alertmanager/alertmanager.yml", "kustomization.yaml"]
    assert "- search-api-eu/k8s.yaml\n" in (out / "kustomization.yaml").read_text()

    # Deleting it takes it out of the list and out/.
    (workspace / "services" / "search-api-eu.yaml").unlink()
    removed = _doit(workspace)
    assert removed.returncode == 0 and "k8s" in _ran(removed)
    assert "search-api-eu" not in (out / "kustomization.yaml").read_text()
    assert not (out / "search-api-eu").exists()


def test_project_settings_regenerate_only_the_manifests(workspace: Path) -> None:
    assert _doit(workspace).returncode == 0
    out = workspace / "out"
    before = _snapshot(out)
    (workspace / "nthlayer.toml").write_text('[kubernetes]\nnamespace = "observability"\n'
                                             'labels = { release = "kube-prometheus-stack" }\n')
    rebuilt = _doit(workspace)
    assert rebuilt.returncode == 0, rebuilt.stderr
    changed = _changed(before, _snapshot(out))
    assert changed and all(p.endswith("/k8s.yaml") for p in changed)
    rule = next(yaml.safe_load_all((out / "payment-api" / "k8s.yaml").read_text()))
    assert rule["metadata"]["namespace"] == "observability"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert "(kubernetes)" in rebuilt.stdout  # doit's title: only that kind of each service
    assert _ran(_doit(workspace)) == []  # and then nothing


def test_a_broken_kubernetes_table_fails_the_build_with_its_line(workspace: Path) -> None:
    assert _doit(workspace).returncode == 0
    out = workspace / "out"
    before = _snapshot(out)
    (workspace / "nthlayer.toml").write_text('[kubernetes]\nnamespace = "Observability"\n')
    broken = _doit(workspace)
    assert broken.returncode != 0
    assert ("nthlayer.toml:2:1: /kubernetes/namespace: 'Observability' is not a Kubernetes namespace: use lowercase "
            "letters, digits and hyphens, start and end with a letter or digit, at most 63 characters") in broken.stderr
    assert "Traceback" not in broken.stderr + broken.stdout
    assert _changed(before, _snapshot(out)) == []
