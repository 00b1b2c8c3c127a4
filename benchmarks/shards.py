"""The sharded build at scale: N synthesized services built as K shards, then assembled (docs/build.md).

    python benchmarks/shards.py [--services 10000] [--shards 8] [--plugin FILE] [--full]

Each shard is built as a CI stage would build it: in its own out/ and state/ (nothing cached), every
shard one after another on this machine, each a separate process (wall time and peak RSS). Then the
shards' out/ folders are copied into one (not timed: a CI download) and ``doit assemble=K`` is timed.
With ``--full``, a full build of the same services is timed too and the assembled tree is compared with
it byte for byte. Prints a Markdown table for docs/benchmarks.md's "Where one machine ends".
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, Sample, doit_cmd, machine, measure, synthesize  # noqa: E402 - the benchmark's own helpers


def _tree(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[Sample, float]:
    """run.measure's sample (wall time, peak RSS) and the CPU seconds (user + system) the run took: on a
    loaded machine the wall time is mostly waiting for the cores, the CPU time is the work itself."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sample = measure(argv, cwd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return sample, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--plugin", action="append", default=[])
    parser.add_argument("--full", action="store_true", help="also time a full build and compare the trees")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nthlayer-shards-") as tmp:
        work = Path(tmp)
        synthesize(work / "src", args.services)
        catalog = work / "rules_catalog"
        shutil.copytree(ROOT / "rules_catalog", catalog)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
        env["NTHLAYER_CATALOG"] = str(catalog)
        if args.plugin:
            env["NTHLAYER_PLUGINS"] = os.pathsep.join(os.path.abspath(p) for p in args.plugin)
        final = work / "final"
        shutil.copytree(work / "src", final)
        times = []
        for index in range(1, args.shards + 1):
            stage = work / f"stage{index}"
            shutil.copytree(work / "src", stage)
            sample, cpu = timed(doit_cmd(f"shard={index}/{args.shards}"), stage, env)
            services = sum(1 for p in (stage / "out").iterdir() if p.is_dir() and not p.name.startswith("."))
            files = sum(1 for p in (stage / "out").rglob("*") if p.is_file())
            print(f"shard {index}/{args.shards}: {sample.seconds:.2f} s, {cpu:.2f} s CPU, {sample.peak_rss_mb:.0f} MB, "
                  f"{services} services, {files} files, exit {sample.code}", flush=True)
            rows.append((f"shard {index}/{args.shards} ({services} services, {files} files)", sample, cpu))
            times.append(sample.seconds)
            shutil.copytree(stage / "out", final / "out", dirs_exist_ok=True)  # the final stage's download
            shutil.rmtree(stage)
        assembly, cpu = timed(doit_cmd(f"assemble={args.shards}"), final, env)
        print(f"assembly: {assembly.seconds:.2f} s, {cpu:.2f} s CPU, {assembly.peak_rss_mb:.0f} MB, "
              f"exit {assembly.code}", flush=True)
        rows.append((f"assembly (`doit assemble={args.shards}`)", assembly, cpu))
        equal = None
        if args.full:
            full_dir = work / "full"
            shutil.copytree(work / "src", full_dir)
            full, cpu = timed(doit_cmd(), full_dir, env)
            print(f"full build: {full.seconds:.2f} s, {cpu:.2f} s CPU, {full.peak_rss_mb:.0f} MB, exit {full.code}",
                  flush=True)
            rows.append(("full build, one machine (for comparison)", full, cpu))
            equal = _tree(full_dir / "out") == _tree(final / "out")
    print()
    print(f"{args.services} services in {args.shards} shards; {machine()}")
    print(f"shards: slowest {max(times):.2f} s, median {statistics.median(times):.2f} s, sum {sum(times):.2f} s")
    if equal is not None:
        print(f"assembled tree equals the full build's byte for byte: {equal}")
    print()
    print("| step | wall time | CPU time | peak RSS | exit |")
    print("| --- | --- | --- | --- | --- |")
    for what, sample, cpu in rows:
        print(f"| {what} | {sample.seconds:.2f} s | {cpu:.2f} s | {sample.peak_rss_mb:.0f} MB | {sample.code} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
