"""The doit build as a user runs it: what runs, what changes, what a broken spec does."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

def _doit(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
    env = {**base, "NTHLAYER_CATALOG": str(ROOT / "rules_catalog"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(cwd), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _ran(result: subprocess.CompletedProcess[str]) -> list[str]:
    return sorted(line[3:] for line in result.stdout.splitlines() if line.startswith(".  "))


def _snapshot(out: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(out)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "services", tmp_path / "services")
    return tmp_path


def test_incremental_build(workspace: Path) -> None:
    first = _doit(workspace)
    assert first.returncode == 0, first.stdout + first.stderr
    services = sorted(p.stem for p in (workspace / "services").glob("*.yaml"))
    composites = sorted(p.stem for p in (workspace / "services" / "composites").glob("*.yaml"))
    assert _ran(first) == sorted([f"service:{s}" for s in services] + [f"composite:{c}" for c in composites]
                                 + ["alertmanager", "correlate", "grafana-overview", "k8s", "prune", "report"])
    out = workspace / "out"
    before = _snapshot(out)
    assert (workspace / "state" / "doit.json").exists()

    # A second run executes nothing and touches nothing.
    second = _doit(workspace)
    assert second.returncode == 0 and _ran(second) == [], second.stdout
    assert _snapshot(out) == before

    # Touching a file without changing it runs nothing (md5 checker).
    os.utime(workspace / "services" / "search-api.yaml")
    assert _ran(_doit(workspace)) == []

    # Editing one service re-runs only its tasks (and the shared routing), rewriting only its files.
    spec = workspace / "services" / "search-api.yaml"
    spec.write_text(spec.read_text().replace("availability: 0.998", "availability: 0.997"))
    third = _doit(workspace)
    assert third.returncode == 0, third.stderr
    # Routing facts unchanged: alertmanager.yml is not rebuilt; services and graph unchanged: nor the report.
    assert _ran(third) == ["service:search-api"]
    after = _snapshot(out)
    changed = sorted(p for p in after if after[p] != before[p])
    assert changed and all(p.startswith("search-api/") for p in changed), changed
    assert "search-api/openslo.yaml" in changed

    # A team change is a routing change: alertmanager.yml is rebuilt too. The edited spec's task is
    # defined (so handed out) first, not after the up-to-date checks of the specs before it.
    spec.write_text(spec.read_text().replace("team: ", "team: edited-", 1))
    listed = [line.split()[0] for line in _doit(workspace, "list", "--all", "--sort=definition").stdout.splitlines()]
    assert [name for name in listed if name.startswith("service:")][0] == "service:search-api"
    spec.write_text(spec.read_text().replace("team: edited-", "team: edited-again-", 1))
    assert _ran(_doit(workspace)) == ["alertmanager", "service:search-api"]
    assert "edited-" in (out / "alertmanager" / "alertmanager.yml").read_text()
    before = _snapshot(out)

    # Deleting a service removes its out/ folder on the next run.
    (workspace / "services" / "report-batch.yaml").unlink()
    fourth = _doit(workspace)
    assert fourth.returncode == 0
    assert {"prune", "report"} <= set(_ran(fourth))  # the report loses its page too
    assert not (out / "report-batch").exists()
    assert not (out / "reports" / "services" / "report-batch.html").exists()
    assert (out / "search-api").exists()

    # doit clean removes the outputs.
    clean = _doit(workspace, "clean")
    assert clean.returncode == 0
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_catalog_edit_regenerates_only_the_dependants_alerts(workspace: Path) -> None:
    catalog = workspace / "rules_catalog"
    shutil.copytree(ROOT / "rules_catalog", catalog)
    env = {"NTHLAYER_CATALOG": str(catalog)}
    assert _doit(workspace, env=env).returncode == 0
    out = workspace / "out"
    before = _snapshot(out)
    users = sorted(p.stem for p in (workspace / "services").glob("*.yaml")
                   if "type: redis" in p.read_text())
    assert users
    redis = catalog / "redis.yaml"
    redis.write_text(redis.read_text().replace('description: "redis_exporter', 'description: "Edited. redis_exporter', 1))
    result = _doit(workspace, env=env)
    assert result.returncode == 0, result.stderr
    # The dashboards' dependency rows and the PrometheusRule (which holds the alerts) follow the catalog too.
    assert _ran(result) == [f"service:{name} (alerts, grafana, kubernetes)" for name in users]
    after = _snapshot(out)
    assert sorted(p for p in after if after[p] != before[p]) == sorted(
        [f"{n}/prometheus/alerts.rules.yaml" for n in users] + [f"{n}/k8s.yaml" for n in users])


def test_stale_kinds() -> None:
    from nthlayer.buildsys.kinds import PER_SERVICE
    from nthlayer.buildsys.tasks import stale_kinds

    stamps = {kind: f"state/code/{kind}.sha256" for kind in PER_SERVICE}
    assert stale_kinds("s/a.yaml", [], stamps) == list(PER_SERVICE)  # doit ran it for no file: do all
    assert stale_kinds("s/a.yaml", ["s/a.yaml", "cat/redis.yaml"], stamps) == list(PER_SERVICE)
    assert stale_kinds("s/a.yaml", ["cat/redis.yaml"], stamps) == ["alerts", "grafana", "kubernetes"]  # the kinds that read the catalog
    assert stale_kinds("s/a.yaml", ["state/code/openslo.sha256", "state/code/pagerduty.sha256"], stamps) == \
        ["openslo", "pagerduty"]


def test_broken_spec_fails_alone_and_touches_nothing(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nthlayer.buildsys.plan import make_plan

    assert _doit(workspace).returncode == 0
    monkeypatch.chdir(workspace)
    edges = make_plan("services", "out", str(ROOT / "rules_catalog"), "state/spec-index.json").edges()
    assert ("user-service", "payment-api") in edges
    out = workspace / "out"
    before = _snapshot(out)
    spec = workspace / "services" / "payment-api.yaml"
    spec.write_text(spec.read_text().replace("availability: 0.9995", "availability: 1.5"))
    other = workspace / "services" / "search-api.yaml"
    other.write_text(other.read_text().replace("availability: 0.998", "availability: 0.997"))
    result = _doit(workspace)
    assert result.returncode != 0
    # The spec's own error, and the composite that has it as a component (docs/composites.md) fails too.
    assert sorted(result.stderr.splitlines()[:2]) == [
        "services/composites/checkout.yaml:8:14: /components/0/service: service 'payment-api' has an invalid "
        "spec (services/payment-api.yaml); fix it first",
        "services/payment-api.yaml:10:19: /observability/slo_overrides/availability: 1.5 is not a valid "
        "objective: it must be greater than 0 and less than 1 (e.g. 0.999)"]
    assert "Traceback" not in result.stdout + result.stderr
    after = _snapshot(out)
    # payment-api's old outputs are kept as they were; search-api was rebuilt.
    assert {p: v for p, v in after.items() if p.startswith("payment-api/")} == \
        {p: v for p, v in before.items() if p.startswith("payment-api/")}
    assert after["search-api/openslo.yaml"] != before["search-api/openslo.yaml"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    # Its routes stay in alertmanager.yml (the last valid version's), in this run and the next, and its
    # dependency edges in the correlation graph (the correlate task did not run: its graph is unchanged).
    assert after["alertmanager/alertmanager.yml"] == before["alertmanager/alertmanager.yml"]
    assert "correlate" not in _ran(result)
    # The report keeps its page as it was, and its index lists the valid services only.
    assert after["reports/services/payment-api.html"] == before["reports/services/payment-api.html"]
    assert "report" in _ran(result) and 'href="services/payment-api.html"' not in (out / "reports" / "index.html").read_text()
    assert make_plan("services", "out", str(ROOT / "rules_catalog"), "state/spec-index.json").edges() == edges
    assert _doit(workspace).returncode != 0
    assert _snapshot(out)["alertmanager/alertmanager.yml"] == before["alertmanager/alertmanager.yml"]
    # A new spec that was never valid has no routes to keep; deleting the broken one drops its routes.
    (workspace / "services" / "new-api.yaml").write_text("service: new-api\ntier: 9\nteam: x\n")
    assert _doit(workspace).returncode != 0
    assert _snapshot(out)["alertmanager/alertmanager.yml"] == before["alertmanager/alertmanager.yml"]
    spec.unlink()
    (workspace / "services" / "new-api.yaml").unlink()
    (workspace / "services" / "composites" / "checkout.yaml").unlink()  # a component's spec is gone
    assert _doit(workspace).returncode == 0
    assert "payment-api" not in (out / "alertmanager" / "alertmanager.yml").read_text()
    assert make_plan("services", "out", str(ROOT / "rules_catalog"), "state/spec-index.json").edges() == \
        [edge for edge in edges if edge[1] != "payment-api"]  # others still name it upstream (a warning)


def test_outputs_are_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        shutil.copytree(ROOT / "services", tmp_path / name / "services")
        assert _doit(tmp_path / name).returncode == 0
    first = {p: v[0] for p, v in _snapshot(tmp_path / "a" / "out").items()}
    second = {p: v[0] for p, v in _snapshot(tmp_path / "b" / "out").items()}
    assert first == second


def test_build_plan_graph_matches_the_correlation_graph() -> None:
    from generators.spec import validate_specs
    from nthlayer.buildsys.plan import make_plan
    from nthlayer.state.correlation import dependency_edges

    plan = make_plan(str(ROOT / "services"), "out", str(ROOT / "rules_catalog"))
    specs = validate_specs([str(ROOT / "services")], None).specs
    assert plan.edges() == dependency_edges(s.service for s in specs)
    assert ("payment-api", "checkout-web") in plan.edges()


def test_plan_validates_in_parallel_with_the_same_result(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nthlayer.buildsys import plan as build

    services = tmp_path / "services"
    shutil.copytree(ROOT / "services", services)
    (services / "broken.yaml").write_text("service: Broken\ntier: 9\n")
    monkeypatch.setattr(build, "PARALLEL_MIN_FILES", 10**6)
    serial = build.make_plan(str(services), "out", str(ROOT / "rules_catalog"))
    build._LOADED.clear()
    monkeypatch.setattr(build, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(build.os, "sched_getaffinity", lambda pid: {0, 1})  # two workers even on one core
    pools = []
    real_pool = build.multiprocessing.get_context("fork").Pool
    monkeypatch.setattr(build.multiprocessing, "get_context",
                        lambda method: type("Ctx", (), {"Pool": lambda self, n, **kw: pools.append(n) or real_pool(n, **kw)})())
    # With a state folder, the parent validates the catalog files the specs name while the pool works
    # (state/catalog), and a broken one is left for the services' own tasks to report.
    catalog = tmp_path / "rules_catalog"
    shutil.copytree(ROOT / "rules_catalog", catalog)
    (catalog / "redis.yaml").write_text("technology: redis\nrules: [\n")
    parallel = build.make_plan(str(services), "out", str(catalog), index_path=str(tmp_path / "state" / "index.json"))
    assert pools == [2]
    assert parallel.entries == serial.entries
    assert any(entry.errors for entry in parallel.entries) and len(parallel.valid) == len(serial.valid) > 5
    assert all(build.load_service(entry.path).name == entry.name for entry in parallel.valid)
    named = {ref.value for entry in parallel.valid for ref in entry.summary.technologies}
    assert {p.stem for p in (tmp_path / "state" / "catalog").iterdir()} == named - {"redis"} and len(named) > 10


def test_two_builds_in_one_process_see_the_edit_between(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from doit.doit_cmd import DoitMain

    monkeypatch.chdir(workspace)
    monkeypatch.setenv("NTHLAYER_CATALOG", str(ROOT / "rules_catalog"))
    argv = ["run", "-f", str(ROOT / "dodo.py"), "-d", str(workspace), "-n", "0"]
    assert DoitMain().run(argv) == 0
    spec = workspace / "services" / "search-api.yaml"
    spec.write_text(spec.read_text().replace("availability: 0.998", "availability: 0.997"))
    assert DoitMain().run(argv) == 0
    assert "0.997" in (workspace / "out" / "search-api" / "openslo.yaml").read_text()


def test_a_build_of_repeated_shapes_writes_what_direct_generation_writes(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end through doit's workers, the catalog cache and the shape templates: every file of 60
    synthesized services (a few shapes, each seen many times) equals generating that service directly."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from run import synthesize
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from generators.catalog import load_technologies
    from generators.openslo import openslo_files
    from generators.pagerduty import pagerduty_files
    from generators.slo_rules import slo_rule_files
    from generators.spec import load_spec
    from generators.tech_alerts import service_alert_files

    names = synthesize(tmp_path, 60)
    result = _doit(tmp_path)
    assert result.returncode == 0, result.stderr
    monkeypatch.chdir(tmp_path)
    for name in names:
        path = f"services/{name}.yaml"
        service = load_spec(path, Path(path).read_bytes()).service
        base = f"out/{name}"
        catalog = load_technologies(str(ROOT / "rules_catalog"), service.technology_types)
        expected = {**openslo_files(service, base), **slo_rule_files(service, f"{base}/prometheus"),
                    **service_alert_files(service, catalog, f"{base}/prometheus"),
                    **pagerduty_files(service, base)}
        for file, data in expected.items():
            assert Path(file).read_bytes() == data, file


def test_a_first_build_of_many_specs_writes_every_kind_as_direct_generation_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Enough specs for the plan's pool (nthlayer.buildsys.plan.PARALLEL_MIN_FILES), so the parent makes the
    shape templates while the pool validates and doit's workers inherit them: every file of every kind of
    every service equals that service's files generated directly, with no template at all."""
    from generators import shapes
    from nthlayer.buildsys import plan as build
    from nthlayer.buildsys.tasks import all_kinds, service_files

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from synth import synthesize
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    names = synthesize(tmp_path, build.PARALLEL_MIN_FILES + 10, extras=True)
    result = _doit(tmp_path)
    assert result.returncode == 0, result.stderr
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("NTHLAYER_")]:  # as _doit's build saw it
        monkeypatch.delenv(name)
    from nthlayer.buildsys.plugin_kinds import activate

    activate(None)  # no plugin (an earlier test's may still be active in this process)
    monkeypatch.setattr(shapes, "MAX_SHAPES", 0)  # every file made directly
    shapes._seen.clear()
    shapes._templates.clear()
    templated = shapes.stats["templated"]
    plan = build.make_plan("services", "out", str(ROOT / "rules_catalog"))
    assert [entry.name for entry in plan.valid] == names
    for entry in plan.valid:
        expected = service_files(build.load_service(entry.path), plan, all_kinds(entry.plugins))
        assert len(expected) >= 8
        for file, data in expected.items():
            assert Path(file).read_bytes() == data, file
    assert shapes.stats["templated"] == templated


