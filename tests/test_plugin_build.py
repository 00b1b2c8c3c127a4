"""Plugins through the real build (doit, as a user runs it): the two shipped examples end to end, what an
edit of a plugin rebuilds, and what a failing plugin leaves untouched."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, requires_promtool
from tests.test_doit_build import _doit, _ran, _snapshot

EXAMPLES = ROOT / "examples" / "plugins"
SLOTH_SCHEMA = ROOT / "tests" / "fixtures" / "sloth-prometheus-v1.schema.json"
BUCKETS = "  sli:\n    latency_buckets: [0.05, 0.1, 0.2, 0.25, 0.5, 1, 2.5]\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The example services, payment-api's histogram with a 0.2 s bucket (FinancialSLO's threshold), and
    both example plugins copied in and listed in nthlayer.toml (so plain `doit` loads them)."""
    shutil.copytree(ROOT / "services", tmp_path / "services")
    spec = tmp_path / "services" / "payment-api.yaml"
    spec.write_text(spec.read_text().replace("observability:\n", "observability:\n" + BUCKETS))
    (tmp_path / "plugins").mkdir()
    for name in ("financial.py", "sloth.py"):
        shutil.copy(EXAMPLES / name, tmp_path / "plugins" / name)
    (tmp_path / "nthlayer.toml").write_text('[build]\nplugins = ["plugins/financial.py", "plugins/sloth.py"]\n')
    return tmp_path


def _services(project: Path) -> list[str]:
    return sorted(p.stem for p in (project / "services").glob("*.yaml"))


def _sloth_problems(path: Path) -> list[str]:
    """What is wrong with a Sloth prometheus/v1 file: its shape (tests/fixtures' schema of the documented
    format) and every query (it must use Sloth's {{.window}} and be PromQL once that is filled in)."""
    from jsonschema import Draft202012Validator

    from generators.promql_scope import PromQLError, parse

    document = yaml.safe_load(path.read_text())
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in Draft202012Validator(json.loads(SLOTH_SCHEMA.read_text())).iter_errors(document)]
    for slo in document.get("slos", []):
        for query in [*slo["sli"].get("events", {}).values(), *slo["sli"].get("raw", {}).values()]:
            if "{{.window}}" not in query:
                problems.append(f"{slo['name']}: no {{{{.window}}}} in {query}")
            try:
                parse(query.replace("{{.window}}", "5m"))
            except PromQLError as exc:
                problems.append(f"{slo['name']}: {exc}")
    return problems


def _slo_document(out: Path, service: str, name: str) -> dict | None:
    """The OpenSLO SLO document named ``name`` in out/<service>/openslo.yaml, or None."""
    documents = yaml.safe_load_all((out / service / "openslo.yaml").read_text())
    return next((d for d in documents if d["kind"] == "SLO" and d["metadata"]["name"] == f"{service}-{name}"), None)


