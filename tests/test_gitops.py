"""GitOps: the Flux manifests in deploy/flux against Flux's own CRDs, their ignore rules against a real build's
out/, the CI publish script against a local git remote, and `nthlayer build --check` on a stale out/."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from generators.crd_schema import kubernetes_loader, manifest_problems, validator_for
from tests.conftest import ROOT

FLUX = ROOT / "deploy" / "flux"
SCRIPT = ROOT / "deploy" / "ci" / "publish-out.sh"


def flux(name: str) -> dict:
    return yaml.safe_load((FLUX / name).read_text())


@pytest.mark.parametrize("name", ["gitrepository.yaml", "kustomization.yaml"])
def test_flux_manifests_satisfy_fluxs_crds(name: str) -> None:
    assert manifest_problems(flux(name)) == []


def test_the_flux_crds_would_refuse_a_broken_manifest() -> None:
    source = flux("gitrepository.yaml")
    source["spec"]["interval"] = "five minutes"
    source["spec"]["ref"]["branchh"] = "x"
    source["spec"]["serviceAccountName"] = "reader"  # only with provider azure/aws (a CEL rule)
    problems = manifest_problems(source)
    assert "/spec/ref: Additional properties are not allowed ('branchh' was unexpected)" in problems
    assert any(p.startswith("/spec/interval: 'five minutes' does not match") for p in problems)
    assert "/spec: serviceAccountName can only be set when provider is 'azure' or 'aws'" in problems
    apply = flux("kustomization.yaml")
    del apply["spec"]["prune"]
    apply["spec"]["kubeConfig"] = {"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}
    problems = manifest_problems(apply)
    assert "/spec: 'prune' is a required property" in problems
    assert ("/spec/kubeConfig: exactly one of spec.kubeConfig.configMapRef or spec.kubeConfig.secretRef must be "
            "specified") in problems


def test_the_kustomization_applies_what_the_source_publishes() -> None:
    source, apply = flux("gitrepository.yaml"), flux("kustomization.yaml")
    assert apply["spec"]["sourceRef"] == {"kind": "GitRepository", "name": source["metadata"]["name"]}
    assert apply["metadata"]["namespace"] == source["metadata"]["namespace"]
    assert apply["spec"]["path"] == "./out" and apply["spec"]["prune"] is True
    assert validator_for("source.toolkit.fluxcd.io/v1", "GitRepository").version == "v1"


def test_the_docs_show_the_shipped_manifests() -> None:
    """docs/gitops.md quotes deploy/flux: the same specs, field for field."""
    text = (ROOT / "docs" / "gitops.md").read_text()
    block = text.split("```yaml\napiVersion: source.toolkit.fluxcd.io/v1")[1].split("```")[0]
    shown = list(yaml.safe_load_all("apiVersion: source.toolkit.fluxcd.io/v1" + block))
    assert [doc["spec"] for doc in shown] == [flux("gitrepository.yaml")["spec"], flux("kustomization.yaml")["spec"]]


# --- against a real build -----------------------------------------------------------------------------

def _project(tmp_path: Path, names: tuple[str, ...] = ("payment-api", "user-service", "search-api")) -> Path:
    project = tmp_path / "project"
    (project / "services").mkdir(parents=True)
    for name in names:
        shutil.copy(ROOT / "services" / f"{name}.yaml", project / "services" / f"{name}.yaml")
    return project


def _env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NTHLAYER_STATE", None)  # the project's own state/
    env.update(GIT_AUTHOR_NAME="ci", GIT_AUTHOR_EMAIL="ci@example.invalid", GIT_COMMITTER_NAME="ci",
               GIT_COMMITTER_EMAIL="ci@example.invalid", HOME=str(project.parent))
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_flux_ignore_rules_keep_exactly_the_kubernetes_manifests(tmp_path: Path) -> None:
    project = _project(tmp_path)
    env = _env(project)
    assert _run(["nthlayer", "build"], project, env).returncode == 0
    files = sorted(str(p.relative_to(project)) for p in (project / "out").rglob("*") if p.is_file())
    repo = tmp_path / "published"
    shutil.copytree(project / "out", repo / "out")
    _run(["git", "init", "-q"], repo, env)
    (repo / ".gitignore").write_text(flux("gitrepository.yaml")["spec"]["ignore"])
    checked = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=repo, env=env, text=True,
                             input="\n".join(files) + "\n", capture_output=True, check=False)
    ignored = set(checked.stdout.split())
    kept = sorted(f for f in files if f not in ignored)
    assert checked.returncode == 0, checked.stderr  # 0: some path is ignored
    assert kept == sorted(f for f in files if f.endswith("/k8s.yaml") or f == "out/kustomization.yaml")
    assert "out/kustomization.yaml" in kept and "out/payment-api/k8s.yaml" in kept
    assert "out/payment-api/prometheus/slo.rules.yaml" not in kept


def test_kustomize_builds_the_project_kustomization(tmp_path: Path) -> None:
    project = _project(tmp_path)
    env = _env(project)
    assert _run(["nthlayer", "build"], project, env).returncode == 0
    built = _run(["kubectl", "kustomize", "out"], project, env)
    assert built.returncode == 0, built.stderr
    objects = list(yaml.load_all(built.stdout, Loader=kubernetes_loader()))
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted(
        (kind, name) for name in ("payment-api", "search-api", "user-service")
        for kind in ("AlertmanagerConfig", "PrometheusRule"))
    for obj in objects:
        assert manifest_problems(obj) == []


def test_publish_script_publishes_proven_output_only(tmp_path: Path) -> None:
    project = _project(tmp_path)
    env = _env(project)
    remote = tmp_path / "remote.git"
    _run(["git", "init", "-q", "--bare", str(remote)], tmp_path, env)
    for args in (["git", "init", "-q", "-b", "main"], ["git", "add", "services"], ["git", "commit", "-qm", "specs"],
                 ["git", "remote", "add", "origin", str(remote)]):
        assert _run(args, project, env).returncode == 0
    first = _run([str(SCRIPT)], project, env)
    assert first.returncode == 0, first.stdout + first.stderr
    head = _run(["git", "rev-parse", "nthlayer-out"], remote, env).stdout.strip()
    tree = _run(["git", "ls-tree", "-r", "--name-only", "nthlayer-out"], remote, env).stdout.split()
    assert "out/kustomization.yaml" in tree and "out/user-service/k8s.yaml" in tree
    assert not any(not path.startswith("out/") for path in tree)
    # Nothing changed: nothing published.
    again = _run([str(SCRIPT)], project, env)
    assert again.returncode == 0 and "already holds this out/" in again.stdout
    assert _run(["git", "rev-parse", "nthlayer-out"], remote, env).stdout.strip() == head
    # A spec edit: one new commit on top of the last.
    spec = project / "services" / "search-api.yaml"
    text = spec.read_text()
    assert "availability: 0.998" in text
    spec.write_text(text.replace("availability: 0.998", "availability: 0.997"))
    edited = _run([str(SCRIPT)], project, env)
    assert edited.returncode == 0, edited.stderr
    assert "is now" in edited.stdout
    log = _run(["git", "log", "--format=%P", "-1", "nthlayer-out"], remote, env).stdout.strip()
    assert log == head
    newest = _run(["git", "rev-parse", "nthlayer-out"], remote, env).stdout.strip()
    # A broken spec: the script fails before publishing.
    spec.write_text(spec.read_text() + "tierr: 1\n")
    broken = _run([str(SCRIPT)], project, env)
    assert broken.returncode != 0
    assert "/tierr: unknown key 'tierr'" in broken.stderr
    assert _run(["git", "rev-parse", "nthlayer-out"], remote, env).stdout.strip() == newest


def test_build_check_fails_on_a_stale_committed_out(tmp_path: Path) -> None:
    project = _project(tmp_path, ("payment-api",))
    env = _env(project)
    assert _run(["nthlayer", "build"], project, env).returncode == 0
    assert _run(["nthlayer", "build", "--check"], project, env).returncode == 0
    spec = project / "services" / "payment-api.yaml"
    spec.write_text(spec.read_text() + "kubernetes: {namespace: payments}\n")
    stale = _run(["nthlayer", "build", "--check"], project, env)
    assert stale.returncode == 1
    assert stale.stdout.splitlines() == ["out/payment-api/k8s.yaml: edited"]
