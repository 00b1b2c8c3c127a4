"""The bundled test Prometheus: a local server holding weeks of synthetic metrics for every service spec, so
that budget tracking, the deploy gate and the HTML report can be tried without a production Prometheus.

    python demo/prometheus.py [--services services] [--days 35] [--port 9090] [--dir DIR]

It reads the specs, writes OpenMetrics for each service's availability and latency SLIs (the metric names,
selectors, error matchers and latency bucket its spec resolves to), with a daily traffic cycle, a steady
trickle of errors and slow requests inside each objective, and a few incidents that burn budget faster;
backfills them into TSDB blocks with promtool, serves them on 127.0.0.1 and waits for Ctrl-C. It also
writes the deploys and incidents behind those bursts to ``DIR/events.json`` (``nthlayer import-events``).
The data ends at the current 5-minute boundary, so ``track-budget --backfill 30d`` finds a full month.
Same specs and same end time → same data: the shapes are drawn from a generator seeded by each name.
See docs/report.md for the walk-through.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from promserver import PrometheusServer, build_tsdb, start_prometheus  # noqa: E402

STEP = 300
# Label values tried for an error matcher: one that matches it is a failure, one that does not a success.
CANDIDATE_VALUES = ("500", "503", "failure", "error", "Unavailable", "Internal", "200", "success", "OK", "ok")


@dataclass(frozen=True)
class Burst:
    """An incident: the error and slow shares are ``factor`` × the budget's for ``steps`` steps."""
    start: int  # step index
    steps: int
    factor: float


def _matches(op: str, pattern: str, value: str) -> bool:
    if op == "=":
        return value == pattern
    if op == "!=":
        return value != pattern
    found = re.fullmatch(pattern, value) is not None
    return found if op == "=~" else not found


def _values(matchers: tuple[tuple[str, str, str], ...]) -> tuple[dict[str, str], dict[str, str]]:
    """Labels of a failed and of a successful request under the SLI's error matchers."""
    bad: dict[str, str] = {}
    for label, op, pattern in matchers:
        bad[label] = next((v for v in CANDIDATE_VALUES if _matches(op, pattern, v)), "")
        if not bad[label]:
            raise SystemExit(f"demo: no sample value matches the error matcher {label}{op}{pattern!r}")
    label, op, pattern = matchers[0]
    good = dict(bad)
    good[label] = next(v for v in CANDIDATE_VALUES if not _matches(op, pattern, v))
    return bad, good


def _selector_labels(matchers: tuple[tuple[str, str, str], ...], service: str) -> dict[str, str]:
    labels = {}
    for label, op, value in matchers:
        if op != "=":
            raise SystemExit(f"demo: {service}: the demo data only covers equality selectors ({label}{op}{value!r})")
        labels[label] = value
    return labels


def _series(name: str, labels: dict[str, str]) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{body}}}"