@requires_promtool
def test_the_examples_build_end_to_end_through_doit(project: Path) -> None:
    first = _doit(project)
    assert first.returncode == 0, first.stdout + first.stderr
    out = project / "out"
    # FinancialSLO: payment-api (team payments) gets availability 0.9999 and latency-p99 at 200 ms …
    def slo_target(name: str) -> float:
        return _slo_document(out, "payment-api", name)["spec"]["objectives"][0]["target"]

    assert (slo_target("latency-p99"), slo_target("availability")) == (0.99, 0.9999)
    rules = (out / "payment-api" / "prometheus" / "slo.rules.yaml").read_text()
    assert 'le="0.2"' in rules and 'slo="latency-p99"' in rules
    # … and its rules pass promtool's check and the generated unit tests (the new SLO's included).
    from nthlayer.integrations.promtool import check_rules, test_rules

    prometheus = out / "payment-api" / "prometheus"
    checked = check_rules([str(prometheus / "slo.rules.yaml")])
    assert checked.ok, checked.output
    tests = test_rules([str(prometheus / "slo-rules.test.yaml"), str(prometheus / "slo-burst.test.yaml")],
                       cwd=str(prometheus))
    assert tests.ok, tests.output
    # Other teams' services are as a build without the plugin makes them.
    assert _slo_document(out, "search-api", "latency-p99") is None
    # The Sloth export: one file per service, of Sloth's documented shape, read back by our own importer
    # with the same objectives.
    exported = sorted(out.glob("*/sloth/*.yaml"))
    assert sorted(p.parent.parent.name for p in exported) == _services(project)
    for path in exported:
        assert _sloth_problems(path) == [], path
    payment = yaml.safe_load((out / "payment-api" / "sloth" / "payment-api-30d.yaml").read_text())
    assert {slo["name"]: slo["objective"] for slo in payment["slos"]} == \
        {"availability": 99.99, "latency": 95, "latency-p99": 99}
    imported = subprocess.run([sys.executable, "-m", "nthlayer", "import", "sloth",
                               str(out / "payment-api" / "sloth" / "payment-api-30d.yaml"), "--into",
                               str(project / "imported"), "--team", "payments"],
                              capture_output=True, text=True, cwd=project)
    assert imported.returncode == 0, imported.stderr
    back = yaml.safe_load((project / "imported" / "payment-api.yaml").read_text())
    assert {slo["name"]: slo["objective"] for slo in back["slos"]} == \
        {"availability": 0.9999, "latency": 0.95, "latency-p99": 0.99}
    # `nthlayer build --check` judges the plugins' files too: out/ is exactly what specs and plugins produce.
    checked = subprocess.run([sys.executable, "-m", "nthlayer", "build", "--check"], cwd=project,
                             capture_output=True, text=True, env=_env())
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # A second build runs nothing: the plugins' answers are kept with the specs' validation results.
    before = _snapshot(out)
    second = _doit(project)
    assert second.returncode == 0 and _ran(second) == [], second.stdout
    assert _snapshot(out) == before


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _changed(before: dict, after: dict) -> list[str]:
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def test_a_plugin_edit_rebuilds_exactly_what_it_applies_to(project: Path) -> None:
    assert _doit(project).returncode == 0
    out = project / "out"
    before = _snapshot(out)
    # An SLO generator edit: the SLO kinds (and the output formats, which restate SLOs) of the one
    # service it applies to.
    _edit(project / "plugins" / "financial.py", "AVAILABILITY = 0.9999", "AVAILABILITY = 0.99995")
    result = _doit(project)
    assert result.returncode == 0, result.stderr
    assert _ran(result) == ["service:payment-api (openslo, slo_rules, format:sloth)"], result.stdout
    after = _snapshot(out)
    changed = _changed(before, after)
    assert changed and all(p.startswith(("payment-api/openslo.yaml", "payment-api/prometheus/slo",
                                         "payment-api/sloth/")) for p in changed), changed
    assert "payment-api/openslo.yaml" in changed and "payment-api/sloth/payment-api-30d.yaml" in changed
    # An output format edit: its own folder, in every service it applies to, and nothing else.
    before = after
    _edit(project / "plugins" / "sloth.py", '"severity": "page"', '"severity": "critical"')
    result = _doit(project)
    assert result.returncode == 0, result.stderr
    assert _ran(result) == [f"service:{name} (format:sloth)" for name in _services(project)]
    after = _snapshot(out)
    assert _changed(before, after) == sorted(str(p.relative_to(out)) for p in out.glob("*/sloth/*.yaml"))
    assert len(_changed(before, after)) == len(_services(project))
    # An SLO generator that starts applying to one more team: that service is rebuilt too (and the one
    # it applied to already, whose stamp changed); editing it back rebuilds both again.
    before = after
    _edit(project / "plugins" / "financial.py", 'service.team == "payments"',
          'service.team in ("payments", "discovery")')
    _edit(project / "services" / "search-api.yaml", "observability:\n", "observability:\n" + BUCKETS) \
        if "latency_buckets" not in (project / "services" / "search-api.yaml").read_text() else None
    result = _doit(project)
    assert result.returncode == 0, result.stderr
    assert "service:payment-api (openslo, slo_rules, format:sloth)" in _ran(result)
    assert _slo_document(out, "search-api", "latency-p99") is not None
    _edit(project / "plugins" / "financial.py", 'service.team in ("payments", "discovery")',
          'service.team == "payments"')
    result = _doit(project)
    assert result.returncode == 0, result.stderr
    assert _slo_document(out, "search-api", "latency-p99") is None  # the SLO's documents are gone
    assert not (out / "search-api" / "prometheus" / "slo.rules.yaml").read_text().count("latency-p99")
    # A plugin removed from the configuration: its folder goes with it, the others stay.
    (project / "nthlayer.toml").write_text('[build]\nplugins = ["plugins/financial.py"]\n')
    result = _doit(project)
    assert result.returncode == 0, result.stderr
    assert not list(out.glob("*/sloth"))
    assert _slo_document(out, "payment-api", "latency-p99") is not None


