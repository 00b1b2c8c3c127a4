"""NthLayer benchmarks: whole-process wall time and peak RSS, written to docs/benchmarks.md.

    python benchmarks/run.py [--sizes 1,100,1000,5000] [--rows noop,edit,...] [--repeat N] [--full-repeat N]
                             [--plugin FILE] [--skip-prometheus] [--no-others] [--output docs/benchmarks.md]

For each N it synthesizes N service specs (benchmarks/synth.py: all tiers and types, realistic technology
mixes, Datadog blocks and composites: every artifact kind in use) in a temp folder and measures, as separate
processes: full `doit` builds, each beside its two references (benchmarks/floors.py: doit's floor and the
I/O floor, and their sum), no-op rebuild (beside doit's no-op floor), one service edited (and checks exactly
that service's files changed), one catalog file edited (only dependants rebuilt), a project policy added and
edited, `nthlayer validate`. Also `nthlayer --help`, track-budget for 1000 SLOs against a real Prometheus
with backfilled data (benchmarks/budget.py) and correlation of 100k deploys × 10k incidents
(benchmarks/correlation.py). Above 1000 services, fewer runs (--repeat and --full-repeat say how many) and
fewer measurements (--big-rows): `--sizes 1000,10000` is practical.
"""
from __future__ import annotations

import argparse
import compileall
import contextlib
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

ROOT = Path(__file__).resolve().parent.parent

from floors import FLOOR_DODO  # noqa: E402 - benchmarks/ is this script's folder
from synth import TECH_MIXES, synthesize  # noqa: E402,F401 - tests import synthesize from here


class Sample(NamedTuple):
    seconds: float
    peak_rss_mb: float
    code: int
    stdout: str


GNU_TIME = shutil.which("time") if Path("/usr/bin/time").exists() else None


