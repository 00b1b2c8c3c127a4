"""A build's processes under signals, with real processes: a killed parent takes its workers with it (so
`doit | tee` ends), SIGTERM/SIGINT stop the build cleanly, and the next run removes what a killed build left."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

SERVICES = 800  # enough that the build is still running when the signal comes


def _synthesize(folder: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from run import synthesize
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    synthesize(folder, SERVICES)


def _start(work: Path, command: tuple[str, ...] = ("doit", "-f", str(ROOT / "dodo.py"), "-d")) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
    env["NTHLAYER_CATALOG"] = str(ROOT / "rules_catalog")
    env["NTHLAYER_STATE"] = str(work / "state" / "nthlayer.duckdb")
    args = [str(work)] if command[-1] == "-d" else []
    return subprocess.Popen([sys.executable, "-m", *command, *args],
                            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited; only its reaping waits


def _workers_at_work(build: subprocess.Popen[bytes], out: Path) -> set[int]:
    """The worker pids, once the workers have written a few services (the plan's pool is gone by then)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert build.poll() is None, "the build ended before it could be signalled"
        if out.is_dir() and sum(1 for _ in out.iterdir()) >= 10:
            workers = _children(build.pid)
            if len(workers) == 2:
                return workers
        time.sleep(0.02)
    raise AssertionError("the build's workers never started")


def _end(pids: list[int]) -> None:
    """Kill what a failing test would otherwise leave running."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _hidden(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob(".*"))


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def _finish(work: Path) -> subprocess.CompletedProcess[bytes]:
    build = _start(work)
    stdout, stderr = build.communicate(timeout=300)
    return subprocess.CompletedProcess(build.args, build.returncode, stdout, stderr)


def test_killed_parent_takes_its_workers_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    _synthesize(tmp_path)
    build = _start(tmp_path)
    eof = threading.Event()

    def read_to_end() -> None:  # what `doit | tee` does
        assert build.stdout is not None
        while build.stdout.read(65536):
            pass
        eof.set()

    reader = threading.Thread(target=read_to_end, daemon=True)
    reader.start()
    workers = _workers_at_work(build, tmp_path / "out")
    build.kill()
    build.wait(timeout=10)
    deadline = time.monotonic() + 5
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if _running(pid)]
    _end(survivors)
    assert not survivors, "workers outlived their parent"
    assert eof.wait(5), "the pipe reader never got EOF"

    # What a killed writer leaves, by a process that is gone: a staging folder and a temp file.
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "out"
    (out / f".svc-00001.{dead.pid}-0.tmp" / "openslo").mkdir(parents=True)
    # a service the build finished (not out/alertmanager; the killed one may be half-written: its remaining
    # files are written by the next run anyway)
    service = next(p for p in sorted(out.iterdir()) if p.name.startswith("svc-")
                   and (p / "prometheus" / "alerts.rules.yaml").is_file())
    (service / "prometheus" / f".alerts.rules.yaml.{dead.pid}-3.tmp").write_text("half")
    (service / "prometheus" / "alerts.rules.yaml").unlink()  # so that its task runs again
    (tmp_path / "state" / f".doit.json.{dead.pid}-1.tmp").write_text("{")

    again = _finish(tmp_path)
    assert again.returncode == 0, again.stderr.decode()
    assert _hidden(out) == [] and _hidden(tmp_path / "state") == []
    assert len([p for p in out.iterdir() if p.name.startswith("svc-")]) == SERVICES


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_stops_the_build_cleanly(tmp_path: Path, signum: int) -> None:
    _synthesize(tmp_path)
    build = _start(tmp_path)
    workers = _workers_at_work(build, tmp_path / "out")
    build.send_signal(signum)
    stdout, stderr = build.communicate(timeout=60)
    assert build.returncode == 2, stderr.decode()  # doit's code for a run that did not complete
    name = signal.Signals(signum).name
    assert stderr.decode().endswith(f"nthlayer: build stopped by {name}: finished tasks are recorded, "
                                    "the others did not run\n")
    survivors = [pid for pid in workers if _running(pid)]
    _end(survivors)
    assert not survivors
    out = tmp_path / "out"
    assert _hidden(out) == []  # the running tasks finished: nothing half-written, not even a temp file
    stopped = _files(out)
    assert 0 < len([p for p in out.iterdir() if p.name.startswith("svc-")]) < SERVICES

    again = _finish(tmp_path)
    assert again.returncode == 0, again.stderr.decode()
    ran = again.stdout.decode().split()
    assert f"service:svc-{0:05d}" not in ran  # recorded as built: not built again
    complete = _files(out)
    assert {path: complete[path] for path in stopped} == stopped  # every file the stopped build left was whole


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_nthlayer_build_stopped_by_a_signal_exits_interrupted(tmp_path: Path, signum: int) -> None:
    """The exit-code table's 130 (interrupted), not 1 (a failed build): CI tells a cancelled run apart."""
    _synthesize(tmp_path)
    build = _start(tmp_path, ("nthlayer", "build"))
    workers = _workers_at_work(build, tmp_path / "out")
    build.send_signal(signum)
    _stdout, stderr = build.communicate(timeout=60)
    _end([pid for pid in workers if _running(pid)])
    assert build.returncode == 130, stderr.decode()
    assert stderr.decode().endswith(f"nthlayer: build stopped by {signal.Signals(signum).name}: finished tasks "
                                    "are recorded, the others did not run\n")


WATCHED = '''
import os, sys, time
from nthlayer.buildsys.runner import die_with_parent
if os.fork() == 0:
    sys.platform = "{platform}"  # elsewhere than Linux: no prctl, the watchdog thread
    die_with_parent()
    print(os.getpid(), flush=True)
    time.sleep(60)
    os._exit(0)
time.sleep(60)
'''


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_a_worker_ends_when_its_parent_is_killed(platform: str) -> None:
    parent = subprocess.Popen([sys.executable, "-c", WATCHED.format(platform=platform)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    assert _running(worker)
    parent.kill()
    parent.wait(timeout=10)
    deadline = time.monotonic() + 3
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    survived = _running(worker)
    _end([worker] if survived else [])
    assert not survived
    assert parent.stdout.read() == ""  # EOF: the worker held the pipe too


def test_free_memory_is_given_back_before_the_workers_fork() -> None:
    # In a process of its own: 100 MB of malloc'd blocks (over pymalloc's 512 bytes) freed but for the last,
    # which keeps the heap's top in use: glibc keeps the rest resident until malloc_trim.
    script = """
import ctypes.util, os
from nthlayer.buildsys.runner import release_free_memory
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
blocks = [os.urandom(2000) for _ in range(50_000)]
del blocks[:-1]
before = rss()
release_free_memory()
print(before - rss(), "glibc" if "libc.so.6" in str(ctypes.util.find_library("c")) else "other")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    released, libc = result.stdout.split()
    if libc != "glibc":
        pytest.skip("malloc_trim is glibc's")
    assert int(released) >= 50, result.stdout


def test_a_build_process_leaves_its_objects_to_the_system_at_exit() -> None:
    # The exit handler the build registers (nthlayer.buildsys.dodo._freeze_at_exit): the interpreter's
    # last collections no longer walk the build's objects, so a cycle still alive at exit is not collected
    # (Python never promised that __del__ runs at exit); without it, this one is.
    script = """
import atexit, sys
class Node:
    def __init__(self): self.me = self
    def __del__(self): print("collected", flush=True)
keep = Node()
if sys.argv[1] == "build":
    from nthlayer.buildsys.dodo import _freeze_at_exit
    atexit.register(_freeze_at_exit)
"""
    plain = subprocess.run([sys.executable, "-c", script, "plain"], capture_output=True, text=True, cwd=ROOT, check=True)
    build = subprocess.run([sys.executable, "-c", script, "build"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert (plain.stdout, build.stdout) == ("collected\n", "")
