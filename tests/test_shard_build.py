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


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    return _checkout(tmp_path / "work", ROOT / "services")


@pytest.mark.parametrize("value, message", [
    ("0/8", "shard=0/8: the shard must be between 1 and 8 (K/N, e.g. shard=2/8)"),
    ("9/8", "shard=9/8: the shard must be between 1 and 8 (K/N, e.g. shard=2/8)"),
    ("x", "shard=x: must be K/N, the shard K (1 to N) of N, e.g. shard=2/8"),
    ("1/0", "shard=1/0: the number of shards must be at least 1"),
])
def test_an_invalid_shard_is_one_error_line(examples: Path, value: str, message: str) -> None:
    result = _doit(examples, f"shard={value}")
    assert (result.returncode, result.stderr) == (3, f"ERROR: nthlayer: {message}\n")
    assert not (examples / "out").exists()
    env = {**os.environ, "NTHLAYER_CATALOG": str(ROOT / "rules_catalog")}
    cli = subprocess.run([sys.executable, "-m", "nthlayer", "build", "--shard", value], cwd=examples,
                         capture_output=True, text=True, env=env)
    assert cli.returncode == 64
    assert cli.stderr.splitlines()[-1] == "nthlayer build: error: " + message.replace("shard=", "--shard ")
    assert not (examples / "out").exists()


def test_invalid_assembly_inputs_are_one_error_line(examples: Path) -> None:
    assert _doit(examples, "shard_by=color", "shard=1/2").stderr == \
        "ERROR: nthlayer: shard_by=color: must be one of name, team\n"
    assert _doit(examples, "assemble=two").stderr == \
        "ERROR: nthlayer: assemble=two: must be the number of shards, e.g. assemble=8\n"
    assert _doit(examples, "shard=1/2").returncode == 0
    missing = _doit(examples, "assemble=2")
    assert (missing.returncode, missing.stderr) == (3, (
        "ERROR: nthlayer: out/.shards/shard-2-of-2.json: missing: assembling 2 shards needs the fragment of each "
        "(found: shard-1-of-2.json; download every shard stage's out/ first)\n"))
    assert _doit(examples, "shard=2/2", "strict=1").returncode == 0  # another setting than shard 1's
    mismatch = _doit(examples, "assemble=2")
    assert (mismatch.returncode, mismatch.stderr) == (3, (
        "ERROR: nthlayer: out/.shards/shard-2-of-2.json: strict is True but False in this assembly "
        "(or out/.shards/shard-1-of-2.json): every shard must build the same specs with the same settings\n"))
    assert not (examples / "out" / "alertmanager").exists()


