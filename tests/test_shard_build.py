"""Sharded builds (docs/build.md "Sharded builds"): ``doit shard=K/N`` in separate checkouts, then
``doit assemble=N`` over the union of their out/ folders, equals one full build byte for byte."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_doit_build import _doit

SHARDS = 8
PLUGINS = os.pathsep.join(str(ROOT / "examples" / "plugins" / name) for name in ("sloth.py",))
# A composite whose components fall in several shards (and the example's checkout journey besides).
SPREAD_COMPOSITE = """\
name: fleet
team: platform
description: The synthesized fleet answers
objective: 0.99
window: 30d
components:
  - service: svc-00001
    slo: availability
  - service: svc-00012
    slo: availability
  - service: svc-00023
    slo: latency
alerting:
  route_via: svc-00001
"""


def _tree(out: Path) -> dict[str, bytes]:
    return {str(path.relative_to(out)): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}


def _checkout(root: Path, services: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copytree(services, root / "services")
    return root


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _doit(cwd, *args, env={"NTHLAYER_PLUGINS": PLUGINS})


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example services and composite, 40 synthesized services and a composite spanning shards."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from run import synthesize
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    base = tmp_path_factory.mktemp("fleet")
    synthesize(base / "synth", 40)
    services = base / "services"
    shutil.copytree(ROOT / "services", services)
    for spec in (base / "synth" / "services").glob("*.yaml"):
        shutil.copy(spec, services / spec.name)
    (services / "composites" / "fleet.yaml").write_text(SPREAD_COMPOSITE)
    return services


@pytest.fixture(scope="module")
def full_build(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    work = _checkout(tmp_path_factory.mktemp("full") / "work", fleet)
    result = _run(work)
    assert result.returncode == 0, result.stdout + result.stderr
    return _tree(work / "out")


@pytest.fixture(scope="module")
def shard_outs(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Each shard built in a checkout of its own (a CI stage each), its out/ as it would be uploaded."""
    outs = []
    for index in range(1, SHARDS + 1):
        work = _checkout(tmp_path_factory.mktemp(f"shard{index}") / "work", fleet)
        result = _run(work, f"shard={index}/{SHARDS}")
        assert result.returncode == 0, result.stdout + result.stderr
        outs.append(work / "out")
    return outs


def test_union_of_shards_and_assembly_equals_full_build(fleet: Path, full_build: dict[str, bytes],
                                                         shard_outs: list[Path], tmp_path: Path) -> None:
    names = {path.stem for path in fleet.glob("*.yaml")}
    assert len(names) == 50
    seen: dict[str, int] = {}
    union: dict[str, bytes] = {}
    for index, out in enumerate(shard_outs, start=1):
        tree = _tree(out)
        # A shard's out/ holds its services' folders and its fragment: no shared file.
        folders = {path.split("/", 1)[0] for path in tree if not path.startswith(".shards/")}
        assert folders and folders <= names, (index, folders - names)
        assert [path for path in tree if path.startswith(".shards/")] == [f".shards/shard-{index}-of-{SHARDS}.json"]
        for folder in folders:
            assert folder not in seen, f"{folder} in shards {seen[folder]} and {index}"
            seen[folder] = index
        assert not union.keys() & tree.keys() - {f".shards/shard-{index}-of-{SHARDS}.json"}
        union.update(tree)
    assert set(seen) == names  # every service in exactly one shard, no shard empty (asserted above)

    # The final stage: every shard's out/ downloaded into one, in a checkout of its own.
    work = _checkout(tmp_path / "assembly", fleet)
    for out in shard_outs:
        shutil.copytree(out, work / "out", dirs_exist_ok=True)
    result = _run(work, f"assemble={SHARDS}")
    assert result.returncode == 0, result.stdout + result.stderr
    ran = sorted(line[3:] for line in result.stdout.splitlines() if line.startswith(".  "))
    assert ran == ["alertmanager", "assemble", "composite:checkout", "composite:fleet", "correlate",
                   "grafana-overview", "k8s", "prune", "report"]  # no service task: none regenerated
    assembled = _tree(work / "out")
    assert not (work / "out" / ".shards").exists()  # the fragments are removed from the final tree
    assert assembled.keys() == full_build.keys()
    assert [path for path in full_build if assembled[path] != full_build[path]] == []
    # The union of the shards' service files is the final tree's, untouched by the assembly.
    assert {path: data for path, data in union.items() if not path.startswith(".shards/")}.items() <= assembled.items()


def test_assignment_is_stable_across_runs_and_hash_seeds(shard_outs: list[Path]) -> None:
    from nthlayer.buildsys.shards import shard_number

    # Pinned: a change of the hash moves every service of every monorepo to another CI stage.
    assert [shard_number(name, 8) for name in ("payment-api", "user-service", "svc-00000", "team-07")] == \
        PINNED
    code = ("from nthlayer.buildsys.shards import shard_number; "
            "print([shard_number(f'svc-{i:05d}', 8) for i in range(40)])")
    answers = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True).stdout for seed in ("0", "1", "4242")}
    assert len(answers) == 1
    in_folders = {name: index for index, out in enumerate(shard_outs, start=1)
                  for name in os.listdir(out) if name.startswith("svc-")}
    assert [in_folders[f"svc-{i:05d}"] for i in range(40)] == json.loads(answers.pop())


PINNED = [6, 5, 3, 6]
