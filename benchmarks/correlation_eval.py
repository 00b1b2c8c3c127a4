"""Labelled benchmark for change ↔ incident correlation: precision, recall and F1 of BLOCK for the deck's
three-factor score against the advanced score (blast radius and metric evidence), on synthetic history.

    python benchmarks/correlation_eval.py [--seed 21] [--days 90] [--services 200] [--json]

Everything comes from one seeded random generator: the same arguments print the same numbers. The world
it simulates, and why (docs/correlation.md, "Evaluation", lists the assumptions):

- services in five layers, each calling 1-4 services of lower layers (popular backends are called more);
  each call edge has a coupling, the share of the callee's errors its caller passes on (0.05-0.6);
- every service has one request-counting SLI with a tier objective (99.9 / 99.5 / 99 %), a baseline error
  ratio (a fifth to most of its budget) that wobbles from window to window, and sampling noise;
- deploys on weekdays in working hours, 0.2-1.5 a day per service; 4 % are bad. A bad deploy raises its
  service's error ratio from a few minutes after it until it is rolled back (20 min-3 h), by a step whose
  size is heavy-tailed; a quarter of bad deploys break something the SLI does not measure (no step);
- errors travel up call edges, scaled by the coupling, to any depth; a service whose burn rate rises gets
  an incident with a probability growing with the rise (alerts and people notice big steps sooner), opened
  after a detection delay; a silent bad deploy is reported by people on its own service, later;
- background incidents unrelated to any change (capacity, hardware, a third party), about one per service
  every three weeks; 60 % of them move the SLI of their service (and, through couplings, its callers)
  from a few minutes before they are opened.

Ground truth: (bad deploy, incident it caused) pairs. A pair is predicted when its confidence is above 0.8
(BLOCK). The metric evidence is computed from the simulated SLI exactly as nthlayer.ops.evidence computes
it from Prometheus (bad ratio over the 30 minutes before and after, divided by the error budget, for the
deployed service and its dependants) and scored by the same function (nthlayer.state.correlation.score).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nthlayer.state.correlation import BLOCK_ABOVE, EVIDENCE_MINUTES, MAX_HOPS, SliStep, downstream, score  # noqa: E402
from nthlayer.state.db import connect  # noqa: E402
from nthlayer.state.events import Deploy, Incident, insert_deploys, insert_incidents  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
OBJECTIVES = {1: 0.999, 2: 0.995, 3: 0.99}
BAD_DEPLOY_SHARE = 0.04
SILENT_BAD_SHARE = 0.25
NOISE_PER_SERVICE_PER_DAY = 1 / 21
NOISE_MOVES_SLI = 0.6
REQUESTS_PER_MINUTE = 600  # per service: the sampling noise of a 30-minute ratio


@dataclass
class Service:
    name: str
    tier: int
    budget: float
    baseline: float  # error ratio
    callers: dict[str, float] = field(default_factory=dict)  # caller → coupling
    effects: list[tuple[float, float, float]] = field(default_factory=list)  # (start, end, added ratio), minutes


@dataclass
class World:
    services: dict[str, Service]
    edges: list[tuple[str, str]]  # (callee, caller): a change of the callee can hurt the caller
    deploys: list[tuple[str, str, float, bool]]  # (service, version, minute, bad)
    incidents: list[tuple[str, str, float, str | None]]  # (key, service, minute, version of the causing deploy)


def build_graph(rng: random.Random, count: int) -> tuple[dict[str, Service], list[tuple[str, str]]]:
    layers = [min(4, int(i * 5 / count)) for i in range(count)]  # 0: backends … 4: front ends
    services: dict[str, Service] = {}
    for i in range(count):
        tier = 1 if layers[i] in (0, 4) and rng.random() < 0.5 else rng.choice((2, 2, 3))
        budget = 1 - OBJECTIVES[tier]
        services[f"svc-{i:03d}"] = Service(f"svc-{i:03d}", tier, budget, budget * rng.uniform(0.2, 0.9))
    names = list(services)
    popularity = [1.0] * count
    edges = []
    for i, name in enumerate(names):
        lower = [j for j in range(count) if layers[j] < layers[i]]
        if not lower:
            continue
        for j in set(rng.choices(lower, weights=[popularity[k] for k in lower], k=rng.randint(1, 4))):
            popularity[j] += 1  # the rich get richer: a few backends everyone calls
            services[names[j]].callers[name] = rng.uniform(0.05, 0.6)
            edges.append((names[j], name))
    return services, sorted(edges)


def spread(services: dict[str, Service], origin: str, start: float, end: float, added: float) -> dict[str, float]:
    """Add an error-ratio effect to ``origin`` and, scaled by the couplings, to its callers at any depth;
    return each affected service's added ratio (the largest path wins)."""
    reached = {origin: added}
    frontier = [origin]
    while frontier:
        following = []
        for name in frontier:
            for caller, coupling in sorted(services[name].callers.items()):
                passed = reached[name] * coupling
                if passed > reached.get(caller, 0) and passed > 1e-6:
                    reached[caller] = passed
                    following.append(caller)
        frontier = following
    for name, ratio in reached.items():
        services[name].effects.append((start, end, ratio))
    return reached


