"""Benchmark: `nthlayer serve` throughput and latency for POST /api/v1/deploys and GET /api/v1/error-budgets.

    python benchmarks/api.py [--clients 8] [--requests 2000] [--paced-seconds 30]

A real server (uvicorn, one process) on 127.0.0.1 over the test suite's Prometheus fixture (tests/
prom_fixture.py: 30 days of backfilled counters for 5 services). Two runs per endpoint:
- at the issue's default rate limit, 1000 requests/min (one client, paced), for --paced-seconds;
- at the server's maximum: --clients threads posting back to back, --requests in all.
Prints requests/s and p50/p99 latency (client-side, whole request). The clients share the machine with the
server (2 cores here), so the maximum is a floor of what a separate client machine would see. Every answer
must be a success: a fast error cannot pass.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from api_fixture import ApiServer, start_api  # noqa: E402  (tests/ helpers, not a package)
from prom_fixture import copy_blocks, shared_blocks, start_prometheus, write_specs  # noqa: E402

AT = "2024-05-01T12:00:00Z"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def _deploy(server: ApiServer, session: requests.Session, n: int) -> requests.Response:
    return session.post(server.url + "/api/v1/deploys", timeout=60,
                        json={"service": f"svc-{n % 50}", "version": f"v{n}", "at": AT})


def _budgets(server: ApiServer, session: requests.Session, n: int) -> requests.Response:
    return session.get(server.url + f"/api/v1/error-budgets?service=alpha&at={AT}", timeout=60)


def measure(server: ApiServer, request: Callable[[ApiServer, requests.Session, int], requests.Response],
            clients: int, total: int, pace: float | None, offset: int) -> tuple[float, list[float]]:
    """(requests/s, latencies in s) for ``total`` requests over ``clients`` threads, each paced to ``pace`` s."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = total // clients

    def client(c: int) -> None:
        session = requests.Session()
        session.headers.update(server.headers("admin"))
        start = time.perf_counter()
        for i in range(per_client):
            if pace:
                time.sleep(max(0.0, start + i * pace - time.perf_counter()))
            began = time.perf_counter()
            answer = request(server, session, offset + c * per_client + i)
            took = time.perf_counter() - began
            if answer.status_code >= 300:
                raise RuntimeError(f"{answer.status_code}: {answer.text}")
            with lock:
                latencies.append(took)

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return len(latencies) / (time.perf_counter() - began), latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint, at the maximum")
    parser.add_argument("--paced-seconds", type=float, default=30.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nthlayer-api-bench-"))
    prometheus = start_prometheus(copy_blocks(shared_blocks(), work / "prometheus"))
    services = write_specs(work / "services")
    server = start_api(work, services, "--rate-limit", "100000000", "--prometheus", prometheus.url)
    offset = 0
    try:
        print("endpoint                 load                         requests/s    p50 ms    p99 ms")
        for label, request in (("POST /api/v1/deploys", _deploy), ("GET /api/v1/error-budgets", _budgets)):
            paced_total = int(args.paced_seconds * 1000 / 60)
            runs = (("1000 req/min (1 client)", 1, paced_total, 0.06),
                    (f"maximum ({args.clients} clients)", args.clients, args.requests, None))
            for load, clients, total, pace in runs:
                rate, latencies = measure(server, request, clients, total, pace, offset)
                offset += total
                print(f"{label:<24} {load:<28} {rate:>10.1f} {statistics.median(latencies) * 1000:>9.1f} "
                      f"{percentile(latencies, 0.99) * 1000:>9.1f}", flush=True)
    finally:
        server.stop()
        prometheus.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
