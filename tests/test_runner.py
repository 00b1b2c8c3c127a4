"""nthlayer.buildsys.runner.PrefetchMRunner runs what doit's own MRunner runs, in dependency order."""
from __future__ import annotations

import os
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# A dodo of 40 tasks: a chain a0 -> a1 -> a2 (task_dep), a group, a failing task with a dependant,
# a teardown, and a slow task so that others queue behind it. Each action appends its name to log.txt.
DODO = textwrap.dedent('''
    import os, time
    from nthlayer.buildsys.runner import PrefetchMRunner, install
    if os.environ.get("RUNNER") == "prefetch":
        assert install()
    else:
        from doit import cmd_run
        assert cmd_run.MRunner is not PrefetchMRunner
    DOIT_CONFIG = {"num_process": 2, "par_type": "process", "verbosity": 0,
                   "continue": os.environ.get("CONTINUE") == "1", "dep_file": "deps.json", "backend": "json"}

    def log(name, delay=0.0):
        time.sleep(delay)
        with open("log.txt", "a") as handle:
            handle.write(name + "\\n")

    def fail():
        return False

    def task_a():
        for i in range(3):
            yield {"name": str(i), "actions": [(log, [f"a{i}", 0.05])], "task_dep": [f"a:{i - 1}"] if i else []}

    def task_slow():
        return {"actions": [(log, ["slow", 0.3])]}

    def task_many():
        for i in range(30):
            yield {"name": str(i), "actions": [(log, [f"many{i}"])]}

    def task_broken():
        return {"actions": [fail]}

    def task_after_broken():
        return {"actions": [(log, ["after_broken"])], "task_dep": ["broken"]}

    def task_last():
        return {"actions": [(log, ["last"])], "task_dep": ["a", "many"], "teardown": [(log, ["teardown"])]}
''')


def _run(tmp_path: Path, runner: str, keep_going: bool) -> tuple[int, list[str], str]:
    work = tmp_path / f"{runner}-{keep_going}"
    work.mkdir()
    (work / "dodo.py").write_text(DODO)
    env = {**os.environ, "RUNNER": runner, "CONTINUE": "1" if keep_going else "0"}
    result = subprocess.run([sys.executable, "-m", "doit"], cwd=work, env=env, capture_output=True, text=True,
                            timeout=120)
    log = (work / "log.txt").read_text().split() if (work / "log.txt").exists() else []
    return result.returncode, log, result.stdout + result.stderr


@pytest.mark.parametrize("runner", ["prefetch", "doit"])
def test_runs_every_task_once_after_its_dependencies(tmp_path: Path, runner: str) -> None:
    code, log, output = _run(tmp_path, runner, keep_going=True)
    assert code == 2, output  # doit's code when a task could not run (after_broken: its dependency failed)
    assert "TaskFailed - taskid:broken" in output
    expected = {"a0", "a1", "a2", "slow", "last", "teardown", *(f"many{i}" for i in range(30))}
    assert sorted(log) == sorted(expected)  # ... the others all ran, once; its dependant did not
    assert log.index("a0") < log.index("a1") < log.index("a2") < log.index("last")
    assert all(log.index(f"many{i}") < log.index("last") for i in range(30))
    assert log.index("last") < log.index("teardown")


@pytest.mark.parametrize("runner", ["prefetch", "doit"])
def test_a_failure_stops_the_run_without_continue(tmp_path: Path, runner: str) -> None:
    code, log, output = _run(tmp_path, runner, keep_going=False)
    assert code == 1, output
    assert "after_broken" not in log and "last" not in log  # nothing that waited for others ran
    assert len(log) < 35


def test_install_is_idempotent_and_targets_doits_run_command() -> None:
    from doit import cmd_run
    from doit.runner import MRunner

    from nthlayer.buildsys.runner import PrefetchMRunner, install

    saved = cmd_run.MRunner
    try:
        cmd_run.MRunner = MRunner
        assert install() and cmd_run.MRunner is PrefetchMRunner
        assert install() and cmd_run.MRunner is PrefetchMRunner
        cmd_run.MRunner = type("Other", (MRunner,), {})  # someone else's runner: left alone
        assert not install()
    finally:
        cmd_run.MRunner = saved


BIG_JOBS = textwrap.dedent('''
    from nthlayer.buildsys.runner import install
    assert install()
    DOIT_CONFIG = {"num_process": 2, "par_type": "process", "verbosity": 0, "dep_file": "deps.json",
                   "backend": "json"}

    def log(name):
        with open("log.txt", "a") as handle:
            handle.write(name + "\\n")

    def task_big():
        # 300 KB a job, four queued at once: more than a pipe holds, and the prefetching runner writes
        # its jobs into a pipe itself (runner.JobPipe): its writes wait for the workers to read.
        for i in range(8):
            yield {"name": str(i), "actions": [(log, [f"big{i}"])], "doc": str(i) * 300_000}
''')


def test_jobs_larger_than_a_pipe_holds(tmp_path: Path) -> None:
    (tmp_path / "dodo.py").write_text(BIG_JOBS)
    result = subprocess.run([sys.executable, "-m", "doit"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted((tmp_path / "log.txt").read_text().split()) == [f"big{i}" for i in range(8)]


BIG_RESULTS = BIG_JOBS.replace('yield {"name"', 'yield {"name"').replace(
    '"actions": [(log, [f"big{i}"])]', '"actions": [(log, [f"big{i}"]), (lambda i=i: {"v": str(i) * 300_000},)]')


def test_jobs_and_results_larger_than_a_pipe_holds(tmp_path: Path) -> None:
    """300 KB jobs, four queued, and 300 KB results (the task's values), both ways through pipes whose
    writers wait while they are full: the parent writes a job only when it cannot wait on a worker that
    waits on the parent (runner.JobPipe.fits)."""
    (tmp_path / "dodo.py").write_text(BIG_RESULTS)
    result = subprocess.run([sys.executable, "-m", "doit"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted((tmp_path / "log.txt").read_text().split()) == [f"big{i}" for i in range(8)]
    saved = json.loads((tmp_path / "deps.json").read_text())
    assert sorted(saved) == ["big"] + [f"big:{i}" for i in range(8)]  # the group task, and each one
    assert all(saved[f"big:{i}"]["_values_:"]["v"] == str(i) * 300_000 for i in range(8))