def measure(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Sample:
    """Run one process; wall time and its peak RSS.

    The peak comes from GNU time's %M when installed: ru_maxrss of a child forked from this (growing)
    process can include pages of ours from before its exec. Output goes to temporary files, not pipes:
    nobody reads a pipe while we wait, and a build's task list outgrows a pipe's buffer.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".rss") as rss:
        wrapped = ["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv] if GNU_TIME else argv
        os.sync()  # the previous step's writes are flushed on its account, not on this one's
        time.sleep(0.5)
        started = time.perf_counter()
        proc = subprocess.Popen(wrapped, cwd=cwd, env=env, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak_kb = usage.ru_maxrss
        if GNU_TIME:
            reported = Path(rss.name).read_text().split()
            peak_kb = int(reported[-1]) if reported and reported[-1].isdigit() else peak_kb
        out.seek(0)
        stdout = out.read().decode("utf-8", "replace")
    return Sample(elapsed, peak_kb / 1024, proc.returncode, stdout)


def tree_digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


# The VM's speed drifts by tens of percent from minute to minute: each figure is the best of several
# runs with their median beside it, and each full build alternates with doit's floor and the I/O floor so
# that all three meet the same minutes (a slow-disk minute shows in the build and in its floors alike).
REPEAT = 5  # incremental runs are short
FULL_REPEAT = 3  # full builds
BIG = 1000  # above this many services: fewer runs of each (REPEAT_BIG, FULL_REPEAT_BIG)
REPEAT_BIG, FULL_REPEAT_BIG = 3, 2
SHM = Path("/dev/shm")
ROWS = ("single", "tmpfs", "noop", "edit", "catalog", "policy", "validate")  # --rows (the full build always runs)


def doit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", ".", *args]


# Targets on this 2-core machine. Issue 8's at 1000 services (seconds; full build ≤ 100 MB); issue 22's at
# 10,000 with every artifact kind on: full build ≤ 1.5× (doit floor + I/O floor), no-op ≤ 1.2× doit's
# no-op floor, one spec edited ≤ 1 s, peak RSS of the full build ≤ 300 MB, validate ≤ 3 s.
TARGETS: dict[int, dict[str, tuple[float, str]]] = {
    1000: {"full doit build": (3.0, "s"), "no-op rebuild": (0.5, "s"), "one service edited": (0.6, "s")},
    10000: {"full doit build": (1.5, "× floors"), "no-op rebuild": (1.2, "× floor"),
            "one service edited": (1.0, "s"), "nthlayer validate (all specs)": (3.0, "s")},
}
RSS_TARGETS = {1000: 100, 10000: 300}


class Row(NamedTuple):
    """One line of the table: the runs of one measurement (best and median of them), its ratio to its
    reference (best to best, median to median), and what else was checked."""

    what: str
    samples: list[Sample]
    ratio: str = ""
    note: str = ""


def ran_tasks(stdout: str) -> list[str]:
    """Tasks doit executed (its ".  name" lines)."""
    return sorted(line[3:].strip() for line in stdout.splitlines() if line.startswith(".  "))


def best_of(samples: list[Sample]) -> Sample:
    return min(samples, key=lambda sample: sample.seconds)


def median(samples: list[Sample]) -> float:
    return statistics.median(sample.seconds for sample in samples)


def ratio(samples: list[Sample], base: list[Sample], name: str) -> str:
    """"1.4× / 1.6× floors": best to best, median to median."""
    if len(samples) == 1 and len(base) == 1:
        return f"{samples[0].seconds / base[0].seconds:.2f}× {name}"
    return f"{best_of(samples).seconds / best_of(base).seconds:.2f}× / {median(samples) / median(base):.2f}× {name}"


def verdict(what: str, count: int, samples: list[Sample], base: list[Sample] | None = None) -> str:
    """Met or MISSED, by the best run (and, against a reference, the best ratio)."""
    target = TARGETS.get(count, {}).get(what)
    rss_target = RSS_TARGETS.get(count) if what == "full doit build" else None
    if target is None and rss_target is None:
        return ""
    best = best_of(samples)
    wanted, misses = [], []
    if target is not None:
        limit, unit = target
        value = best.seconds if unit == "s" or not base else best.seconds / best_of(base).seconds
        wanted.append(f"≤ {limit:g} {unit}".replace(" ×", "×"))
        if value > limit:
            misses.append(wanted[-1])
    if rss_target is not None:
        wanted.append(f"≤ {rss_target} MB")
        if max(sample.peak_rss_mb for sample in samples) > rss_target:
            misses.append(wanted[-1])
    return f"target {', '.join(wanted)}: " + ("MISSED (" + ", ".join(misses) + ")" if misses else "met")


def set_aside(work: Path, *names: str) -> None:
    """Move a previous build's folders out of the way, to be deleted with the workspace after the
    measurements. Deleting 9000 files just before a measured build made it pay for the deletion: on a
    filesystem mounted with online discard (this machine's), freed blocks are trimmed at the next journal
    commits, and the build's own file creations waited behind them (10 s instead of 4 s at N = 1000)."""
    trash = work / "trash"
    trash.mkdir(exist_ok=True)
    for name in names:
        if (work / name).exists():
            (work / name).rename(trash / f"{name}-{len(list(trash.iterdir()))}")


def io_floor(work: Path, attempt: int) -> Sample:
    """The I/O floor (benchmarks/floors.py): out/ written again from memory into a fresh folder; its
    seconds are the timed write alone (the process' start and its reading of the tree are not counted)."""
    sample = measure([sys.executable, str(ROOT / "benchmarks" / "floors.py"), "out", f"io-floor-{attempt}"], work)
    if sample.code != 0:
        return sample
    figures = json.loads(sample.stdout)
    set_aside(work, f"io-floor-{attempt}")
    return sample._replace(seconds=figures["seconds"])


def summed(first: list[Sample], second: list[Sample]) -> list[Sample]:
    """Run by run, the two floors added up (the pairs measured in the same minutes)."""
    return [Sample(a.seconds + b.seconds, max(a.peak_rss_mb, b.peak_rss_mb), a.code or b.code, "")
            for a, b in zip(first, second)]


def full_builds(work: Path, env: dict[str, str], count: int, repeat: int) -> list[Row]:
    """Full builds from scratch, each followed by doit's floor and the I/O floor of the tree it wrote."""
    floor_cmd = [sys.executable, "-m", "doit", "-f", "floor_dodo.py"]
    fulls, floors, ios = [], [], []
    for attempt in range(repeat):
        if attempt:
            set_aside(work, "out", "state", "floor-state")
        fulls.append(measure(doit_cmd(), work, env))
        floors.append(measure(floor_cmd, work, env))
        ios.append(io_floor(work, attempt))
    sums = summed(floors, ios)
    files = sum(1 for p in (work / "out").rglob("*") if p.is_file())
    failed = "; ".join(f"EXIT {s.code}" for s in fulls + floors + ios if s.code)
    return [Row("full doit build", fulls, ratio(fulls, sums, "floors"),
                "; ".join(filter(None, [failed, f"{files} files", "2 worker processes",
                                        verdict("full doit build", count, fulls, sums)]))),
            Row("doit floor: full (1 trivial task/service)", floors, ratio(floors, sums, "floors")),
            Row("I/O floor: out/ written from memory (temp + rename)", ios, ratio(ios, sums, "floors"),
                f"{files} files"),
            Row("doit floor + I/O floor", sums, "1×")]


LEFT: list[str] = []  # the workspaces measured, deleted once their rows are printed


@contextlib.contextmanager
def workspace(count: int) -> Iterator[str]:
    """A temporary folder for one size, deleted by :func:`main` after its rows are out: deleting the
    builds set aside at 10,000 services (hundreds of thousands of files, trimmed one by one on this
    disk) takes minutes."""
    folder = tempfile.mkdtemp(prefix=f"nthlayer-bench-{count}-")
    LEFT.append(folder)
    yield folder


def bench_size(count: int, rows_wanted: set[str]) -> list[Row]:
    rows: list[Row] = []
    big = count > BIG
    repeat, repeat_full = (REPEAT_BIG, FULL_REPEAT_BIG) if big else (REPEAT, FULL_REPEAT)
    with workspace(count) as tmp:
        work = Path(tmp)
        names = synthesize(work, count, extras=True)
        catalog = work / "rules_catalog"
        shutil.copytree(ROOT / "rules_catalog", catalog)
        env = {**os.environ, "NTHLAYER_CATALOG": str(catalog)}
        if PLUGINS:  # --plugin: every measured build loads them (as `nthlayer build --plugin` does)
            env["NTHLAYER_PLUGINS"] = os.pathsep.join(PLUGINS)
        (work / "floor_dodo.py").write_text(FLOOR_DODO)

        def note(*extra: str, sample: Sample | None = None) -> str:
            parts = [] if sample is None or sample.code == 0 else [f"EXIT {sample.code}"]
            return "; ".join(p for p in [*parts, *extra] if p)

        if "single" in rows_wanted:  # the same build in one process
            single = measure(doit_cmd("-n", "0"), work, env)
            set_aside(work, "out", "state")
            rows.append(Row("full doit build, one process (-n 0)", [single], "", note(sample=single)))
        if "tmpfs" in rows_wanted and SHM.is_dir():  # the same again with out/ in memory: what the disk adds
            with tempfile.TemporaryDirectory(prefix="nthlayer-bench-out-", dir=SHM) as shm:
                memory = measure(doit_cmd(f"out={shm}/out", f"state={shm}/state"), work, env)
            rows.append(Row("full doit build, out/ on tmpfs", [memory], "", note(sample=memory)))
        rows = full_builds(work, env, count, repeat_full) + rows
        before = tree_digest(work / "out")
        if "noop" in rows_wanted:
            noops, floor_noops = [], []
            floor_cmd = [sys.executable, "-m", "doit", "-f", "floor_dodo.py"]
            for _ in range(repeat):
                noops.append(measure(doit_cmd(), work, env))
                floor_noops.append(measure(floor_cmd, work, env))
            same = tree_digest(work / "out") == before and all(not ran_tasks(n.stdout) for n in noops)
            rows.append(Row("no-op rebuild", noops, ratio(noops, floor_noops, "doit no-op floor"),
                            note(f"{len(ran_tasks(best_of(noops).stdout))} tasks ran",
                                 "no file changed" if same else "UNEXPECTED: files changed",
                                 verdict("no-op rebuild", count, noops, floor_noops), sample=best_of(noops))))
            rows.append(Row("doit floor: no-op", floor_noops))
        if "edit" in rows_wanted:
            rows.append(edit_row(work, env, names, before, count, repeat, note))
        if "catalog" in rows_wanted:
            rows.append(catalog_row(work, env, names, count, note))
        if "policy" in rows_wanted:
            rows += policy_rows(work, env, names, note, repeat)
        if "validate" in rows_wanted:
            rows += validate_rows(work, env, count, repeat if big else 2, note)
        if count == TARGET_N and PROFILE:
            PROFILES.append(profile_build(work, env))
    return rows


TARGET_N = 1000  # the size profiled (unless --no-profile)


def validate_rows(work: Path, env: dict[str, str], count: int, repeat: int, note: Any) -> list[Row]:
    """`nthlayer validate` of every spec: without a state folder (nothing cached: a fresh clone), then
    with the build's, where its first run fills state/validate-cache.json and the next ones read it
    (docs/validate.md)."""
    argv = [sys.executable, "-m", "nthlayer", "validate", "-q", "services"]
    fresh = {**env, "NTHLAYER_STATE_DIR": str(work / "no-state-folder")}
    colds = [measure(argv, work, fresh) for _ in range(max(1, repeat - 1))]
    (work / "state" / "validate-cache.json").unlink(missing_ok=True)
    filling = measure(argv, work, env)
    warms = [measure(argv, work, env) for _ in range(repeat)]
    what = "nthlayer validate (all specs)"
    return [Row(f"{what}, nothing cached", colds, "", note(verdict(what, count, colds), sample=best_of(colds))),
            Row(f"{what}, filling state/validate-cache.json", [filling], "", note(sample=filling)),
            Row(f"{what}, cache read", warms, "", note(verdict(what, count, warms), sample=best_of(warms)))]


def edit_row(work: Path, env: dict[str, str], names: list[str], before: dict[str, str], count: int,
             repeat: int, note: Any) -> Row:
    """One service's spec edited (its team: a routing fact), again and again: only its files and the
    shared files it feeds may change."""
    edits = []
    checks = set()
    for attempt in range(repeat):
        victim = names[(len(names) // 2 + attempt) % len(names)]
        spec = work / "services" / f"{victim}.yaml"
        spec.write_text(spec.read_text().replace("team: ", "team: edited-", 1))
        edits.append(measure(doit_cmd(), work, env))
        after = tree_digest(work / "out")
        changed = {p.split("/")[0] for p in after if after.get(p) != before.get(p)}
        ran = ran_tasks(edits[-1].stdout)
        checks.add("only that service's files changed; its task and alertmanager (team is a routing fact) ran"
                   if victim in changed and changed <= {victim, "alertmanager"}
                   and ran == ["alertmanager", f"service:{victim}"]
                   else f"UNEXPECTED: {sorted(changed)[:5]}, ran {ran[:5]}")
        before = after
    return Row("one service edited", edits, "", note(*sorted(checks), verdict("one service edited", count, edits),
                                                     sample=best_of(edits)))


def catalog_row(work: Path, env: dict[str, str], names: list[str], count: int, note: Any) -> Row:
    """A catalog file edited: exactly the services that use it regenerate the kinds that read the catalog."""
    redis = work / "rules_catalog" / "redis.yaml"
    redis.write_text(redis.read_text() + "\n# edited\n")
    cat = measure(doit_cmd(), work, env)
    from nthlayer.buildsys.kinds import SERVICE_KINDS

    # The kinds that read the catalog: the alerts, the dashboards' dependency rows, the PrometheusRule.
    readers = ", ".join(kind.name for kind in SERVICE_KINDS if kind.reads_catalog)
    dependants = sorted(f"service:{names[i]} ({readers})" for i in range(count)
                        if "redis" in TECH_MIXES[i % len(TECH_MIXES)])
    ran = ran_tasks(cat.stdout)
    check = f"exactly the {len(dependants)} dependants' {readers} were regenerated" if ran == dependants \
        else f"UNEXPECTED: {len(ran)} tasks ran, {len(dependants)} dependants"
    return Row("catalog file edited (redis)", [cat], "", note(check, sample=cat))


BENCH_POLICY = """package nthlayer.policies.bench

import rego.v1

warn contains {"id": "bench", "msg": "under review", "pointer": "/service"} if {
	input.service == "%s"
}
"""


def policy_rows(work: Path, env: dict[str, str], names: list[str], note: Any, repeat: int) -> list[Row]:
    """A project policy added, then edited: every spec is re-checked, only the services whose verdict
    changed run (docs/policies.md)."""
    rows = []
    (work / "policies").mkdir(exist_ok=True)
    (work / "nthlayer.toml").write_text('[policy]\npaths = ["policies"]\n')
    first, second = names[len(names) // 3], names[2 * len(names) // 3]
    for what, victim, expected in (("project policy added (every spec re-checked)", first, [first]),
                                   ("project policy edited (every spec re-checked)", second, [first, second])):
        (work / "policies" / "bench.rego").write_text(BENCH_POLICY % victim)
        sample = measure(doit_cmd(), work, env)
        ran = ran_tasks(sample.stdout)
        check = (f"only the {len(expected)} services whose verdict changed ran" if ran == [f"service:{n}" for n in expected]
                 else f"UNEXPECTED: ran {ran[:5]}")
        rows.append(Row(what, [sample], "", note(check, sample=sample)))
    noops = [measure(doit_cmd(), work, env) for _ in range(repeat)]
    rows.append(Row("no-op rebuild with a project policy", noops, "",
                    note(f"{len(ran_tasks(best_of(noops).stdout))} tasks ran", sample=best_of(noops))))
    return rows


PROFILE = True
PROFILES: list[str] = []
PLUGINS: list[str] = []  # plugin files every measured build loads (--plugin)


def profile_build(work: Path, env: dict[str, str]) -> str:
    """The full build again from scratch under cProfile: its top functions by own time."""
    set_aside(work, "out", "state")
    stats = work / "build.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(stats), "-m", "doit", "-f", str(ROOT / "dodo.py"),
                    "-d", ".", "-n", "0"], cwd=work, env=env, capture_output=True, check=False)
    script = ("import pstats, sys; s = pstats.Stats(sys.argv[1]); s.sort_stats('tottime'); "
              "s.print_stats(15)")
    text = subprocess.run([sys.executable, "-c", script, str(stats)], capture_output=True, text=True).stdout
    lines = [line.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "") for line in text.splitlines()
             if line.strip() and not line.startswith(("   Ordered", "   List reduced"))]
    return "\n".join(line for line in lines if not line.lstrip().startswith(str(work)))


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


ANALYSIS = "## Analysis"


def main() -> int:
    global PROFILE, REPEAT, FULL_REPEAT, REPEAT_BIG, FULL_REPEAT_BIG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--sizes", default="1,100,1000,5000")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--skip-prometheus", action="store_true", help="skip the track-budget benchmark")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled build at N = 1000")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="a plugin file every measured build loads (repeatable), e.g. "
                             "examples/plugins/sloth.py: the targets with a plugin active")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help="which measurements beside the full builds and their floors (comma-separated, "
                             f"default all: {','.join(ROWS)}); e.g. --sizes 10000 --rows noop,edit,validate")
    parser.add_argument("--big-rows", default="noop,edit,validate",
                        help=f"the same for the sizes above {BIG} services (default noop,edit,validate: a single-"
                             "process build, a catalog edit and policy edits of 10,000 services take minutes)")
    parser.add_argument("--repeat", type=int, help="runs of each incremental figure (default 5, 3 above 1000 "
                                                   "services)")
    parser.add_argument("--full-repeat", type=int, help="full builds, each with its two floors (default 3, 2 above "
                                                        "1000 services)")
    parser.add_argument("--no-others", action="store_true", help="skip --help, track-budget and correlation")
    args = parser.parse_args()
    wanted = {row for row in args.rows.split(",") if row}
    wanted_big = {row for row in args.big_rows.split(",") if row}
    for option, rows_given in (("--rows", wanted), ("--big-rows", wanted_big)):
        if rows_given - set(ROWS):
            parser.error(f"{option}: unknown {', '.join(sorted(rows_given - set(ROWS)))} (known: {', '.join(ROWS)})")
    if args.repeat:
        REPEAT = REPEAT_BIG = args.repeat
    if args.full_repeat:
        FULL_REPEAT = FULL_REPEAT_BIG = args.full_repeat
    PROFILE = not args.no_profile
    PLUGINS[:] = [os.path.abspath(path) for path in args.plugin]
    sizes = [int(s) for s in args.sizes.split(",")]
    # Measured processes import nthlayer as an installed copy would: from bytecode. (Sandboxes often set
    # PYTHONDONTWRITEBYTECODE; then every process would compile the project's modules again.)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    compileall.compile_dir(str(ROOT / "generators"), quiet=1)
    compileall.compile_dir(str(ROOT / "nthlayer"), quiet=1)
    load_before = os.getloadavg()[0]
    rows = ["| N services | what | best s | median s | ratio (best / median) | peak RSS MB | runs | note |",
            "|---:|---|---:|---:|---|---:|---:|---|"]
    for count in sizes:
        for row in bench_size(count, wanted_big if count > BIG else wanted):
            rss = max(sample.peak_rss_mb for sample in row.samples)
            rows.append(f"| {count} | {row.what} | {best_of(row.samples).seconds:.2f} | {median(row.samples):.2f} | "
                        f"{row.ratio} | {rss:.0f} | {len(row.samples)} | {row.note} |")
            print(rows[-1], flush=True)
        while LEFT:
            shutil.rmtree(LEFT.pop(), ignore_errors=True)
    others = ["| N | what | wall s | peak RSS MB | note |", "|---:|---|---:|---:|---|"]
    if not args.no_others:
        others += other_rows(args.skip_prometheus)
    lines = ["# Benchmarks", "",
             "Generated by `python benchmarks/run.py` (the text from “Analysis” on is kept between runs).", "",
             f"Machine: {machine()}. Load average {load_before:.2f} before the run, "
             f"{os.getloadavg()[0]:.2f} after (other work on the machine slows every figure).", "",
             *EXPLAINED,
             *(["", "Plugins active: " + ", ".join(os.path.relpath(p, ROOT) for p in PLUGINS) + "."] if PLUGINS else []),
             "", *rows, *(["", *others] if len(others) > 2 else [])]
    if PROFILES:
        lines += ["", "### Profile: full build of 1000 services (cProfile, top functions by own time)", "",
                  "```", *PROFILES, "```"]
    output = Path(args.output)
    kept = ""
    if output.exists():
        previous = output.read_text(encoding="utf-8")
        if ANALYSIS in previous:
            kept = previous[previous.index(ANALYSIS):]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n" + ("\n" + kept if kept else ""), encoding="utf-8")
    print(f"wrote {output}")
    return 0


