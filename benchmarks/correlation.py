"""Benchmark: score 100k deploys × 10k incidents in DuckDB (target: under 1 s on 2 cores).

    python benchmarks/correlation.py [--deploys N] [--incidents N] [--services N] [--markdown-row]

Data is generated in SQL with a fixed pattern (no randomness) over one year;
only the scoring (nthlayer.state.correlation.score) is timed.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nthlayer.state.correlation import score  # noqa: E402
from nthlayer.state.db import connect  # noqa: E402

YEAR_SECONDS = 365 * 86400


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--deploys", type=int, default=100_000)
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--markdown-row", action="store_true", help="print one row of docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.duckdb")
        with connect(path) as con:
            # Spread events over a year with co-prime strides so services and times interleave.
            con.execute("INSERT INTO deploys (service, version, commit_sha, deployed_at, source) "
                        "SELECT 'svc-' || (i * 7 % $s), 'v' || i, NULL, "
                        "TIMESTAMP '2024-01-01' + to_seconds((i * 7919 % $y)::DOUBLE), 'bench' "
                        "FROM range($n) t(i)", {"s": args.services, "y": YEAR_SECONDS, "n": args.deploys})
            con.execute("INSERT INTO incidents (incident_key, service, title, severity, started_at, resolved_at, "
                        "source) SELECT 'inc-' || i, 'svc-' || (i * 13 % $s), NULL, 'high', "
                        "TIMESTAMP '2024-01-01' + to_seconds((i * 104729 % $y)::DOUBLE), NULL, 'bench' "
                        "FROM range($n) t(i)", {"s": args.services, "y": YEAR_SECONDS, "n": args.incidents})
        edges = [(f"svc-{i}", f"svc-{(i + 1) % args.services}") for i in range(args.services)]
        with connect(path) as con:
            started = time.perf_counter()
            pairs = score(con, edges)
            elapsed = time.perf_counter() - started
            top = con.execute("SELECT max(confidence), count(*) FILTER (WHERE confidence > 0.8) "
                              "FROM correlations").fetchall()[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.markdown_row:
        verdict = "meets ≤ 1 s" if elapsed <= 1 else "MISSES ≤ 1 s"
        print(f"| {args.deploys // 1000}k × {args.incidents // 1000}k | correlation scoring in DuckDB "
              f"({args.services} services; timed inside the process, data load excluded) | {elapsed:.2f} | "
              f"{peak:.0f} | {verdict}; {pairs} pairs in the window, {top[1]} above 0.8 |")
        return 0
    print(f"scored {args.deploys} deploys x {args.incidents} incidents: {pairs} pairs in the window, "
          f"max confidence {top[0]}, {top[1]} above 0.8, in {elapsed:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
