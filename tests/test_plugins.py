"""The plugin API and loader: what a plugin author and a user see (nthlayer.plugin, nthlayer.plugin_loader)."""
from __future__ import annotations

import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from generators.slo_merge import default_slo_entries, merge_slo_entries
from generators.spec import load_spec
from nthlayer.plugin import API_VERSION, SUPPORTED_API_VERSIONS
from nthlayer.buildsys.plugin_calls import apply_slo_generators, render_output
from nthlayer.buildsys.plugins import PluginError, _module_name, configured_plugin_files, load_file, load_plugins
from tests.conftest import ROOT

EXAMPLES = ROOT / "examples" / "plugins"

PAYMENTS = """\
service: ledger-api
tier: 1
team: payments
observability:
  sli:
    latency_buckets: [0.05, 0.1, 0.2, 0.5, 1]
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    return _write(tmp_path, "ledger-api.yaml", PAYMENTS)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # plugin paths are shown relative to the working directory
    monkeypatch.delenv("NTHLAYER_CONFIG", raising=False)
    monkeypatch.delenv("NTHLAYER_PLUGINS", raising=False)


def _plugin(tmp_path: Path, body: str, name: str = "plug.py") -> Path:
    return _write(tmp_path, name, "from nthlayer.plugin import *\n" + textwrap.dedent(body))


def test_api_version_is_supported_and_exported() -> None:
    import nthlayer.plugin as api

    assert API_VERSION in SUPPORTED_API_VERSIONS
    for name in ("SLOGenerator", "OutputFormat", "Integration", "IntegrationContext", "Service", "API_VERSION"):
        assert name in api.__all__


def test_financial_example_sets_the_decks_slos(spec: Path) -> None:
    plugins = load_plugins([str(EXAMPLES / "financial.py")], entry_points=False)
    [financial] = plugins.slo_generators
    assert (financial.name, financial.kind, financial.api_version) == ("financial", "slo-generator", 1)
    loaded, applied = apply_slo_generators(load_spec(str(spec)), plugins.slo_generators)
    assert applied == [financial]
    slos = {slo.name: slo for slo in loaded.service.slos}
    assert sorted(slos) == ["availability", "latency", "latency-p99"]
    assert slos["availability"].objective == Decimal("0.9999")
    assert (slos["latency-p99"].objective, slos["latency-p99"].le) == (Decimal("0.99"), Decimal("0.2"))
    assert slos["latency"].objective == Decimal("0.95")  # the tier's own SLO stays


def test_financial_example_skips_other_teams(tmp_path: Path) -> None:
    other = _write(tmp_path, "x.yaml", PAYMENTS.replace("team: payments", "team: search"))
    plugins = load_plugins([str(EXAMPLES / "financial.py")], entry_points=False)
    before = load_spec(str(other))
    after, applied = apply_slo_generators(before, plugins.slo_generators)
    assert applied == [] and after.service == before.service


def test_an_unmeasurable_threshold_is_the_plugins_error_at_its_generate_line() -> None:
    plugins = load_plugins([str(EXAMPLES / "financial.py")], entry_points=False)
    with pytest.raises(PluginError) as caught:
        apply_slo_generators(load_spec(str(ROOT / "services" / "payment-api.yaml")), plugins.slo_generators)
    line = next(n for n, text in enumerate((EXAMPLES / "financial.py").read_text().splitlines(), 1)
                if "def generate" in text)
    shown = str(EXAMPLES / "financial.py")  # outside the working directory: shown absolute
    assert str(caught.value) == (
        f"plugin {shown}:{line}: payment-api: generate() returned an invalid SLO: entry 1 (latency-p99): "
        "/latency/threshold: latency threshold 0.2 is not a bucket boundary (le) of the histogram "
        "http_request_duration_seconds (buckets: 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10); "
        "use a boundary or declare the buckets")


def test_a_raising_plugin_is_reported_at_the_line_that_raised(tmp_path: Path, spec: Path) -> None:
    _plugin(tmp_path, """
        class Broken(SLOGenerator):
            def generate(self, service):
                ratio = {"a": 1}
                return ratio["missing"]
        """)
    plugins = load_plugins(["plug.py"], entry_points=False)
    with pytest.raises(PluginError) as caught:
        apply_slo_generators(load_spec(str(spec)), plugins.slo_generators)
    assert str(caught.value) == "plugin plug.py:6: ledger-api: generate(): KeyError: 'missing'"


@pytest.mark.parametrize("returned, message", [
    ("['x']", "generate() returned an invalid SLO: entry 0: an SLO entry must be a mapping, not str"),
    ("{'name': 'x'}", "generate() must return a list of SLO entries, not dict"),
    ("None", "generate() must return a list of SLO entries, not NoneType"),
    ("[{'objective': 0.9}]", "generate() returned an invalid SLO: entry 0: an SLO entry needs a 'name' (text)"),
    ("[{'name': 'availability', 'objective': 1.5}]",
     "generate() returned an invalid SLO: entry 0 (availability): /objective: 1.5 is not a valid objective: it "
     "must be greater than 0 and less than 1 (e.g. 0.999)"),
    ("[{'name': 'extra', 'objective': 0.9}]",
     "generate() returned an invalid SLO: entry 0 (extra): /: an SLO needs exactly one SLI kind: availability, "
     "latency, events, ratio_query or threshold (found: none)"),
    ("[{'name': 'q', 'ratio_query': 'sum(rate(x[$window])'}]",
     "generate() returned an invalid SLO: entry 0 (q): /ratio_query: with $window = 5m: not valid PromQL:"),
])
def test_an_invalid_return_is_an_error_at_the_generate_line(tmp_path: Path, spec: Path, returned: str,
                                                            message: str) -> None:
    _plugin(tmp_path, f"""
        class Bad(SLOGenerator):
            def generate(self, service):
                return {returned}
        """)
    plugins = load_plugins(["plug.py"], entry_points=False)
    with pytest.raises(PluginError) as caught:
        apply_slo_generators(load_spec(str(spec)), plugins.slo_generators)
    assert str(caught.value).startswith(f"plugin plug.py:4: ledger-api: {message}"), str(caught.value)


def test_an_unsupported_api_version_is_refused(tmp_path: Path) -> None:
    _plugin(tmp_path, """
        class Future(SLOGenerator):
            api_version = 99
            def generate(self, service):
                return []
        """)
    with pytest.raises(PluginError) as caught:
        load_file("plug.py")
    assert str(caught.value) == (
        "plugin plug.py:3: Future declares plugin API version 99; this nthlayer supports version 1 "
        "(nthlayer.plugin.API_VERSION): use a release of the plugin written for it")


@pytest.mark.parametrize("body, message", [
    ("x = 1 +\n", "plugin plug.py:2: SyntaxError: invalid syntax"),
    ("import not_a_module_anywhere\n", "plugin plug.py:2: ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
    ("x = 1\n", "plugin plug.py:1: defines no plugin: derive a class from nthlayer.plugin.SLOGenerator, "
                "OutputFormat or Integration"),
    ("class F(OutputFormat):\n    format = 'openslo'\n    def render(self, s):\n        return {}\n",
     "plugin plug.py:2: F.format 'openslo' must be a folder name of lowercase letters, digits, '-' and '_', "
     "other than openslo, pagerduty.json, prometheus"),
])
def test_a_file_that_does_not_load_says_where(tmp_path: Path, body: str, message: str) -> None:
    _plugin(tmp_path, body)
    with pytest.raises(PluginError) as caught:
        load_file("plug.py")
    assert str(caught.value) == message
    assert _module_name("plug.py") not in sys.modules  # nothing left behind


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"^plugin nope\.py:0: no such file$"):
        load_file("nope.py")


def test_loading_again_sees_the_edit_and_same_named_files_stay_apart(tmp_path: Path, spec: Path) -> None:
    body = """
        class Obj(SLOGenerator):
            def generate(self, service):
                return [{{"name": "availability", "objective": {}}}]
        """
    _plugin(tmp_path, body.format(0.9991))
    (tmp_path / "other").mkdir()
    _plugin(tmp_path / "other", body.format(0.9992))
    first = load_file("plug.py")[0]
    _plugin(tmp_path, body.format(0.9993))
    second = load_file("plug.py")[0]
    elsewhere = load_file("other/plug.py")[0]
    assert first.fingerprint != second.fingerprint
    objective = {p.source: apply_slo_generators(load_spec(str(spec)), [p])[0].service.slo("availability").objective
                 for p in (second, elsewhere)}
    assert objective == {"plug.py": Decimal("0.9993"), "other/plug.py": Decimal("0.9992")}
    # The first instance keeps working on its own code (a forked worker holding it is not disturbed).
    assert apply_slo_generators(load_spec(str(spec)), [first])[0].service.slo("availability").objective == \
        Decimal("0.9991")


def test_plugins_get_a_frozen_service(tmp_path: Path, spec: Path) -> None:
    _plugin(tmp_path, """
        class Sneaky(SLOGenerator):
            def generate(self, service):
                service.tier.burn_alerts["fast"] = None
                return []
        """)
    with pytest.raises(PluginError, match=r"^plugin plug.py:5: ledger-api: generate\(\): TypeError: "):
        apply_slo_generators(load_spec(str(spec)), load_file("plug.py"))
    from generators.tiers import TIERS

    assert TIERS[1].burn_alerts["fast"] == "page"


def test_merge_by_name_overrides_keys_and_keeps_the_rest() -> None:
    data = {"service": "a", "tier": 2, "team": "t",
            "slos": [{"name": "availability", "objective": 0.99, "availability": {"requests_metric": "req_total"}},
                     {"name": "lag", "threshold": {"query": "max(lag)", "op": "<", "value": 5}}]}
    merged, origins = merge_slo_entries(data, [{"name": "availability", "objective": Decimal("0.999")},
                                               {"name": "lag", "ratio_query": "x[$window]"},
                                               {"name": "new", "events": {"bad": "b", "total": "t"}}])
    assert merged["slos"] == [
        {"name": "availability", "objective": 0.999, "availability": {"requests_metric": "req_total"}},
        {"name": "lag", "ratio_query": "x[$window]"},  # a new SLI kind replaces the old one
        {"name": "new", "events": {"bad": "b", "total": "t"}}]
    assert origins == {0: 0, 1: 1, 2: 2}
    assert data["slos"][0]["objective"] == 0.99  # the spec's document is not changed


def test_the_default_pair_in_slos_form_models_the_same_slos(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.yaml", """\
        service: a
        tier: 2
        team: t
        observability:
          window: 28d
          slo_overrides: {availability: 0.9975, latency: 250, latency_target: 0.97}
        """)
    spec = load_spec(str(path))
    assert default_slo_entries(spec.located.data) == [
        {"name": "availability", "objective": 0.9975, "availability": {}},
        {"name": "latency", "objective": 0.97, "latency": {"threshold": 0.25}}]
    from generators.spec import validate_located
    from generators.yamlload import Located

    merged, _ = merge_slo_entries(spec.located.data, [])
    again = validate_located(Located(str(path), merged)).service
    for old, new in zip(spec.service.slos, again.slos):
        assert (old.name, old.objective, old.window_days, old.threshold_seconds if old.kind == "latency" else None,
                old.guard) == (new.name, new.objective, new.window_days,
                               new.threshold_seconds if new.kind == "latency" else None, new.guard)


@pytest.mark.parametrize("path", ["../escape.yaml", "/etc/passwd", "a/../../b.yaml", ".hidden", "", "a/./../.."])
def test_an_output_path_outside_the_format_folder_is_refused(tmp_path: Path, spec: Path, path: str) -> None:
    _plugin(tmp_path, f"""
        class Out(OutputFormat):
            format = "extra"
            def render(self, service):
                return {{{path!r}: "x"}}
        """)
    [plugin] = load_file("plug.py")
    with pytest.raises(PluginError) as caught:
        render_output(plugin, load_spec(str(spec)).service, "out")
    assert str(caught.value) == (f"plugin plug.py:5: ledger-api: render() returned path {path!r} outside its "
                                 "folder out/ledger-api/extra/: paths are relative to it, without '..' or hidden names")


def test_output_contents_bytes_text_and_mappings(tmp_path: Path, spec: Path) -> None:
    _plugin(tmp_path, """
        class Out(OutputFormat):
            format = "extra"
            def render(self, service):
                return {"a.bin": b"\\x00", "b/c.txt": "text", "d.json": {"k": Decimal("0.5")},
                        "e.yaml": {"service": service.name}}
        """)
    [plugin] = load_file("plug.py")
    files = render_output(plugin, load_spec(spec.name).service, "out")
    assert files == {
        "out/ledger-api/extra/a.bin": b"\x00",
        "out/ledger-api/extra/b/c.txt": b"text",
        "out/ledger-api/extra/d.json": b'{\n  "$comment": "Generated by nthlayer from ledger-api.yaml \xe2\x80\x94 do '
                                       b'not edit.",\n  "k": 0.5\n}\n',
        "out/ledger-api/extra/e.yaml": "# Generated by nthlayer from ledger-api.yaml — do not edit.\nservice: "
                                       "ledger-api\n".encode(),
    }


def test_the_configuration_file_lists_plugins(tmp_path: Path) -> None:
    (tmp_path / "nthlayer.toml").write_text('[build]\nplugins = ["plugins/a.py", "/abs/b.py"]\n')
    assert configured_plugin_files() == ["plugins/a.py", "/abs/b.py"]
    (tmp_path / "nthlayer.toml").write_text('[build]\nplugins = "plugins/a.py"\n')
    with pytest.raises(Exception) as caught:
        configured_plugin_files()
    assert str(caught.value) == ('nthlayer.toml:2:1: /build/plugins: plugins must be a list of Python file paths, '
                                 'e.g. plugins = ["plugins/a.py"]'.replace('"plugins/a.py"', '"plugins/financial.py"'))


def test_two_formats_of_one_name_are_refused(tmp_path: Path) -> None:
    body = """
        class Out(OutputFormat):
            format = "extra"
            def render(self, service):
                return {}
        """
    _plugin(tmp_path, body, "one.py")
    _plugin(tmp_path, body, "two.py")
    with pytest.raises(PluginError, match=r"^plugin two.py:\d+: format 'extra' is also defined by one.py; rename one$"):
        load_plugins(["one.py", "two.py"], entry_points=False)