def test_shards_by_team_keep_each_team_together_and_share_one_out(examples: Path, tmp_path: Path) -> None:
    """A local loop: three shards by team into one out/ and one state/, then the assembly."""
    full = _checkout(tmp_path / "full", ROOT / "services")
    assert _doit(full).returncode == 0
    teams: dict[str, set[int]] = {}
    for index in (1, 2, 3):
        result = _doit(examples, f"shard={index}/3", "shard_by=team")
        assert result.returncode == 0, result.stdout + result.stderr
        fragment = json.loads((examples / "out" / ".shards" / f"shard-{index}-of-3.json").read_text())
        assert fragment["by"] == "team"
        for row in fragment["entries"]:
            teams.setdefault(row[5][1], set()).add(index)  # its routing's team
    assert all(len(shards) == 1 for shards in teams.values()) and len(teams) > 1
    result = _doit(examples, "assemble=3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _tree(examples / "out") == _tree(full / "out")


def test_a_broken_spec_fails_its_shard_and_the_assembly_keeping_its_routing(examples: Path, tmp_path: Path) -> None:
    """As in a full build: the broken spec's service keeps its last valid routing (from its shard's
    state/spec-index.json), the other files are written, and the run fails with the spec's error line."""
    from nthlayer.buildsys.shards import shard_number

    assert _doit(examples).returncode == 0  # the last valid versions, in state/
    full = tmp_path / "full"
    shutil.copytree(examples, full)
    for work in (examples, full):
        spec = work / "services" / "payment-api.yaml"
        spec.write_text(spec.read_text().replace("tier: 1", "tier: 9"))
    broken = _doit(full)
    assert broken.returncode in (1, 2)  # doit's "a task failed" (nthlayer build: 1)
    line = next(line for line in broken.stderr.splitlines() if line.startswith("services/payment-api.yaml:"))
    home = shard_number("payment-api", 3)
    for index in (1, 2, 3):
        result = _doit(examples, f"shard={index}/3")
        assert (result.returncode != 0) == (index == home), (index, result.stdout + result.stderr)
        assert (line in result.stderr) == (index == home)
    assembled = _doit(examples, "assemble=3")
    assert assembled.returncode in (1, 2)
    assert line in assembled.stderr.splitlines()
    assert "payment-api" in (examples / "out" / "alertmanager" / "alertmanager.yml").read_text()
    tree = _tree(examples / "out")
    fragments = {path for path in tree if path.startswith(".shards/")}
    assert fragments == {f".shards/shard-{index}-of-3.json" for index in (1, 2, 3)}  # kept for the retry
    assert {path: data for path, data in tree.items() if path not in fragments} == _tree(full / "out")


def test_nthlayer_build_runs_the_shards_and_the_assembly(examples: Path, tmp_path: Path) -> None:
    full = _checkout(tmp_path / "full", ROOT / "services")
    assert _doit(full).returncode == 0
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")},
           "NTHLAYER_CATALOG": str(ROOT / "rules_catalog")}

    def build(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nthlayer", "build", *args], cwd=examples, env=env,
                              capture_output=True, text=True, timeout=300)

    for index in (1, 2):
        result = build("--shard", f"{index}/2")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "alertmanager" not in result.stdout
    assert sorted(os.listdir(examples / "out" / ".shards")) == ["shard-1-of-2.json", "shard-2-of-2.json"]
    usage = build("--assemble", "2", "--check")
    assert usage.returncode == 64 and usage.stderr.splitlines()[-1] == (
        "nthlayer build: error: --check judges a whole out/: run it after the assembly, without --shard/--assemble")
    result = build("--assemble", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _tree(examples / "out") == _tree(full / "out")
    assert build("--check").returncode == 0


def test_a_policy_deny_fails_only_its_shard_and_the_assembly(examples: Path, tmp_path: Path) -> None:
    """A shard judges its own specs only (the policies are per spec); a deny there is the full build's."""
    from nthlayer.buildsys.shards import shard_number

    full = _checkout(tmp_path / "full", ROOT / "services")
    for work in (examples, full):
        spec = work / "services" / "payment-api.yaml"
        spec.write_text(spec.read_text().replace("availability: 0.9995", "availability: 0.99"))
    denied = _doit(full)
    assert denied.returncode in (1, 2)
    lines = [line for line in denied.stderr.splitlines() if line.startswith("services/payment-api.yaml:")]
    assert lines == ["services/payment-api.yaml:10:5: policy tier1-objective: SLO availability of tier-1 service "
                     "'payment-api' has objective 0.99, below tier 1's 0.999: a critical service's objectives are at "
                     "least 0.999"], denied.stderr
    home = shard_number("payment-api", 3)
    for index in (1, 2, 3):
        result = _doit(examples, f"shard={index}/3")
        assert (result.returncode != 0) == (index == home), (index, result.stdout + result.stderr)
        assert all((line in result.stderr) == (index == home) for line in lines)
    assembled = _doit(examples, "assemble=3")
    assert assembled.returncode in (1, 2)
    assert all(line in assembled.stderr.splitlines() for line in lines)
    tree = _tree(examples / "out")
    assert {path: data for path, data in tree.items() if not path.startswith(".shards/")} == _tree(full / "out")
