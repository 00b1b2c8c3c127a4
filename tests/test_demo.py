"""docs/report.md's walk-through, step by step as a user runs it: the bundled test Prometheus for the example
services (demo/prometheus.py), import-events, track-budget --backfill 30d --step 1h, doit; then the report
in a real Chromium shows every example service's budget history."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from browser import Browser, requires_chromium
from conftest import ROOT
from prom_fixture import requires_prometheus


def _run(*argv: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{argv}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


@requires_prometheus
@requires_chromium
def test_the_documented_walk_through(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "services", project / "services")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "NTHLAYER_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    server = subprocess.Popen([sys.executable, str(ROOT / "demo" / "prometheus.py"), "--dir", str(tmp_path / "demo")],
                              cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        found = re.search(r"for services/ at (http://127\.0\.0\.1:\d+)$", first.strip())
        assert found, first + server.stdout.read()
        url = found.group(1)
        events = tmp_path / "demo" / "events.json"
        nthlayer = [sys.executable, "-m", "nthlayer"]
        assert _run(*nthlayer, "import-events", str(events), cwd=project, env=env).startswith("deploys: ")
        out = _run(*nthlayer, "track-budget", "--all", "--backfill", "30d", "--step", "1h", "--prometheus", url,
                   cwd=project, env=env)
        assert out.endswith(": 14400 points for 20 SLOs\n"), out  # 720 hourly instants × 20 SLOs
        _run(sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(project), cwd=project, env=env)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    index = project / "out" / "reports" / "index.html"
    names = sorted(p.stem for p in (project / "services").glob("*.yaml"))
    pages = sorted(p.stem for p in (project / "out" / "reports" / "services").glob("*.html"))
    assert pages == names and len(names) == 10
    browser = Browser(tmp_path / "chromium")
    try:
        browser.open(index)
        assert browser.errors() == []
        charts = browser.evaluate("""window.nthlayerCharts.map(c => [c.root.parentNode.getAttribute('data-chart'),
                                       c.data[1].filter(v => v !== null).length])""")
        # Every example service's SLOs, each with (at most 180 of) its 720 hourly points.
        assert sorted(chart for chart, _ in charts) == sorted(f"{n}/{slo}" for n in names
                                                              for slo in ("availability", "latency"))
        assert all(points >= 170 for _, points in charts), charts
        browser.screenshot(tmp_path / "index.png")
    finally:
        browser.close()