FAILING = """\
from nthlayer.plugin import OutputFormat, SLOGenerator


class Boom(SLOGenerator):
    def applies_to(self, service):
        return service.name in ("search-api", "user-service")

    def generate(self, service):
        if service.name == "search-api":
            raise RuntimeError("the rule table has no row for " + service.name)
        return [{"name": "availability", "objective": 2}]


class Escape(OutputFormat):
    format = "escape"

    def applies_to(self, service):
        return service.name == "inventory-api"

    def render(self, service):
        return {"../pagerduty.json": "{}"}
"""


def test_a_failing_plugin_fails_that_service_alone(project: Path) -> None:
    (project / "nthlayer.toml").write_text('[build]\nplugins = ["plugins/sloth.py"]\n')
    assert _doit(project).returncode == 0
    out = project / "out"
    before = _snapshot(out)
    (project / "plugins" / "failing.py").write_text(FAILING)
    (project / "nthlayer.toml").write_text('[build]\nplugins = ["plugins/sloth.py", "plugins/failing.py"]\n')
    result = _doit(project)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("plugin ")]
    assert lines == [  # the line of generate() for a bad return, the line that raised for an exception
        "plugin plugins/failing.py:8: user-service: generate() returned an invalid SLO: entry 0 (availability): "
        "/objective: 2 is not a valid objective: it must be greater than 0 and less than 1 (e.g. 0.999)",
        "plugin plugins/failing.py:10: search-api: generate(): RuntimeError: the rule table has no row for search-api",
        "plugin plugins/failing.py:20: inventory-api: render() returned path '../pagerduty.json' outside its folder "
        "out/inventory-api/escape/: paths are relative to it, without '..' or hidden names",
    ], result.stderr
    after = _snapshot(out)
    # The failing services keep every file as it was; nothing else changed either (the plugins that
    # failed apply to no other service), and no file escaped.
    # (The report's index lists the services that build: it drops the failing ones until they are fixed.)
    assert _changed(before, after) == ([] if not (out / "reports").exists() else ["reports/index.html"])
    assert not (out / "inventory-api" / "escape").exists()
    # Fixed: the build passes again.
    (project / "nthlayer.toml").write_text('[build]\nplugins = ["plugins/sloth.py"]\n')
    assert _doit(project).returncode == 0


def test_a_plugin_file_that_does_not_load_fails_every_service(project: Path) -> None:
    (project / "plugins" / "financial.py").write_text("from nthlayer.plugin import SLOGenerator\nx = (\n")
    result = _doit(project)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("plugin ")] == \
        ["plugin plugins/financial.py:2: SyntaxError: '(' was never closed"]
    assert not (project / "out" / "payment-api").exists()
    (project / "nthlayer.toml").write_text('[build]\nplugins = "plugins/financial.py"\n')
    result = _doit(project)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.splitlines()[0] == ('nthlayer.toml:2:1: /build/plugins: plugins must be a list of Python '
                                             'file paths, e.g. plugins = ["plugins/financial.py"]')