def test_dependency_db_is_rewritten_only_when_an_entry_changes(tmp_path: Path) -> None:
    from doit.dependency import JSONCodec

    from nthlayer.buildsys.backend import StateJsonDB

    path = tmp_path / "doit.json"
    db = StateJsonDB(str(path), JSONCodec())
    db.set("service", "deps:", ())
    db.set("service:a", "services/a.yaml", (1.0, 10, "abc"))
    db.dump()
    written = path.stat().st_mtime_ns, path.read_text()
    again = StateJsonDB(str(path), JSONCodec())
    # What doit sets on a no-op run: the same values as tuples, which JSON gave back as lists.
    again.set("service", "deps:", ())
    again.set("service:a", "services/a.yaml", (1.0, 10, "abc"))
    assert not again._dirty
    again.dump()
    assert (path.stat().st_mtime_ns, path.read_text()) == written
    again.set("service:a", "services/a.yaml", (2.0, 10, "abd"))
    assert again._dirty
    again.dump()
    assert '"abd"' in path.read_text()


def test_selector_warning_follows_the_catalog_declarations(workspace: Path) -> None:
    """The build caches each spec's checks in state/spec-index.json; a selector warning depends on the
    catalog too, so editing a declaration brings it (and takes it away) on the next build."""
    catalog = workspace / "rules_catalog"
    shutil.copytree(ROOT / "rules_catalog", catalog)
    env = {"NTHLAYER_CATALOG": str(catalog)}
    spec = workspace / "services" / "inventory-api.yaml"
    spec.write_text(spec.read_text().replace("selector: {job: inventory-haproxy}", "selector: {proxy: inventory}"))
    warning = ("services/inventory-api.yaml:20:18: /dependencies/technologies/2/selector/proxy: warning: haproxy "
               "'inventory-lb': the exporter puts no 'proxy' label on the metrics of {rules}: {they} can never "
               "fire for this dependency, unless your scrape config adds 'proxy' to every target; select it by "
               "instance, job or a label your scrape config adds")
    both = warning.format(rules="HaproxyProcessConnectionsNearLimit, HaproxyStickTableNearlyFull", they="these alerts")
    first = _doit(workspace, env=env)
    assert first.returncode == 0, first.stderr
    assert both in first.stderr.splitlines()
    assert _doit(workspace, env=env).stderr == ""  # a no-op run: nothing built, nothing said

    haproxy = catalog / "haproxy.yaml"
    original = haproxy.read_text()
    haproxy.write_text(original.replace("  haproxy_process_*: []\n", "  haproxy_process_*: [proxy]\n"))
    second = _doit(workspace, env=env)
    assert second.returncode == 0, second.stderr
    assert _ran(second) == ["service:inventory-api (alerts, grafana, kubernetes)"]
    assert [line for line in second.stderr.splitlines() if "warning:" in line] == [
        warning.format(rules="HaproxyStickTableNearlyFull", they="this alert")]

    haproxy.write_text(original.replace("  haproxy_sticktable_*: [name, type]\n",
                                        "  haproxy_sticktable_*: [name, proxy, type]\n")
                       .replace("  haproxy_process_*: []\n", "  haproxy_process_*: [proxy]\n"))
    third = _doit(workspace, env=env)
    assert third.returncode == 0 and _ran(third) == ["service:inventory-api (alerts, grafana, kubernetes)"]
    assert "warning:" not in third.stderr

    haproxy.write_text(original)
    fourth = _doit(workspace, env=env)
    assert both in fourth.stderr.splitlines()


