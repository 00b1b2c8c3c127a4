"""Benchmark: `track-budget --backfill 30d --step 1h` of 1000 SLOs, and `nthlayer report` at 1000 services.

    python benchmarks/report.py [--backfill-services 500] [--report-services 1000] [--cache DIR]

The data is benchmarks/budget.py's (30 days of counters per service at 900 s steps, backfilled into TSDB
blocks with promtool, cached under --cache) served by a local `prometheus` on 127.0.0.1. Timed, as whole
processes (wall time, peak RSS, best of 3): the backfill of the first N services' SLOs into a fresh state
database, then, over a state holding the history of every service, `nthlayer report` (total size of the
pages too). The history is checked against the error ratios the data was built with, so a fast wrong
answer cannot pass.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "demo"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from budget import END, cached_blocks, service_params, write_specs  # noqa: E402
from promserver import start_prometheus  # noqa: E402

OBJECTIVES = {1: (Decimal("0.999"), Decimal("0.95")), 2: (Decimal("0.995"), Decimal("0.95")),
              3: (Decimal("0.99"), Decimal("0.95"))}  # tier → (availability, latency) objectives


def timed(argv: list[str], cwd: Path, runs: int, fresh: Path | None = None) -> tuple[float, float]:
    """(best wall seconds, peak RSS MB) of ``runs`` runs; ``fresh``: removed before each run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    best, peak = float("inf"), 0.0
    for _ in range(runs):
        if fresh is not None and fresh.is_dir():
            shutil.rmtree(fresh)
        elif fresh is not None and fresh.exists():
            fresh.unlink()
        with open(cwd / "stderr", "wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
            _pid, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(argv[2:4])} failed: {(cwd / 'stderr').read_text()[-2000:]}")
        best, peak = min(best, elapsed), max(peak, usage.ru_maxrss / 1024)
    return best, peak


def check_history(state: Path, services: int) -> int:
    """Every stored figure is the one the data implies (a constant error ratio per service and SLO)."""
    sys.path.insert(0, str(ROOT))
    from nthlayer.ops.budget import budget_figures
    from nthlayer.state.history import read_history
    from nthlayer.state.db import connect

    expected = {}
    for index in range(services):
        name, tier, total, errors, slow = service_params(index)
        availability, latency = OBJECTIVES[tier]
        expected[(name, "availability")] = budget_figures(availability, 30, Decimal(errors) / total)[3]
        expected[(name, "latency")] = budget_figures(latency, 30, Decimal(slow) / total)[3]
    with connect(str(state)) as con:
        points = read_history(con)
    for point in points:
        want = expected[(point.service, point.slo)]
        if any(value is not None and value != want for value in point.remaining.values()):
            raise SystemExit(f"{point.service} {point.slo} at {point.at}: {point.remaining}, expected {want}")
    if {(p.service, p.slo) for p in points} != set(expected):
        raise SystemExit("some SLO has no history")
    return len(points)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--backfill-services", type=int, default=500, help="services (×2 SLOs) to backfill")
    parser.add_argument("--report-services", type=int, default=1000, help="services in the report")
    parser.add_argument("--cache", default=os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser(
        "~/.cache")), "nthlayer-benchmarks"), help="where the backfilled blocks are kept between runs")
    args = parser.parse_args()
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        raise SystemExit("prometheus and promtool are needed (Debian: apt-get install prometheus)")
    everyone = max(args.backfill_services, args.report_services)
    blocks = cached_blocks(Path(args.cache), everyone, 900)
    with tempfile.TemporaryDirectory(prefix="nthlayer-report-bench-") as tmp:
        work = Path(tmp)
        write_specs(work / "all", everyone)
        for folder, count in (("backfill", args.backfill_services), ("report", args.report_services)):
            (work / folder).mkdir()
            for index in range(count):
                name = service_params(index)[0]
                shutil.copy(work / "all" / f"{name}.yaml", work / folder / f"{name}.yaml")
        data = work / "prom" / "data"
        shutil.copytree(blocks, data)
        server = start_prometheus(data)
        try:
            def backfill(folder: str, state: str, runs: int) -> tuple[float, float]:
                return timed([sys.executable, "-m", "nthlayer", "track-budget", "--all", "--services", folder,
                              "--prometheus", server.url, "--at", str(END), "--backfill", "30d", "--step", "1h",
                              "--state", state], work, runs, fresh=work / state)

            backfill_s, backfill_mb = backfill("backfill", "backfill.duckdb", 3)
            rows = check_history(work / "backfill.duckdb", args.backfill_services)
            backfill("report", "report.duckdb", 1)
        finally:
            server.stop()
        report_s, report_mb = timed([sys.executable, "-m", "nthlayer", "report", "--services", "report",
                                     "--out", "out", "--state", "report.duckdb"], work, 3,
                                    fresh=work / "out")
        pages = list((work / "out" / "reports").rglob("*.html"))
        total = sum(p.stat().st_size for p in pages)
        index = (work / "out" / "reports" / "index.html").stat().st_size
    print(f"| {args.backfill_services * 2} SLOs | track-budget --backfill 30d --step 1h (720 points each, "
          f"{rows} rows checked; best of 3) | {backfill_s:.2f} | {backfill_mb:.0f} |")
    print(f"| {args.report_services} services | nthlayer report ({len(pages)} pages, {total / 1e6:.1f} MB in all, "
          f"index {index / 1e6:.2f} MB; best of 3) | {report_s:.2f} | {report_mb:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
