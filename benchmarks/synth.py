"""Synthesized service specs for the benchmarks (benchmarks/run.py) and the tests that build many services.

N services over all tiers and types, 40 teams, half with an upstream, 0–3 technologies each from
realistic mixes, every one paging someone; with ``extras``, every artifact kind in use as well: a
``datadog`` block on every tenth spec and a few composite SLOs (services/composites/) over the first
services.
"""
from __future__ import annotations

import random
from pathlib import Path

TECH_MIXES = [
    ["postgres", "redis"],
    ["mysql", "memcached", "haproxy"],
    ["kafka", "postgres", "jvm"],
    ["elasticsearch", "go-runtime"],
    ["rabbitmq", "mongodb", "nodejs"],
    ["nginx", "redis", "nodejs"],
    ["clickhouse", "minio"],
    ["kafka", "cassandra"],
    ["envoy", "tls-certificates", "kubernetes"],
    [],
]
TYPES = ["api", "web", "grpc", "worker", "stream", "batch"]
DATADOG_EVERY = 10  # with extras: every tenth spec mirrors its availability SLO into Datadog
COMPOSITE_SIZE = 3  # with extras: components per composite SLO


def composite_count(count: int) -> int:
    """How many composite SLOs ``synthesize(..., extras=True)`` writes for ``count`` services."""
    return min(5, count // (2 * COMPOSITE_SIZE))


def synthesize(folder: Path, count: int, seed: int = 7, extras: bool = False) -> list[str]:
    """Write ``count`` specs under ``folder/services`` (and, with ``extras``, composites); their names."""
    rng = random.Random(seed)
    services = folder / "services"
    services.mkdir(parents=True)
    names = [f"svc-{i:05d}" for i in range(count)]
    for index, name in enumerate(names):
        tier = (index % 3) + 1
        kind = TYPES[index % len(TYPES)]
        techs = TECH_MIXES[index % len(TECH_MIXES)]
        lines = [f"service: {name}", f"tier: {tier}", f"team: team-{index % 40:02d}", f"type: {kind}"]
        # Objectives that pass the default policies (docs/policies.md): tier 1 at 0.999 or better, with a runbook.
        objectives = ['0.9995', '0.999'] if tier == 1 else ['0.999', '0.995', '0.99'][:tier]
        if tier == 1:
            lines.append(f"runbook_url: https://runbooks.example.com/{name}")
        lines += ["observability:", "  slo_overrides:", f"    availability: {rng.choice(objectives)}",
                  "    latency: 500" if tier < 3 else "    latency: 2500"]
        deps = []
        if index > 0 and rng.random() < 0.5:
            deps.append(f"  upstream: [{names[rng.randrange(index)]}]")
        if techs:
            deps.append("  technologies:")
            for tech in techs:
                deps += [f"    - type: {tech}", f"      name: {name}-{tech}", f"      selector: {{service_instance: {name}}}"]
        if deps:
            lines += ["dependencies:", *deps]
        lines += ["pagerduty:", f"  escalation_emails: [oncall-{index % 40:02d}@example.com]"]  # pages reach someone
        if extras and index % DATADOG_EVERY == DATADOG_EVERY - 1:
            hits = f"sum:trace.http.request.hits{{service:{name}}}.as_count()"
            errors = f"sum:trace.http.request.errors{{service:{name}}}.as_count()"
            lines += ["datadog:", "  tags: {env: prod}", "  slos:", "    availability:",
                      f'      good: "{hits} - {errors}"', f'      total: "{hits}"']
        (services / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    if extras:
        _composites(folder, names, composite_count(count))
    return names


def _composites(folder: Path, names: list[str], count: int) -> None:
    """Composite SLOs over the first services (a journey of three, the first weighted double)."""
    if not count:
        return
    composites = folder / "services" / "composites"
    composites.mkdir()
    for number in range(count):
        members = names[number * COMPOSITE_SIZE:(number + 1) * COMPOSITE_SIZE]
        lines = [f"name: journey-{number}", f"team: team-{(number * COMPOSITE_SIZE) % 40:02d}",
                 "objective: 0.99", "window: 30d", "components:"]
        for position, member in enumerate(members):
            lines += [f"  - service: {member}", "    slo: availability"] + (["    weight: 2"] if not position else [])
        lines += ["alerting:", f"  route_via: {members[0]}"]
        (composites / f"journey-{number}.yaml").write_text("\n".join(lines) + "\n")


