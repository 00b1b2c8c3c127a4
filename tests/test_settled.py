"""The settled-service fast path (nthlayer/buildsys/settled.py): a plain ``doit`` run leaves out the
service tasks its checks find up to date. Each edit below is made to two copies of one built project;
one is rebuilt with the fast path, the other without it (NTHLAYER_FAST_PATH=0): the same tasks must run
and the same files must be written."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.test_doit_build import ROOT, _doit, _ran

ENV = {"NTHLAYER_CATALOG": "catalog"}  # relative: a copy of the project is a project of its own


def _tree(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("settled") / "project"
    shutil.copytree(ROOT / "services", project / "services")
    shutil.copytree(ROOT / "rules_catalog", project / "catalog")
    first = _doit(project, env=ENV)
    assert first.returncode == 0, first.stdout + first.stderr
    second = _doit(project, env=ENV)  # validates nothing: it keeps the plan (state/plan.pickle)
    assert second.returncode == 0 and _ran(second) == [], second.stdout + second.stderr
    assert (project / "state" / "plan.pickle").is_file()
    return project


def _spec_edit(project: Path) -> None:
    spec = project / "services" / "payment-api.yaml"
    spec.write_text(spec.read_text().replace("team: payments", "team: billing"))


def _target_edit(project: Path) -> None:
    with open(project / "out" / "search-api" / "pagerduty.json", "a") as handle:
        handle.write(" ")


def _target_removed(project: Path) -> None:
    os.remove(project / "out" / "user-service" / "pagerduty.json")


def _catalog_touched(project: Path) -> None:
    path = project / "catalog" / "postgres.yaml"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # same bytes, a new mtime


def _catalog_edited(project: Path) -> None:
    with open(project / "catalog" / "redis.yaml", "a") as handle:
        handle.write("# reviewed\n")


def _spec_touched(project: Path) -> None:
    path = project / "services" / "order-worker.yaml"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


def _spec_removed(project: Path) -> None:
    os.remove(project / "services" / "report-batch.yaml")


def _spec_added(project: Path) -> None:
    spec = (project / "services" / "user-service.yaml").read_text()
    (project / "services" / "user-service-2.yaml").write_text(spec.replace("service: user-service",
                                                                          "service: user-service-2"))


def _config_edited(project: Path) -> None:
    # the Kubernetes kind's code stamp changes (state/code/kubernetes.sha256): that kind, for every service
    (project / "nthlayer.toml").write_text('[kubernetes]\nnamespace = "observability"\n')


def _policy_disabled(project: Path) -> None:
    # the policies' digest changes: the kept plan is not used, every verdict is worked out again
    (project / "nthlayer.toml").write_text('[policy]\ndisable = ["tier1-runbook"]\n')


def _index_removed(project: Path) -> None:
    os.remove(project / "state" / "spec-index.json")


def _report_page_edited(project: Path) -> None:
    with open(project / "out" / "reports" / "services" / "payment-api.html", "a") as handle:
        handle.write("<!-- edited -->")


def _report_page_removed(project: Path) -> None:
    os.remove(project / "out" / "reports" / "services" / "order-worker.html")


def _kept_groups_removed(project: Path) -> None:
    os.remove(project / "state" / "settled-targets.pickle")


def _kept_groups_stale(project: Path) -> None:
    # the groups of another project: none is answered, every check stats its own files
    import pickle

    (project / "state" / "settled-targets.pickle").write_bytes(pickle.dumps([("out/a/b.yaml", "out/a/c.yaml")]))
    _target_edit(project)


def _alertmanager_edited(project: Path) -> None:
    # its layout (state/alertmanager-layout.json) no longer fits the file: rendered whole
    with open(project / "out" / "alertmanager" / "alertmanager.yml", "a") as handle:
        handle.write("# edited\n")
    _spec_edit(project)


def _nothing(project: Path) -> None:
    pass


EDITS: dict[str, Callable[[Path], None]] = {
    "nothing": _nothing, "spec edited": _spec_edit, "target edited": _target_edit,
    "target removed": _target_removed, "catalog file touched": _catalog_touched,
    "catalog file edited": _catalog_edited, "spec touched": _spec_touched, "spec removed": _spec_removed,
    "spec added": _spec_added, "kubernetes defaults edited": _config_edited, "policy disabled": _policy_disabled,
    "spec index removed": _index_removed, "report page edited": _report_page_edited,
    "report page removed": _report_page_removed, "kept target groups removed": _kept_groups_removed,
    "kept target groups stale": _kept_groups_stale, "alertmanager.yml edited with a spec": _alertmanager_edited,
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_the_fast_path_runs_and_writes_what_doit_alone_would(built: Path, tmp_path: Path, edit: str) -> None:
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    for copy in (fast, slow):
        shutil.copytree(built, copy)  # copy2: the same mtimes, so doit's database holds for the copies
        EDITS[edit](copy)
    before = _tree(fast / "out")
    quick = _doit(fast, env=ENV)
    full = _doit(slow, env={**ENV, "NTHLAYER_FAST_PATH": "0"})
    assert (quick.returncode, quick.stderr) == (full.returncode, full.stderr)
    assert _ran(quick) == _ran(full)
    after_fast, after_slow = _tree(fast / "out"), _tree(slow / "out")
    assert {path: digest for path, (digest, _) in after_fast.items()} == \
           {path: digest for path, (digest, _) in after_slow.items()}
    rewritten = sorted(path for path, (_, mtime) in after_fast.items() if before.get(path, ("", 0))[1] != mtime)
    expected = sorted(path for path, (_, mtime) in after_slow.items() if before.get(path, ("", 0))[1] != mtime)
    assert rewritten == expected
    if edit == "nothing":
        assert _ran(quick) == []
        # doit's database is left as it was (no entry of a left-out task is touched)
        assert (fast / "state" / "doit.json").read_bytes() == (built / "state" / "doit.json").read_bytes()
    if edit in ("target edited", "kept target groups stale"):
        assert "service:search-api" in _ran(quick)
    if edit.startswith("report page"):
        assert _ran(quick) == ["report"]
    if edit.startswith("kept target groups"):  # kept again for the next run
        assert (fast / "state" / "settled-targets.pickle").read_bytes() == \
               (built / "state" / "settled-targets.pickle").read_bytes()
    if edit == "kubernetes defaults edited":
        assert len([name for name in _ran(quick) if name.startswith("service:")]) == 10


def test_other_commands_and_named_tasks_see_every_service(built: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(built, project)
    listed = _doit(project, "list", "--all", env=ENV)
    services = sorted(p.stem for p in (project / "services").glob("*.yaml"))
    assert [f"service:{name}" for name in services] == \
           sorted(line.split()[0] for line in listed.stdout.splitlines() if line.startswith("service:"))
    named = _doit(project, "service:payment-api", env=ENV)  # settled, yet named: doit finds it up to date
    assert named.returncode == 0, named.stdout + named.stderr
    assert _ran(named) == []
    forced = _doit(project, "run", "-a", "service", env=ENV)  # --always-execute: doit runs each one
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert [f"service:{name}" for name in services] == [name for name in _ran(forced) if name.startswith("service:")]


def test_the_service_tasks_uptodate_objects_give_doit_their_signature_without_inspecting() -> None:
    """doit reads each uptodate callable's parameters (``task``, ``values``) on every check; the service
    tasks' objects carry them as a class attribute (nthlayer.buildsys.outputs.doit_signature), which
    inspect returns at once instead of working them out from ``__call__``."""
    import inspect

    from nthlayer.buildsys.outputs import targets_unedited
    from nthlayer.buildsys.policies import verdict_unchanged

    for check in (targets_unedited(["out/a/openslo.yaml"]), verdict_unchanged("")):
        assert "__signature__" in vars(type(check))
        assert list(inspect.signature(check).parameters) == ["task", "values"]


def test_the_database_keeps_an_entry_a_line_with_its_digest_first_and_decodes_only_what_is_asked(
        tmp_path: Path) -> None:
    import json

    from doit.dependency import JSONCodec

    from nthlayer.buildsys.backend import StateJsonDB, settled_digest

    path = tmp_path / "doit.json"
    db = StateJsonDB(str(path), JSONCodec())
    for name in ("service:a", "service:b"):
        db.set(name, "_values_:", {"targets": "t", "policy_verdict": ""})
        db.set(name, "checker:", "SharedMD5Checker")
        db.set(name, f"services/{name[8:]}.yaml", (1.5, 10, "abc"))
        db.set(name, "deps:", (f"services/{name[8:]}.yaml",))
    db.set("prune", "_values_:", {})  # no file dependency recorded: no digest
    db.dump()
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "{" and lines[-1] == "}" and len(lines) == 5
    assert json.loads(text)["service:a"]["checker:"] == "SharedMD5Checker"  # still one JSON object
    digest = settled_digest("SharedMD5Checker", [("services/a.yaml", 1.5)], {"targets": "t", "policy_verdict": ""})
    assert lines[1].startswith(f'"service:a":{{"settled:":"{digest}",')
    assert '"prune":{"_values_:":{}}' in lines[3]

    again = StateJsonDB(str(path), JSONCodec())
    assert again._db == {}  # nothing decoded yet
    assert again.settled_digest("service:a") == digest
    assert again.in_("service:b") and not again.in_("service:c")
    assert again.get("service:b", "deps:") == ["services/b.yaml"]
    assert list(again._db) == ["service:b"]  # only what was asked
    again.set("service:b", "services/b.yaml", (2.5, 10, "abd"))  # a changed entry: no digest until it is saved
    assert again.settled_digest("service:b") is None
    again.dump()
    assert path.read_text().splitlines()[1] == lines[1]  # the others are written back as they were read
    third = StateJsonDB(str(path), JSONCodec())
    assert third.settled_digest("service:b") == settled_digest(
        "SharedMD5Checker", [("services/b.yaml", 2.5)], {"targets": "t", "policy_verdict": ""})


def test_a_database_of_the_one_line_format_is_read_and_written_again_with_digests(tmp_path: Path) -> None:
    from doit.dependency import JSONCodec

    from nthlayer.buildsys.backend import StateJsonDB

    path = tmp_path / "doit.json"
    path.write_text('{"service:a":{"_values_:":{"targets":"t"},"checker:":"SharedMD5Checker",'
                    '"services/a.yaml":[1.5,10,"abc"],"deps:":["services/a.yaml"]}}')
    db = StateJsonDB(str(path), JSONCodec())
    assert db.get("service:a", "services/a.yaml") == [1.5, 10, "abc"]
    assert db.settled_digest("service:a") is None  # none recorded: the fast path hands the task to doit
    db.dump()
    assert path.read_text().startswith('{\n"service:a":{"settled:":"')
    assert StateJsonDB(str(path), JSONCodec()).settled_digest("service:a") is not None


@pytest.mark.parametrize("text", ['{\n"service:a":{"deps:":[]}', '{\n"service:a" {}\n}\n', "[1, 2]", "{\n\"x"])
def test_a_broken_database_is_a_clear_error(tmp_path: Path, text: str) -> None:
    from doit.dependency import DatabaseException, JSONCodec

    from nthlayer.buildsys.backend import StateJsonDB

    path = tmp_path / "doit.json"
    path.write_text(text)
    with pytest.raises(DatabaseException, match="is not valid JSON: remove it"):
        StateJsonDB(str(path), JSONCodec())


def test_stamps_worked_out_ahead_are_the_stamps_of_the_files(tmp_path: Path) -> None:
    from nthlayer.buildsys.outputs import targets_stamp
    from nthlayer.buildsys.settled import stamps_ahead

    files = []
    for index in range(3000):  # more than a pipe holds at once
        path = tmp_path / f"f{index}"
        path.write_text("x" * index)
        files.append(str(path))
    groups = [tuple(files[i:i + 10]) for i in range(0, len(files), 10)]
    groups.append((files[0], str(tmp_path / "missing")))
    collect = stamps_ahead(groups)
    known = collect()
    assert known == {hash(group): targets_stamp(group) for group in groups}
    assert known[hash(groups[-1])] is None
    assert collect() is known  # asked again: the same answer
    assert stamps_ahead([])() == {}


def test_stamps_ahead_from_the_groups_the_last_run_kept(tmp_path: Path) -> None:
    from nthlayer.buildsys.outputs import targets_stamp
    from nthlayer.buildsys.settled import keep_groups, stamps_ahead_from

    kept = tmp_path / "groups.pickle"
    assert stamps_ahead_from(str(kept)) is None  # no file: the plan's groups are used (stamps_ahead)
    files = []
    for index in range(20):
        path = tmp_path / f"f{index}"
        path.write_text("x" * index)
        files.append(str(path))
    groups = [tuple(files[i:i + 4]) for i in range(0, len(files), 4)]
    keep_groups(str(kept), groups, None)  # no child read them: written
    known = stamps_ahead_from(str(kept))()
    assert known == {hash(group): targets_stamp(group) for group in groups}
    before = kept.stat().st_mtime_ns
    keep_groups(str(kept), list(reversed(groups)), known)  # the same groups: not written again
    assert kept.stat().st_mtime_ns == before
    # The files changed since: the stamps are of the files as they are now, not as they were kept.
    Path(files[0]).write_text("changed")
    assert stamps_ahead_from(str(kept))()[hash(groups[0])] == targets_stamp(groups[0]) != known[hash(groups[0])]
    # A group the file does not hold is not answered (its check stats its files); the file is rewritten.
    other = groups[1:] + [(files[0], files[5])]
    known = stamps_ahead_from(str(kept))()
    assert hash(other[-1]) not in known
    keep_groups(str(kept), other, known)
    assert stamps_ahead_from(str(kept))().keys() == {hash(group) for group in other}
    kept.write_bytes(b"not a pickle")  # damaged: the child fails, nothing is answered
    assert stamps_ahead_from(str(kept))() == {}


def test_two_groups_of_one_hash_are_neither_answered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from nthlayer.buildsys import settled
    from nthlayer.buildsys.outputs import targets_stamp

    files = [str(tmp_path / name) for name in ("a", "b", "c")]
    for path in files:
        Path(path).write_text(path)
    real = builtins.hash
    # the child's hash (it is forked after the patch): every group of one file collides
    monkeypatch.setattr(settled, "hash", lambda group: 7 if len(group) == 1 else real(group), raising=False)
    known = settled.stamps_ahead([(files[0],), (files[1],), (files[0], files[2])])()
    assert known == {real((files[0], files[2])): targets_stamp((files[0], files[2]))}


def test_a_database_laid_out_otherwise_is_read_whole_and_a_damaged_line_drops_only_its_entry(tmp_path: Path) -> None:
    import json

    from doit.dependency import JSONCodec

    from nthlayer.buildsys.backend import StateJsonDB

    path = tmp_path / "doit.json"
    entries = {"service:a": {"checker:": "SharedMD5Checker"}, "service:b": {"checker:": "MD5Checker"}}
    path.write_text(json.dumps(entries, indent=2) + "\n")  # valid JSON, not a line per task
    db = StateJsonDB(str(path), JSONCodec())
    assert db.get("service:b", "checker:") == "MD5Checker"
    db.dump()
    lines = path.read_text().splitlines()
    assert len(lines) == 4
    lines[1] = lines[1].replace('"SharedMD5Checker"', '"SharedMD5Checker')  # a quote lost
    path.write_text("\n".join(lines) + "\n")
    damaged = StateJsonDB(str(path), JSONCodec())
    assert damaged.get("service:a", "checker:") is None and not damaged.in_("service:a")
    assert damaged.get("service:b", "checker:") == "MD5Checker"
    damaged.dump()
    assert json.loads(path.read_text()) == {"service:b": {"checker:": "MD5Checker"}}


def test_a_run_that_changes_no_input_of_the_plan_reads_it_back_whole(built: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from nthlayer.buildsys import plan as plans

    from nthlayer.buildsys.plugin_kinds import activate

    project = tmp_path / "project"
    shutil.copytree(built, project)
    monkeypatch.chdir(project)
    for name in [name for name in os.environ if name.startswith("NTHLAYER_")]:
        monkeypatch.delenv(name)
    activate(None)  # the plugins as the build loaded them (none): an earlier test may have left others active

    def make() -> plans.BuildPlan:
        return plans.make_plan("services", "out", "catalog", index_path="state/spec-index.json")

    from generators import yamlload

    monkeypatch.setattr(yamlload, "_EXTERNAL_LINKS", [])  # as the build had it (a CLI test may have set it)
    monkeypatch.setenv("NTHLAYER_FAST_PATH", "0")
    fresh = make()  # made from the spec index and the verdicts, as always
    monkeypatch.setenv("NTHLAYER_FAST_PATH", "1")
    # Twice: should a setting of this process still differ from the build's, the first run remakes the index
    # under it, and the second, validating nothing, keeps the plan.
    make()
    make()
    made = []
    real = plans._summaries
    monkeypatch.setattr(plans, "_summaries", lambda *args, **kwargs: made.append(1) or real(*args, **kwargs))
    kept = make()
    assert made == [] and kept.policy_error == fresh.policy_error
    assert [_facts(entry) for entry in kept.entries] == [_facts(entry) for entry in fresh.entries]
    assert not any(entry.changed for entry in kept.entries)
    assert [entry.name for entry in kept.valid] == [entry.name for entry in fresh.valid]
    # A spec touched: the kept plan, with that spec validated again (and the checks across files made again).
    _spec_touched(project)
    edited = make()
    assert made == [] and [_facts(entry) for entry in edited.entries] == [_facts(entry) for entry in fresh.entries]
    assert [entry.path for entry in edited.entries if entry.changed] == ["services/order-worker.yaml"]
    assert (project / "state" / "plan-edits.pickle").exists()  # its entry kept beside the plan
    assert not any(entry.changed for entry in make().entries) and made == []  # read from there
    assert not (project / "state" / "plan-edits.pickle").exists()  # validated nothing: the plan kept whole again
    assert make() is not None and made == []
    for change in (_catalog_touched, _policy_disabled, _index_removed):
        change(project)
        again = make()
        assert made, change.__name__  # not read back: made again
        made.clear()
        if change is not _policy_disabled:  # the same plan, but for which specs were validated again
            assert [_facts(entry) for entry in again.entries] == [_facts(entry) for entry in fresh.entries]


def _facts(entry: Any) -> tuple[Any, ...]:
    return (entry.path, entry.summary, entry.errors, entry.warnings, entry.routing, entry.upstream, entry.plugins,
            entry.verdict)


def _replace(project: Path, spec: str, old: str, new: str) -> None:
    path = project / "services" / spec
    text = path.read_text()
    assert old in text, (spec, old)
    path.write_text(text.replace(old, new, 1))


def _index_entries(project: Path) -> dict[str, Any]:
    """state/spec-index.json's entries without their file versions (each copy's files have their own mtimes)."""
    import json

    files = json.loads((project / "state" / "spec-index.json").read_text())["files"]
    return {path: entry[1:] for path, entry in files.items()}


# One after the other, on the same two copies: the kept plan takes each edit's specs and keeps its entries
# beside it (state/plan-edits.pickle); a run that validates nothing keeps it whole again, a catalog change
# makes it the long way. Each step must run and write what the long way does.
STEPS: list[tuple[str, Callable[[Path], None]]] = [
    ("team edited", lambda p: _replace(p, "payment-api.yaml", "team: payments", "team: billing")),
    ("another team edited", lambda p: _replace(p, "search-api.yaml", "team: discovery", "team: finding")),
    ("name clash made", lambda p: _replace(p, "order-worker.yaml", "service: order-worker", "service: search-api")),
    ("name clash ended", lambda p: _replace(p, "order-worker.yaml", "service: search-api", "service: order-worker")),
    ("spec broken", lambda p: _replace(p, "payment-api.yaml", "tier: ", "tier: [")),
    ("spec removed", _spec_removed),
    ("nothing, kept whole again", _nothing),
    ("upstream's spec broken", lambda p: _replace(p, "search-api.yaml", "service: search-api", "service: [")),
    ("catalog file touched, made the long way", _catalog_touched),
    ("nothing, after the long way", _nothing),
    ("spec fixed", lambda p: _replace(p, "payment-api.yaml", "tier: [", "tier: ")),
    ("spec added", _spec_added),
    ("nothing", _nothing),
]


def test_edits_one_after_another_run_and_write_what_doit_alone_would(built: Path, tmp_path: Path) -> None:
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    for copy in (fast, slow):
        shutil.copytree(built, copy)
    for step, edit in STEPS:
        for copy in (fast, slow):
            edit(copy)
        quick = _doit(fast, env=ENV)
        full = _doit(slow, env={**ENV, "NTHLAYER_FAST_PATH": "0"})
        assert (quick.returncode, quick.stderr, _ran(quick)) == (full.returncode, full.stderr, _ran(full)), step
        assert {path: digest for path, (digest, _) in _tree(fast / "out").items()} == \
               {path: digest for path, (digest, _) in _tree(slow / "out").items()}, step
        edits = (fast / "state" / "plan-edits.pickle").exists()
        if step.startswith("nothing"):  # the plan kept whole, its edits written into the index
            assert not edits and _index_entries(fast) == _index_entries(slow), step
        elif "long way" not in step:
            assert edits, step


def test_a_plan_keeps_no_policy_documents_once_made(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy input documents of the specs a plan validated wait for its policy run, and no longer (a
    long-lived process, the API's, makes plan after plan): the long way and the kept plan's edits."""
    from nthlayer.buildsys import plan as plans
    from nthlayer.buildsys.plugin_kinds import activate

    project = tmp_path / "project"
    shutil.copytree(built, project)
    monkeypatch.chdir(project)
    for name in [name for name in os.environ if name.startswith("NTHLAYER_")]:
        monkeypatch.delenv(name)
    activate(None)

    def make() -> plans.BuildPlan:
        return plans.make_plan("services", "out", "catalog", index_path="state/spec-index.json")

    for fast, team in (("0", "billing"), ("1", "payments")):
        monkeypatch.setenv("NTHLAYER_FAST_PATH", fast)
        make()
        make()  # as settled as the build left it (should this process's settings differ)
        _replace(project, "payment-api.yaml", "team: " + ("payments" if team == "billing" else "billing"), "team: " + team)
        made = make()
        assert [entry.path for entry in made.entries if entry.changed] == ["services/payment-api.yaml"]
        assert plans._DOCUMENTS == {}, fast
