"""`nthlayer report`: the HTML reliability report from a real state database (budget history backfilled from
the real Prometheus of tests/prom_fixture.py, deploys and incidents with hostile text), checked as bytes and
as a person sees it in a real headless Chromium (tests/browser.py)."""
from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path
from decimal import Decimal
from typing import Any

import pytest

from browser import HEIGHT, WIDTH, Browser, requires_chromium
from prom_fixture import (END, PrometheusServer, fixture_specs, prometheus, prometheus_blocks,  # noqa: F401
                          requires_prometheus)

HOUR = 3600
HOSTILE_VERSION = '<script>alert("v")</script>'
HOSTILE_COMMIT = "\"'><img src=x onerror=alert(1)>"
HOSTILE_TITLE = "</script><script>alert(2)</script> & more"
INCIDENT_KEY = "INC-<b>7</b>"
DEPLOY_AT = END - 26 * HOUR  # beta's first deploy: its marker
INCIDENT_FROM, INCIDENT_TO = END - HOUR, END - 30 * 60  # beta's errors start 55 minutes before END
SPAN_HOURS = 72


def _cli(*args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from nthlayer.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def report_state(prometheus: PrometheusServer, fixture_specs: Path,  # noqa: F811
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state database: 3 days of history for the fixture services, beta's deploys and incident."""
    state = tmp_path_factory.mktemp("report-state") / "nthlayer.duckdb"
    code, _, err = _cli("track-budget", "--all", "--services", str(fixture_specs), "--prometheus", prometheus.url,
                        "--at", str(END), "--backfill", f"{SPAN_HOURS}h", "--step", "1h", "--state", str(state))
    assert code == 0, err
    for version, commit, at in ((HOSTILE_VERSION, HOSTILE_COMMIT, DEPLOY_AT), ("2.0.1", "abc123", END - 70 * 60)):
        code, _, err = _cli("record-deploy", "--service", "beta", "--version", version, "--commit", commit,
                            "--at", str(at), "--state", str(state))
        assert code == 0, err
    code, _, err = _cli("record-incident", "--service", "beta", "--started-at", str(INCIDENT_FROM), "--resolved-at",
                        str(INCIDENT_TO), "--severity", "critical", "--id", INCIDENT_KEY, "--title", HOSTILE_TITLE,
                        "--state", str(state))
    assert code == 0, err
    return state


@pytest.fixture(scope="module")
def report_dir(report_state: Path, fixture_specs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("report-out")
    code, stdout, err = _cli("report", "--services", str(fixture_specs), "--out", str(out), "--state", str(report_state))
    assert (code, err) == (0, "")
    assert stdout == f"{out}/reports/index.html: 6 services, 7 files written\n"
    return out / "reports"


@requires_prometheus
def test_same_state_same_bytes(report_dir: Path, report_state: Path, fixture_specs: Path,  # noqa: F811
                               tmp_path: Path) -> None:
    code, stdout, _ = _cli("report", "--services", str(fixture_specs), "--out", str(tmp_path), "--state",
                           str(report_state))
    assert code == 0
    again = sorted(p.relative_to(tmp_path / "reports") for p in (tmp_path / "reports").rglob("*.html"))
    assert again == sorted(p.relative_to(report_dir) for p in report_dir.rglob("*.html"))
    for name in again:
        assert (tmp_path / "reports" / name).read_bytes() == (report_dir / name).read_bytes(), name
    # A rerun over the same out/ writes nothing.
    code, stdout, _ = _cli("report", "--services", str(fixture_specs), "--out", str(tmp_path), "--state",
                           str(report_state))
    assert stdout.endswith(", 0 files written\n")


@requires_prometheus
def test_user_strings_are_escaped(report_dir: Path) -> None:
    page = (report_dir / "services" / "beta.html").read_text(encoding="utf-8")
    for hostile in (HOSTILE_VERSION, HOSTILE_COMMIT, HOSTILE_TITLE, INCIDENT_KEY):
        assert hostile not in page
    assert "&lt;script&gt;alert(&quot;v&quot;)&lt;/script&gt;" in page
    assert "&quot;&#x27;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "INC-&lt;b&gt;7&lt;/b&gt; " in page or "INC-&lt;b&gt;7&lt;/b&gt;<" in page
    assert "&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt; &amp; more" in page
    # Our three script elements only (data, uPlot, drawing), however the data's strings try to close them.
    assert len(re.findall(r"<script\b", page)) == 3 and len(re.findall(r"</script>", page)) == 3
    data = page.split('<script type="application/json" id="nthlayer-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)["charts"]["availability"]["deploys"][0]["version"] == HOSTILE_VERSION


@requires_prometheus
def test_the_gate_column_is_check_deploys_verdict(report_dir: Path, report_state: Path, fixture_specs: Path,  # noqa: F811
                                                  prometheus: PrometheusServer, tmp_path: Path) -> None:  # noqa: F811
    index = (report_dir / "index.html").read_text(encoding="utf-8")
    shown = dict(re.findall(r'<a href="services/([a-z]+)\.html">[a-z]+</a></td>.*?<td class="gate"><span class="tag (\w+)">',
                            index))
    assert sorted(shown) == ["alpha", "beta", "delta", "epsilon", "gamma", "silent"]
    for service, verdict in shown.items():
        code, out, err = _cli("check-deploy", "--service", service, "--services", str(fixture_specs),
                              "--prometheus", prometheus.url, "--at", str(END), "--json",
                              "--state", str(tmp_path / "gate.duckdb"))
        assert json.loads(out)["decision"] == verdict, (service, err)
    assert shown["delta"] == "block" and shown["silent"] == "unknown" and shown["alpha"] == "approve"


@requires_prometheus
def test_pages_list_unrouted_services_and_correlated_deploys(report_dir: Path) -> None:
    index = (report_dir / "index.html").read_text(encoding="utf-8")
    unrouted = index.split("<h2>Services without PagerDuty routing</h2>", 1)[1].split("<h2>", 1)[0]
    assert re.findall(r'<li><a href="services/(\w+)\.html">', unrouted) == [
        "alpha", "beta", "delta", "epsilon", "gamma", "silent"]  # the fixture specs have no pagerduty settings
    correlated = index.split("<h2>Top correlated deploys</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<td>beta</td><td>2.0.1</td><td>2024-05-01T10:50:00Z</td>" in correlated
    assert "data up to 2024-05-01 12:00 UTC." in index


COST_HEAD = ("<th>incidents</th><th>incident minutes</th><th>pages</th><th>budget minutes spent</th>"
             "<th>budget minutes</th><th>NthLayer series</th>")


@requires_prometheus
def test_cost_sections(report_dir: Path) -> None:
    # beta over the 30 days up to END: its one critical incident (30 minutes, a page); budget spent from the
    # history's 30d figure at END: 97.22 % left of 0.5 % over 43200 minutes → 6.00 (tests/test_cost.py);
    # tier 2: (0.5 % + 5 %) of 43200 budget minutes.
    beta = (report_dir / "services" / "beta.html").read_text(encoding="utf-8")
    section = beta.split('<h2 id="cost">Cost</h2>', 1)[1].split("<h2>", 1)[0]
    assert (f'<table class="cost"><thead><tr>{COST_HEAD}</tr></thead><tbody><tr><td class="num">1</td>'
            '<td class="num">30.00</td><td class="num">1</td><td class="num">6.00</td><td class="num">2376.00</td>'
            '<td class="num">—</td></tr></tbody></table>') in section
    assert "Series never measured (run nthlayer cost --prometheus URL)." in section
    index = (report_dir / "index.html").read_text(encoding="utf-8")
    teams = index.split('<h2 id="cost">Cost by team</h2>', 1)[1].split("<h2>", 1)[0]
    assert re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>", teams) == [
        ("t-alpha", "1", "0"), ("t-beta", "1", "1"), ("t-delta", "1", "0"), ("t-epsilon", "1", "0"),
        ("t-gamma", "1", "0"), ("t-silent", "1", "0")]


@requires_prometheus
def test_cost_section_shows_the_last_series_measurement(report_state: Path, fixture_specs: Path,  # noqa: F811
                                                        prometheus: PrometheusServer, tmp_path: Path) -> None:  # noqa: F811
    state = tmp_path / "nthlayer.duckdb"
    shutil.copy(report_state, state)
    # The fixture's Prometheus holds raw series only: no rule has recorded anything, and the report says 0.
    code, _, err = _cli("cost", "--services", str(fixture_specs), "--prometheus", prometheus.url, "--at", str(END),
                        "--state", str(state))
    assert (code, err) == (0, "")
    assert _cli("report", "--services", str(fixture_specs), "--out", str(tmp_path), "--state", str(state))[0] == 0
    alpha = (tmp_path / "reports" / "services" / "alpha.html").read_text(encoding="utf-8")
    section = alpha.split('<h2 id="cost">Cost</h2>', 1)[1].split("<h2>", 1)[0]
    assert '<td class="num">0</td></tr></tbody></table>' in section
    assert "Series measured 2024-05-01 12:00 UTC." in section


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


COLUMN_JS = """(() => {
  const chart = window.nthlayerCharts.find(c => c.root.parentNode.getAttribute('data-chart') === %(chart)s);
  const box = chart.bbox, ctx = chart.ctx, spec = chart.nthlayer;
  const x = Math.round(box.left + (%(t)s - %(lo)s) / (%(hi)s - %(lo)s) * box.width);
  const px = ctx.getImageData(x, box.top, 1, box.height).data;
  const colours = [];
  for (let i = 0; i < px.length; i += 4) colours.push([px[i], px[i + 1], px[i + 2], px[i + 3]]);
  return {x: x, colours: colours};
})()"""


def _share(colours: list[list[int]], rgba: tuple[int, ...], tolerance: int = 6) -> float:
    """The share of a pixel column in a colour (RGB, and alpha when given: the canvas is transparent,
    the page's white shows through it)."""
    near = [c for c in colours if all(abs(c[i] - rgba[i]) <= tolerance for i in range(len(rgba)))]
    return len(near) / len(colours)


DEPLOY_RGB = (0xCC, 0x79, 0xA7, 255)
BAND_RGB = (0xD5, 0x5E, 0x00, round(0.22 * 255))  # #D55E00 at 22 % opacity


@requires_prometheus
@requires_chromium
def test_the_report_in_chromium(report_dir: Path, tmp_path: Path) -> None:
    browser = Browser(tmp_path / "chromium-profile")
    try:
        for page, charts in ((report_dir / "index.html", 10), (report_dir / "services" / "beta.html", 2)):
            browser.open(page)
            assert browser.errors() == [], page
            drawn = browser.evaluate("""window.nthlayerCharts.map(c => ({
                id: c.root.parentNode.getAttribute('data-chart'), canvas: !!c.root.querySelector('canvas'),
                points: c.data.slice(1).map(s => s.filter(v => v !== null).length),
                width: c.bbox.width, height: c.bbox.height}))""")
            assert len(drawn) == charts == browser.evaluate("document.querySelectorAll('[data-chart]').length")
            for chart in drawn:
                assert chart["canvas"] and chart["width"] > 500 and chart["height"] > 80, chart
                assert min(chart["points"]) > 0, chart
            shot = browser.screenshot(tmp_path / f"{page.stem}.png")
            assert _png_size(shot) == (WIDTH, HEIGHT)
        # The cost table, as a person sees it on beta's page: one row, its header above.
        cost = browser.evaluate("""(() => { const t = document.querySelector('table.cost');
            const r = t.getBoundingClientRect();
            return {heading: document.getElementById('cost').innerText, width: r.width, height: r.height,
                    head: [...t.querySelectorAll('th')].map(c => c.innerText),
                    row: [...t.querySelectorAll('tbody td')].map(c => c.innerText)}; })()""")
        assert cost["heading"] == "Cost" and cost["width"] > 300 and cost["height"] > 20
        assert cost["head"] == ["incidents", "incident minutes", "pages", "budget minutes spent", "budget minutes",
                                "NthLayer series"]
        assert cost["row"] == ["1", "30.00", "1", "6.00", "2376.00", "—"]
        # beta's availability chart, as the data says: 72 hourly points ending at END, the deploy a day
        # before, the incident an hour before.
        lo, hi = END - (SPAN_HOURS - 1) * HOUR, END
        spec: dict[str, Any] = {"chart": '"availability"', "lo": lo, "hi": hi}
        deploy = browser.evaluate(COLUMN_JS % {**spec, "t": DEPLOY_AT})
        assert _share(deploy["colours"], DEPLOY_RGB) > 0.9, deploy["x"]
        beside = browser.evaluate(COLUMN_JS % {**spec, "t": DEPLOY_AT - 2 * HOUR})
        assert _share(beside["colours"], DEPLOY_RGB) == 0
        band = browser.evaluate(COLUMN_JS % {**spec, "t": (INCIDENT_FROM + INCIDENT_TO) // 2})
        assert _share(band["colours"], BAND_RGB) > 0.5, band["x"]
        before = browser.evaluate(COLUMN_JS % {**spec, "t": INCIDENT_FROM - 2 * HOUR})
        assert _share(before["colours"], BAND_RGB) == 0
        browser.screenshot(tmp_path / "beta-full.png", full_page=True)
    finally:
        browser.close()


def test_without_a_state_database(fixture_specs: Path, tmp_path: Path) -> None:  # noqa: F811
    state = tmp_path / "none" / "nthlayer.duckdb"
    code, stdout, err = _cli("report", "--services", str(fixture_specs), "--out", str(tmp_path / "out"),
                             "--state", str(state))
    assert (code, err) == (0, "")
    assert not state.exists()  # reading never creates the database
    page = (tmp_path / "out" / "reports" / "services" / "alpha.html").read_text(encoding="utf-8")
    assert "<script" not in page  # no chart: no charting library either
    assert page.count("No budget history recorded (run nthlayer track-budget).") == 2
    assert ("no data for the availability SLO of alpha in Prometheus (no matching series, or no traffic in 30d)"
            in page and '<span class="tag unknown">CANNOT DECIDE</span>' in page)
    index = (tmp_path / "out" / "reports" / "index.html").read_text(encoding="utf-8")
    assert "6 services; data up to —." in index


def test_a_removed_service_loses_its_page(report_state: Path, fixture_specs: Path, tmp_path: Path) -> None:  # noqa: F811
    specs = tmp_path / "services"
    shutil.copytree(fixture_specs, specs)
    out = tmp_path / "out"
    assert _cli("report", "--services", str(specs), "--out", str(out), "--state", str(report_state))[0] == 0
    (specs / "gamma.yaml").unlink()
    assert _cli("report", "--services", str(specs), "--out", str(out), "--state", str(report_state))[0] == 0
    assert sorted(p.stem for p in (out / "reports" / "services").iterdir()) == [
        "alpha", "beta", "delta", "epsilon", "silent"]


def _doit(cwd: Path) -> list[str]:
    """Run the checkout's doit build in ``cwd``; the tasks that ran."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
    result = subprocess.run([sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(cwd)], cwd=cwd,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return sorted(line[3:] for line in result.stdout.splitlines() if line.startswith(".  "))


@requires_prometheus
def test_the_report_task_runs_when_the_state_changes(report_state: Path, fixture_specs: Path,  # noqa: F811
                                                     tmp_path: Path) -> None:
    shutil.copytree(fixture_specs, tmp_path / "services")
    # The budget fixtures' tier-1 services have no PagerDuty routing, which the default policies deny.
    (tmp_path / "nthlayer.toml").write_text('[policy]\ndisable = ["tier1-pagerduty"]\n')
    (tmp_path / "state").mkdir()
    state = tmp_path / "state" / "nthlayer.duckdb"
    assert "report" in _doit(tmp_path)  # no database yet: pages without history
    assert "No budget history recorded" in (tmp_path / "out" / "reports" / "services" / "alpha.html").read_text()
    assert _doit(tmp_path) == []
    shutil.copy(report_state, state)  # history, deploys and an incident arrive
    assert _doit(tmp_path) == ["correlate", "report"]
    page = (tmp_path / "out" / "reports" / "services" / "beta.html").read_bytes()
    assert _doit(tmp_path) == []
    # Budget history alone: the report, not the correlation reports.
    assert _cli("track-budget", "--service", "alpha", "--services", str(tmp_path / "services"), "--prometheus",
                "http://127.0.0.1:9", "--at", str(END), "--backfill", "1h", "--step", "1h", "--state", str(state),
                "--prometheus-retries", "0")[0] == 1  # nothing reachable: nothing recorded
    assert _doit(tmp_path) == []
    from nthlayer.state.db import connect
    from nthlayer.state.history import read_history, record_history

    with connect(str(state)) as con:
        point = read_history(con, ["alpha"])[-1]
        record_history(con, [point.__class__(point.service, point.slo, point.at, point.objective,
                                             point.window_days, {**point.remaining, "window": Decimal("1.00")},
                                             "track-budget")])
    assert _doit(tmp_path) == ["report"]
    assert (tmp_path / "out" / "reports" / "services" / "beta.html").read_bytes() == page
    assert "1.00 %" in (tmp_path / "out" / "reports" / "services" / "alpha.html").read_text()
    # A series measurement (nthlayer cost --prometheus) is on the cost section: the report again.
    with connect(str(state)) as con:
        from nthlayer.state.cost import record_series_counts

        record_series_counts(con, point.at, {("alpha", "sloth_slo_info"): 2})
    assert _doit(tmp_path) == ["report"]
    assert "Series measured 2024-05-01 12:00 UTC." in (tmp_path / "out" / "reports" / "services" / "alpha.html").read_text()
    # A spec edit that keeps the services and their graph leaves the report alone; a new service does not.
    spec = tmp_path / "services" / "alpha.yaml"
    spec.write_text(spec.read_text().replace("team: t-alpha", "team: t-alpha-2"))
    assert "report" not in _doit(tmp_path)
    (tmp_path / "services" / "zeta.yaml").write_text("service: zeta\ntier: 3\nteam: z\n")
    assert "report" in _doit(tmp_path)
    assert (tmp_path / "out" / "reports" / "services" / "zeta.html").exists()