EXPLAINED = [
    "Each figure is one whole process: wall time, and peak RSS of that process (GNU time's %M, else "
    "`os.wait4` ru_maxrss); best and median of the runs. Specs are synthesized (benchmarks/synth.py): N "
    "services over all tiers and types, 40 teams, half with an upstream, 0–3 technologies each from realistic "
    "mixes, a `datadog` block on every tenth and up to five composite SLOs over the first services: every "
    "artifact kind in use.",
    "",
    "Each full build is followed, in the same minutes, by its two references (benchmarks/floors.py): "
    "**doit's floor**, one task per spec that does nothing, under our build's doit settings (the "
    "`nthlayer-json` dependency file, the shared MD5 checker, two forked workers with the prefetching runner, "
    "our reporter): starting doit, loading N tasks, hashing N specs, dispatching, saving the dependency "
    "file; and the **I/O floor**, the very out/ tree that build wrote (same paths and bytes) written from "
    "memory into a fresh folder, folders made once, a temporary file and a rename per file (the timed "
    "write alone). A full build's ratio is to their sum, run by run; a no-op's to doit's no-op floor.",
]


def other_rows(skip_prometheus: bool) -> list[str]:
    """``nthlayer --help``, track-budget against a real Prometheus, correlation in DuckDB."""
    rows = []
    help_sample = min((measure([sys.executable, "-m", "nthlayer", "--help"], ROOT) for _ in range(5)),
                      key=lambda s: s.seconds)
    met = "met" if help_sample.seconds <= 0.15 else "MISSED"
    rows.append(f"| – | nthlayer --help (best of 5) | {help_sample.seconds:.3f} | {help_sample.peak_rss_mb:.0f} | "
                f"target ≤ 0.15 s: {met} |")
    print(rows[-1])
    for script in ("budget.py", "correlation.py"):
        if script == "budget.py" and skip_prometheus:
            continue
        result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--markdown-row"],
                                capture_output=True, text=True, cwd=ROOT, timeout=3600)
        out = result.stdout.strip().splitlines()
        rows.append(out[-1] if result.returncode == 0 and out else
                    f"| – | {script} | failed | | exit {result.returncode}: {result.stderr.strip()[-200:]} |")
        print(rows[-1])
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