def test_named_slos_name_their_files_and_renames_leave_nothing_behind(tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.mkdir()
    spec = services / "lag-worker.yaml"
    spec.write_text("service: lag-worker\ntier: 2\nteam: t\nslos:\n  - name: consumer-lag\n"
                    "    threshold: {query: 'max(lag{group=\"a\"})', op: '<', value: 10}\n")
    (services / "exporter.yaml").write_text("service: exporter\ntier: 3\nteam: t\nslos: []\n")
    first = _doit(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    files = lambda name: sorted(str(p.relative_to(tmp_path / "out" / name)) for p in (tmp_path / "out" / name).rglob("*"))  # noqa: E731
    k8s = ["k8s.yaml"]
    assert files("lag-worker") == ["grafana", "grafana/dashboard.json", *k8s,
                                   "openslo.yaml", "pagerduty.json",
                                   "prometheus", "prometheus/alerts.rules.yaml", "prometheus/scrape.yaml",
                                   "prometheus/slo-burst.test.yaml", "prometheus/slo-rules.test.yaml",
                                   "prometheus/slo.rules.yaml"]
    # slos: [] — no SLO artifacts: no OpenSLO SLO, no SLO rules or tests.
    assert files("exporter") == ["grafana", "grafana/dashboard.json", *k8s, "openslo.yaml",
                                 "pagerduty.json", "prometheus",
                                 "prometheus/alerts.rules.yaml", "prometheus/scrape.yaml"]
    spec.write_text(spec.read_text().replace("consumer-lag", "lag"))
    assert _doit(tmp_path).returncode == 0
    openslo = (tmp_path / "out" / "lag-worker" / "openslo.yaml").read_text()
    assert "name: lag-worker-lag\n" in openslo and "consumer-lag" not in openslo
    spec.write_text(spec.read_text().replace("slos:\n  - name: lag\n    threshold: {query: 'max(lag{group=\"a\"})', "
                                             "op: '<', value: 10}\n", "slos: []\n"))
    assert _doit(tmp_path).returncode == 0
    assert files("lag-worker") == files("exporter")
