"""NthLayer benchmarks: whole-process wall time and peak RSS, written to docs/benchmarks.md.

    python benchmarks/run.py [--sizes 1,100,1000,5000] [--skip-prometheus] [--output docs/benchmarks.md]

For each N it synthesizes N service specs (all tiers and types, realistic technology mixes) in a temp
folder and measures, as separate processes: full `doit` build, no-op rebuild, one service edited (and
checks exactly that service's files changed), one catalog file edited (only dependants rebuilt),
`nthlayer validate`, and doit's own floor (one trivial task per service reading the YAML and writing one
file). Also `nthlayer --help`, track-budget for 1000 SLOs against a real Prometheus with backfilled data
(nthlayer/benchmarks support in benchmarks/budget.py) and correlation of 100k deploys × 10k incidents
(benchmarks/correlation.py).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent

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

FLOOR_DODO = '''
import glob, os
import yaml
DOIT_CONFIG = {"dep_file": "state/floor.db", "backend": "sqlite3", "verbosity": 0}
os.makedirs("state", exist_ok=True)

def _copy(src, dst):
    with open(src) as handle:
        data = yaml.load(handle, Loader=yaml.CSafeLoader)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "w") as handle:
        handle.write(yaml.dump(data, Dumper=yaml.CSafeDumper))

def task_floor():
    for path in sorted(glob.glob("services/*.yaml")):
        name = os.path.basename(path)[:-5]
        target = f"floor-out/{name}/copy.yaml"
        yield {"name": name, "actions": [(_copy, [path, target])], "file_dep": [path], "targets": [target]}
'''


class Sample(NamedTuple):
    seconds: float
    peak_rss_mb: float
    code: int
    stdout: str


def measure(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Sample:
    """Run one process; wall time and its peak RSS (ru_maxrss of the waited-for child)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    stdout = proc.stdout.read() if proc.stdout else ""
    if proc.stderr:
        proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    return Sample(elapsed, usage.ru_maxrss / 1024, code, stdout)


def synthesize(folder: Path, count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    services = folder / "services"
    services.mkdir(parents=True)
    names = [f"svc-{i:05d}" for i in range(count)]
    for index, name in enumerate(names):
        tier = (index % 3) + 1
        kind = TYPES[index % len(TYPES)]
        techs = TECH_MIXES[index % len(TECH_MIXES)]
        lines = [f"service: {name}", f"tier: {tier}", f"team: team-{index % 40:02d}", f"type: {kind}"]
        lines += ["observability:", "  slo_overrides:", f"    availability: {rng.choice(['0.999', '0.995', '0.99'])}",
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
        (services / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    return names


def tree_digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def doit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", ".", *args]


def bench_size(count: int) -> list[tuple[str, Sample, str]]:
    rows: list[tuple[str, Sample, str]] = []
    with tempfile.TemporaryDirectory(prefix=f"nthlayer-bench-{count}-") as tmp:
        work = Path(tmp)
        names = synthesize(work, count)
        catalog = work / "rules_catalog"
        shutil.copytree(ROOT / "rules_catalog", catalog)
        env = {**os.environ, "NTHLAYER_CATALOG": str(catalog)}
        full = measure(doit_cmd(), work, env)
        rows.append(("full doit build", full, "" if full.code == 0 else f"exit {full.code}"))
        noop = measure(doit_cmd(), work, env)
        ran = [l for l in noop.stdout.splitlines() if l.startswith(".  ")]
        rows.append(("no-op rebuild", noop, f"{len(ran)} tasks ran"))
        before = tree_digest(work / "out")
        victim = names[len(names) // 2]
        spec = work / "services" / f"{victim}.yaml"
        spec.write_text(spec.read_text().replace("team: ", "team: edited-", 1))
        edit = measure(doit_cmd(), work, env)
        after = tree_digest(work / "out")
        changed = {p.split("/")[0] for p in after if after.get(p) != before.get(p)}
        verdict = "only that service changed" if changed <= {victim, "alertmanager"} and victim in changed \
            else f"UNEXPECTED: {sorted(changed)[:5]}"
        rows.append(("one service edited", edit, verdict))
        redis = catalog / "redis.yaml"
        if redis.exists():
            redis.write_text(redis.read_text() + "\n# edited\n")
            cat = measure(doit_cmd(), work, env)
            ran = [l for l in cat.stdout.splitlines() if l.startswith(".  ")]
            dependants = sum(1 for i in range(count) if "redis" in TECH_MIXES[i % len(TECH_MIXES)])
            rows.append(("catalog file edited (redis)", cat, f"{len(ran)} tasks ran, {dependants} dependants"))
        validate = measure([sys.executable, "-m", "nthlayer", "validate", "-q", "services"], work, env)
        rows.append(("nthlayer validate", validate, "" if validate.code == 0 else f"exit {validate.code}"))
        (work / "floor_dodo.py").write_text(FLOOR_DODO)
        floor = measure([sys.executable, "-m", "doit", "-f", "floor_dodo.py"], work, env)
        rows.append(("doit floor: full (1 trivial task/service)", floor, ""))
        floor_noop = measure([sys.executable, "-m", "doit", "-f", "floor_dodo.py"], work, env)
        rows.append(("doit floor: no-op", floor_noop, ""))
    return rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000,5000")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--skip-prometheus", action="store_true", help="skip the track-budget benchmark")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    lines = ["# Benchmarks", "", f"Machine: {machine()}.", "",
             "Each figure is one whole process (wall time, peak RSS of that process), measured by "
             "`python benchmarks/run.py`.", ""]
    lines += ["| N services | what | wall s | peak RSS MB | note |", "|---:|---|---:|---:|---|"]
    for count in sizes:
        for what, sample, note in bench_size(count):
            lines.append(f"| {count} | {what} | {sample.seconds:.2f} | {sample.peak_rss_mb:.0f} | {note} |")
            print(lines[-1], flush=True)
    help_sample = min((measure([sys.executable, "-m", "nthlayer", "--help"], ROOT) for _ in range(5)),
                      key=lambda s: s.seconds)
    lines.append(f"| – | nthlayer --help (best of 5) | {help_sample.seconds:.3f} | {help_sample.peak_rss_mb:.0f} | |")
    print(lines[-1])
    for script in ("budget.py", "correlation.py"):
        if script == "budget.py" and args.skip_prometheus:
            continue
        path = ROOT / "benchmarks" / script
        if path.exists():
            result = subprocess.run([sys.executable, str(path), "--markdown-row"], capture_output=True, text=True,
                                    cwd=ROOT, timeout=1800)
            row = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else f"| – | {script} | failed | | |"
            lines.append(row)
            print(row)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