def test_nthlayer_build_and_generate_slo_take_plugin_files(project: Path) -> None:
    (project / "nthlayer.toml").unlink()
    build = subprocess.run([sys.executable, "-m", "nthlayer", "build", "--plugin", "plugins/sloth.py"],
                           cwd=project, capture_output=True, text=True, env=_env())
    assert build.returncode == 0, build.stdout + build.stderr
    assert (project / "out" / "search-api" / "sloth" / "search-api-30d.yaml").exists()
    assert _slo_document(project / "out", "payment-api", "latency-p99") is None
    shown = subprocess.run([sys.executable, "-m", "nthlayer", "generate-slo", "--plugin", "plugins/financial.py",
                            "services/payment-api.yaml", "--output", "-"],
                           cwd=project, capture_output=True, text=True, env=_env())
    assert shown.returncode == 0, shown.stderr
    assert "  name: payment-api-latency-p99\n" in shown.stdout and "target: 0.9999" in shown.stdout
    refused = subprocess.run([sys.executable, "-m", "nthlayer", "generate-slo", "--plugin", "plugins/financial.py",
                              str(ROOT / "services" / "payment-api.yaml"), "--output", "-"],
                             cwd=project, capture_output=True, text=True, env=_env())
    assert refused.returncode == 1 and refused.stdout == ""
    assert re.fullmatch(r"nthlayer generate-slo: error: plugin plugins/financial.py:\d+: payment-api: generate\(\) "
                        r"returned an invalid SLO: entry 1 \(latency-p99\): /latency/threshold: latency threshold 0.2 "
                        r"is not a bucket boundary .*\n", refused.stderr), refused.stderr


def test_plugins_list_shows_kind_version_and_origin(project: Path) -> None:
    listed = subprocess.run([sys.executable, "-m", "nthlayer", "plugins", "list"], cwd=project,
                            capture_output=True, text=True, env=_env())
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "NAME       KIND           API  FROM",
        "financial  slo-generator  1    plugins/financial.py",
        "sloth      output-format  1    plugins/sloth.py",
    ]


def _env(**extra: str) -> dict[str, str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
    return {**base, "NTHLAYER_CATALOG": str(ROOT / "rules_catalog"), **extra}


DIST = {
    "pyproject.toml": """\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "acme-nthlayer"
        version = "1.4.0"

        [project.entry-points."nthlayer.plugins"]
        inventory = "acme_nthlayer:Inventory"
        """,
    "acme_nthlayer.py": """\
        from nthlayer.plugin import API_VERSION, OutputFormat


        class Inventory(OutputFormat):
            name = "inventory"
            format = "inventory"
            api_version = API_VERSION

            def render(self, service):
                return {"service.json": {"name": service.name, "team": service.team, "tier": service.tier.number}}
        """,
}


def test_an_installed_package_is_found_by_its_entry_point(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    source = tmp_path_factory.mktemp("dist")
    for name, text in DIST.items():
        (source / name).write_text(textwrap.dedent(text))
    site = tmp_path_factory.mktemp("site")
    # A real install (pip builds the distribution and writes its metadata and entry points; its build
    # backend comes from the package index, as tests/test_wheel.py's does), into a folder of its own put
    # on the path: the test's environment stays as it was.
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                                str(source)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    env = _env(PYTHONPATH=str(site))
    listed = subprocess.run([sys.executable, "-m", "nthlayer", "plugins", "list"], cwd=project,
                            capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "inventory  output-format  1    acme-nthlayer 1.4.0 (entry point inventory)" in listed.stdout.splitlines()
    built = subprocess.run([sys.executable, "-m", "nthlayer", "build"], cwd=project, capture_output=True,
                           text=True, env=env)
    assert built.returncode == 0, built.stdout + built.stderr
    data = json.loads((project / "out" / "search-api" / "inventory" / "service.json").read_text())
    assert {k: v for k, v in data.items() if k != "$comment"} == {"name": "search-api", "team": "discovery", "tier": 2}
    # Without the package, its folders are removed by the next build.
    rebuilt = subprocess.run([sys.executable, "-m", "nthlayer", "build"], cwd=project, capture_output=True,
                             text=True, env=_env())
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert not list((project / "out").glob("*/inventory"))


def test_budgets_and_the_gate_see_the_plugins_slos(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nthlayer.buildsys.project import load_services

    monkeypatch.chdir(project)
    monkeypatch.delenv("NTHLAYER_PLUGINS", raising=False)
    monkeypatch.delenv("NTHLAYER_CONFIG", raising=False)
    services = {service.name: service for service in load_services("services")}
    assert [slo.name for slo in services["payment-api"].slos] == ["availability", "latency", "latency-p99"]
    assert services["payment-api"].slo("availability").objective == Decimal("0.9999")
    assert [slo.name for slo in services["search-api"].slos] == ["availability", "latency"]