def open_incidents(rng: random.Random, services: dict[str, Service], reached: dict[str, float], onset: float,
                   cause: str | None, incidents: list[tuple[str, str, float, str | None]]) -> None:
    """Incidents on the services whose burn rate rose: likelier and sooner the bigger the rise."""
    for name, ratio in sorted(reached.items()):
        burn = ratio / services[name].budget
        if rng.random() < 1 - math.exp(-burn / 8):
            delay = 2 + rng.expovariate(1 / (4 + 120 / max(burn, 1)))
            incidents.append((f"inc-{len(incidents):05d}", name, onset + delay, cause))


def simulate(seed: int, days: int, count: int) -> World:
    rng = random.Random(seed)
    services, edges = build_graph(rng, count)
    deploys: list[tuple[str, str, float, bool]] = []
    for name in services:
        rate = rng.uniform(0.2, 1.5)
        for day in range(days):
            if (START + timedelta(days=day)).weekday() >= 5:
                continue
            for n in range(_poisson(rng, rate * 7 / 5)):
                minute = day * 1440 + rng.uniform(8 * 60, 18 * 60)
                deploys.append((name, f"{name}-d{day}-{n}", minute, rng.random() < BAD_DEPLOY_SHARE))
    deploys.sort(key=lambda d: (d[2], d[0]))
    incidents: list[tuple[str, str, float, str | None]] = []
    for name, version, minute, bad in deploys:
        if not bad:
            continue
        onset = minute + rng.uniform(0, 10)  # the rollout reaches enough traffic
        end = onset + rng.uniform(20, 180)  # rolled back or fixed
        if rng.random() < SILENT_BAD_SHARE:
            if rng.random() < 0.6:  # broken where the SLI does not look: people report it, later
                incidents.append((f"inc-{len(incidents):05d}", name, onset + rng.uniform(10, 120), version))
            continue
        burn = math.exp(rng.gauss(math.log(8), 1.0))  # median 8× the budget rate, heavy tail both ways
        reached = spread(services, name, onset, end, burn * services[name].budget)
        open_incidents(rng, services, reached, onset, version, incidents)
    for name in services:
        for _ in range(_poisson(rng, NOISE_PER_SERVICE_PER_DAY * days)):
            opened = rng.uniform(0, days * 1440)
            if rng.random() < NOISE_MOVES_SLI:
                onset = opened - rng.uniform(2, 20)
                burn = math.exp(rng.gauss(math.log(8), 1.0))
                reached = spread(services, name, onset, onset + rng.uniform(20, 240), burn * services[name].budget)
                reached.pop(name)
                open_incidents(rng, services, reached, onset, None, incidents)  # callers may page too
            incidents.append((f"inc-{len(incidents):05d}", name, opened, None))
    return World(services, edges, deploys, incidents)


def _poisson(rng: random.Random, mean: float) -> int:
    count, total = 0, rng.expovariate(1.0)
    while total < mean:
        count += 1
        total += rng.expovariate(1.0)
    return count