def plan_service(name: str, steps: int, objective: float) -> tuple[int, float, list[Burst]]:
    """(requests per step, steady bad share, incidents) of one service, from a generator seeded by its name."""
    rng = random.Random(name)
    budget = 1 - objective
    base = rng.choice((600, 1200, 3000, 6000))
    steady = budget * rng.uniform(0.15, 0.6)
    bursts = []
    for _ in range(rng.randint(1, 3)):
        length = rng.randint(6, 36)  # 30 minutes to 3 hours
        bursts.append(Burst(rng.randint(steps // 10, steps - length - 1), length, rng.choice((6.0, 14.4, 30.0))))
    return base, steady, sorted(bursts, key=lambda b: b.start)


def _bad_share(step: int, steady: float, budget: float, bursts: list[Burst]) -> float:
    for burst in bursts:
        if burst.start <= step < burst.start + burst.steps:
            return min(1.0, budget * burst.factor)
    return steady


def openmetrics(services: list[Any], start: int, steps: int) -> Iterator[str]:
    """The data set, one family at a time and every series in time order (promtool's requirement)."""
    families: dict[str, list[tuple[str, list[int]]]] = {}
    for service in services:
        by_kind = {slo.kind: slo for slo in service.slos}
        if "availability" not in by_kind:
            continue
        availability = by_kind["availability"]
        sli = availability.sli_of(service)
        base, steady, bursts = plan_service(service.name, steps, float(availability.objective))
        budget = 1 - float(availability.objective)
        labels = _selector_labels(sli.selector, service.name)
        bad_labels, good_labels = _values(sli.error_matchers)
        totals, bads, slows = [0], [0], [0]
        latency = by_kind.get("latency")
        slow_budget = 1 - float(latency.objective) if latency else 0.0
        for step in range(1, steps + 1):
            daily = 1 + 0.35 * math.sin(2 * math.pi * ((start + step * STEP) % 86400) / 86400)
            requests = round(base * daily)
            share = _bad_share(step, steady, budget, bursts)
            totals.append(totals[-1] + requests)
            bads.append(bads[-1] + round(requests * share))
            slow_share = _bad_share(step, steady / budget * slow_budget, slow_budget, bursts)
            slows.append(slows[-1] + round(requests * slow_share))
        counter = sli.requests_metric.removesuffix("_total")
        families.setdefault(f"{counter} counter", []).extend([
            (_series(sli.requests_metric, {**labels, **bad_labels}), bads),
            (_series(sli.requests_metric, {**labels, **good_labels}), [t - b for t, b in zip(totals, bads)])])
        if latency is not None:
            histogram = latency.sli_of(service).latency_histogram
            le = format(latency.threshold_seconds.normalize(), "f")
            families.setdefault(f"{histogram} histogram", []).extend([
                (_series(f"{histogram}_bucket", {**labels, "le": le}), [t - s for t, s in zip(totals, slows)]),
                (_series(f"{histogram}_bucket", {**labels, "le": "+Inf"}), totals),
                (_series(f"{histogram}_count", labels), totals)])
    for family in sorted(families):
        yield f"# TYPE {family}\n"
        for series, values in families[family]:
            for step, value in enumerate(values):
                yield f"{series} {value} {start + step * STEP}\n"
    yield "# EOF\n"


def events(services: list[Any], start: int, steps: int) -> list[dict[str, Any]]:
    """A deploy ten minutes before each burst (the suspect) and one every three days, and the incidents."""
    records: list[dict[str, Any]] = []

    def stamp(step: int) -> str:
        return datetime.fromtimestamp(start + step * STEP, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    for service in services:
        objective = next((float(s.objective) for s in service.slos if s.kind == "availability"), None)
        if objective is None:
            continue
        _, _, bursts = plan_service(service.name, steps, objective)
        deploys = {step: "routine" for step in range(288 * 3 - 7, steps, 288 * 3)}
        deploys.update({burst.start - 2: "suspect" for burst in bursts})
        for number, step in enumerate(sorted(deploys), start=1):
            records.append({"type": "deploy", "service": service.name, "version": f"v1.{number}.0",
                            "commit": hashlib.sha1(f"{service.name}/{number}".encode()).hexdigest()[:7], "deployed_at": stamp(step)})
        for number, burst in enumerate(bursts, start=1):
            records.append({"type": "incident", "service": service.name, "id": f"DEMO-{service.name}-{number}",
                            "title": f"{service.name}: elevated errors ({burst.factor:g}x burn)",
                            "severity": "critical" if burst.factor > 10 else "high",
                            "started_at": stamp(burst.start + 1), "resolved_at": stamp(burst.start + burst.steps)})
    return records


def prepare(services_dir: Path, folder: Path, days: int, end: int | None = None) -> tuple[Path, Path]:
    """Write the data and events for the specs in ``services_dir`` under ``folder``; return (TSDB, events)."""
    from nthlayer.buildsys.project import load_services

    services = load_services(str(services_dir))
    end = (int(time.time()) if end is None else end) // STEP * STEP
    steps = days * 86400 // STEP
    start = end - steps * STEP
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "data.om", "w", encoding="utf-8") as out:
        out.writelines(openmetrics(services, start, steps))
    events_file = folder / "events.json"
    events_file.write_text(json.dumps(events(services, start, steps), indent=2) + "\n", encoding="utf-8")
    return build_tsdb(folder), events_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--services", default="services", help="spec folder (default: services/)")
    parser.add_argument("--days", type=int, default=35, help="days of data up to now (default: 35)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--dir", help="where the data goes (default: a new temporary folder)")
    args = parser.parse_args(argv)
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="nthlayer-demo-prometheus-"))
    data, events_file = prepare(Path(args.services), folder, args.days)
    server: PrometheusServer = start_prometheus(data, args.port or None)
    print(f"Prometheus with {args.days} days of data for {args.services}/ at {server.url}\n"
          f"deploys and incidents for it: {events_file}\n\nthen, in another shell:\n"
          f"  nthlayer import-events {events_file}\n"
          f"  nthlayer track-budget --all --backfill 30d --step 1h --prometheus {server.url}\n"
          f"  doit\n  open out/reports/index.html\n\nCtrl-C stops the server.", flush=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the server like Ctrl-C

    signal.signal(signal.SIGTERM, stop)
    try:
        while server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