def window_burn(service: Service, start: float, seed: int) -> float:
    """The burn rate of ``service`` over the 30 minutes from ``start``: baseline with a wobble, effects
    overlapping the window, and the sampling noise of that many requests."""
    rng = random.Random(f"{seed}:{service.name}:{round(start, 3)}")
    ratio = service.baseline * math.exp(rng.gauss(0, 0.3))
    end = start + EVIDENCE_MINUTES
    for effect_start, effect_end, added in service.effects:
        overlap = min(end, effect_end) - max(start, effect_start)
        if overlap > 0:
            ratio += added * overlap / EVIDENCE_MINUTES
    requests = REQUESTS_PER_MINUTE * EVIDENCE_MINUTES
    ratio = max(0.0, ratio + rng.gauss(0, math.sqrt(ratio / requests)))
    return ratio / service.budget


def evidence(world: World, ids: dict[str, int], seed: int) -> dict[int, list[SliStep]]:
    """Per deploy, the SLI steps of its service and dependants, as nthlayer.ops.evidence reads them."""
    reach: dict[str, list[str]] = {}
    for deployed, affected, _hops in downstream(world.edges, MAX_HOPS):
        reach.setdefault(deployed, []).append(affected)
    result = {}
    for name, version, minute, _bad in world.deploys:
        steps = []
        for target in [name] + reach.get(name, []):
            service = world.services[target]
            steps.append(SliStep(target, "availability", window_burn(service, minute - EVIDENCE_MINUTES, seed),
                                 window_burn(service, minute, seed)))
        result[ids[version]] = steps
    return result


def at(minute: float) -> datetime:
    return (START + timedelta(minutes=minute)).replace(microsecond=0)


def measure(con: Any, truth: set[tuple[str, str]]) -> dict[str, Any]:
    rows = con.execute("SELECT d.version, i.incident_key FROM correlations c JOIN deploys d ON d.id = c.deploy_id "
                       "JOIN incidents i ON i.id = c.incident_id WHERE c.confidence > ?",
                       [BLOCK_ABOVE]).fetchall()
    predicted = {(r[0], r[1]) for r in rows}
    hits = len(predicted & truth)
    precision = hits / len(predicted) if predicted else 0.0
    recall = hits / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"block_pairs": len(predicted), "true_blocks": hits, "precision": round(precision, 3),
            "recall": round(recall, 3), "f1": round(f1, 3)}


def evaluate(seed: int, days: int, count: int) -> dict[str, Any]:
    world = simulate(seed, days, count)
    truth = {(cause, key) for key, _name, _minute, cause in world.incidents if cause is not None}
    with tempfile.TemporaryDirectory() as tmp:
        with connect(os.path.join(tmp, "eval.duckdb")) as con:
            insert_deploys(con, [Deploy(name, version, at(minute), source="bench")
                                 for name, version, minute, _bad in world.deploys])
            insert_incidents(con, [Incident(name, at(minute), "high", key=key, source="bench")
                                   for key, name, minute, _cause in world.incidents])
            ids = {str(v): int(i) for i, v in con.execute("SELECT id, version FROM deploys").fetchall()}
            found = evidence(world, ids, seed)
            results = {}
            for label, hops, metrics in (("deck: time + dependency + history", 1, None),
                                         ("+ blast radius", MAX_HOPS, None),
                                         ("+ metric evidence", 1, found),
                                         ("advanced: all five factors", MAX_HOPS, found)):
                score(con, world.edges, evidence=metrics, max_hops=hops)
                results[label] = measure(con, truth)
    bad = sum(1 for d in world.deploys if d[3])
    return {"seed": seed, "days": days, "services": count, "edges": len(world.edges),
            "deploys": len(world.deploys), "bad_deploys": bad, "incidents": len(world.incidents),
            "caused_incidents": len(truth), "results": results}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"{report['services']} services ({report['edges']} call edges), {report['days']} days, seed "
             f"{report['seed']}: {report['deploys']} deploys ({report['bad_deploys']} bad), {report['incidents']} "
             f"incidents ({report['caused_incidents']} caused by a bad deploy).", "",
             "| score | BLOCK pairs | right | precision | recall | F1 |", "|---|---|---|---|---|---|"]
    for label, r in report["results"].items():
        lines.append(f"| {label} | {r['block_pairs']} | {r['true_blocks']} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {r['f1']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    args = parser.parse_args()
    report = evaluate(args.seed, args.days, args.services)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
