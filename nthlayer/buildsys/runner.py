"""doit's process-parallel runner, keeping each worker one task ahead.

doit's ``MRunner`` gives a worker its next task only when the worker's previous result has reached the
parent: the worker sends its result, the parent wakes, records it, checks the next task and queues it,
and the worker wakes again. On a two-core machine that round trip left each worker idle about a quarter
of a 1000-service build (docs/benchmarks.md). :class:`PrefetchMRunner` keeps up to ``AHEAD`` tasks per
worker in the shared job queue, so a worker that finishes one starts the next at once while the parent
records the result.

Which tasks run and when is unchanged: tasks come from doit's own dispatcher, which yields a task only
once its dependencies have finished; up-to-date checks, result processing, failure handling and
reporting are doit's own methods, inherited. Only ``run_tasks`` (the parent's loop) differs, and a
task without actions (a group) completes in the parent, as doit's one-process runner does it, instead
of costing a round trip to a worker.

A build stops cleanly on SIGTERM or SIGINT (a CI runner cancelling, Ctrl-C): the parent takes back the
jobs no worker has started, lets the running ones finish and records them, stops the workers and
returns doit's error code; nothing is left half-written. A worker never outlives the parent: killed
with SIGKILL (the OOM killer), the parent cannot stop them, so each worker asks the kernel for SIGKILL
when its parent dies (Linux), or watches the parent's pid elsewhere; a ``doit | tee`` then ends.

doit has no setting for the runner class: it reads ``doit.cmd_run.MRunner`` when a run starts.
:func:`install` sets it (dodo.py calls it) when this doit has every method the loop relies on, and
otherwise leaves doit's runner alone: the build stays correct, only slower.
"""
from __future__ import annotations

import collections
import os
import queue
import signal
import sys
import threading
import time
from multiprocessing import Process
from typing import Any

from doit.runner import ERROR, JobTask, JobTaskPickle, MRunner
from doit.task import DelayedLoaded

from nthlayer.buildsys.parallel import die_with_parent

AHEAD = 2  # tasks queued per worker: the one it runs and the next

# What a worker's run of a task changes on it (doit's Task.execute: the flag, the options it works out, the
# action's result and values): the parent takes these from a result. doit's own runner copies back the
# whole task, every list of file names in it included: at 10,000 services, 35 MB more in the parent.
_RETURNED = frozenset({"executed", "options", "result", "values"})

STOP_GRACE = 10.0  # seconds the running tasks get to finish after a stop signal
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOPPED: list[int] = []  # the stop signal that ended this process's build, if any (nthlayer build's exit code)


def release_free_memory() -> None:
    """Give the C allocator's free pages back to the system (glibc's ``malloc_trim``), where there is one.

    Python's own small-object arenas go back as soon as they are empty, but larger blocks (a 10,000-spec
    plan's JSON texts, the policy engines' answers, the spec index as read) come from malloc, which keeps
    what is freed for reuse. Before doit forks its workers, those pages are the parent's resident memory
    and, since a forked worker counts what it shares, each worker's too."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


STOP_POLL = 0.2  # seconds between the parent's looks at the stop flag while it waits for a result


class _Stop(Exception):
    """A stop signal came: the parent's loop leaves to stop the workers."""


_USES = ("select_task", "execute_task", "process_task_result", "_process_result", "_run_tasks_init",
         "execute_task_subprocess", "teardown")


class JobPipe:
    """The job queue: one pipe, into which the parent writes each pickled job itself.

    ``multiprocessing.Queue`` hands each message to a feeder thread of the sending process, which pickles
    and writes it: every ``put`` wakes that thread, and the parent's two threads then trade the GIL while
    the workers wait for their next job. At 10,000 services the parent spent about 0.6 s there (py-spy:
    ``Condition.notify``) and a first build's service tasks took 0.6-1.1 s longer (alternating runs).
    A lock keeps each message whole between the readers (the workers, and the parent taking jobs back
    on a stop).

    A write into a full pipe waits for a worker to read, and a worker that waits to write its result
    (:class:`ResultPipe`) reads no job: so the parent writes a job only when the pipe has room for it
    (:meth:`fits`), or when no result is to come (every worker then reads); otherwise it reads results
    first. Where the pipe's room cannot be known, the results go through a ``multiprocessing.Queue``,
    whose ``put`` never waits, and every job is written at once.
    """

    def __init__(self) -> None:
        import multiprocessing

        self._reader, self._writer = multiprocessing.Pipe(duplex=False)
        self._read_lock = multiprocessing.Lock()
        self.capacity = pipe_capacity(self._reader.fileno())

    def put(self, job: Any) -> None:
        self.put_bytes(dumps(job))

    def put_bytes(self, data: bytes) -> None:
        self._writer.send_bytes(data)  # one writer: the parent

    def fits(self, data: bytes) -> bool:
        """Whether writing ``data`` now cannot wait for a reader (always true where the room is unknown)."""
        if self.capacity is None:
            return True
        return len(data) + _HEADER + _unread(self._reader.fileno()) <= self.capacity

    def get(self) -> Any:
        with self._read_lock:
            data = self._reader.recv_bytes()
        return _loads(data)

    def get_nowait(self) -> Any:
        """A job not yet taken, or ``queue.Empty``."""
        if not self._read_lock.acquire(block=False):
            raise queue.Empty
        try:
            if not self._reader.poll():
                raise queue.Empty
            data = self._reader.recv_bytes()
        finally:
            self._read_lock.release()
        return _loads(data)


class ResultPipe:
    """The workers' messages to the parent (reports, results): one pipe, written by each worker itself
    under a lock, read by the parent alone. ``multiprocessing.Queue`` woke a feeder thread in the
    worker for each of them, two per task: measured at 10,000 services, a first build 0.4-0.5 s
    faster without (alternating runs). A write waits while the pipe is full: the parent always reads
    again, since it never waits to write a job while a result is to come (:class:`JobPipe`)."""

    def __init__(self) -> None:
        import multiprocessing

        self._reader, self._writer = multiprocessing.Pipe(duplex=False)
        self._write_lock = multiprocessing.Lock()

    def put(self, message: Any) -> None:
        data = dumps(message)
        with self._write_lock:
            self._writer.send_bytes(data)

    def get(self, timeout: float | None = None) -> Any:
        if timeout is not None and not self._reader.poll(timeout):
            raise queue.Empty
        return _loads(self._reader.recv_bytes())

    def empty(self) -> bool:
        return not self._reader.poll()


_HEADER = 12  # the most bytes multiprocessing's Connection puts before a message


def pipe_capacity(fd: int) -> int | None:
    """How many bytes the pipe holds (Linux); None where that cannot be asked."""
    try:
        import fcntl

        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)  # type: ignore[attr-defined]
    except (ImportError, AttributeError, OSError):
        return None


def _unread(fd: int) -> int:
    import fcntl
    import struct
    import termios

    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def dumps(message: Any) -> bytes:
    from multiprocessing.reduction import ForkingPickler

    return bytes(ForkingPickler.dumps(message))


def _loads(data: bytes) -> Any:
    import pickle

    return pickle.loads(data)


class PrefetchMRunner(MRunner):
    """``MRunner`` with up to ``AHEAD`` tasks per worker in the job queue (a :class:`JobPipe`)."""

    _stop_signal = 0  # the stop signal received, if any

    def _next_job(self, completed: Any) -> Any:
        """Tell doit's dispatcher ``completed`` finished (None: nothing did) and get the next job to
        queue: a job, ``"wait"`` (every remaining task waits for running ones) or None (no more)."""
        node = completed
        while not self._stop_running:
            try:
                node = self.task_dispatcher.generator.send(node)
            except StopIteration:
                return None
            if node == "hold on":
                return "wait"
            if self.select_task(node, self.tasks):  # else up to date (or failed): reported, next
                task = node.task
                if not task.actions and not task.teardown:  # a group task: nothing for a worker to do
                    self.process_task_result(node, self.execute_task(task))
                    continue
                if task.loader is DelayedLoaded and self.Child == Process:
                    return JobTask(task)  # as doit does: a delayed task's object exists only here
                return JobTaskPickle(task)
        return None

    def _worker(self, job_q: Any, result_q: Any, reporter_class: Any, parent: int) -> None:
        """A worker process: doit's loop, ended with the parent; stop signals are the parent's to handle."""
        die_with_parent(parent)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler came with the fork
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
        self.execute_task_subprocess(job_q, result_q, reporter_class)

    def run_tasks(self, task_dispatcher: Any) -> None:
        if self.Child != Process or threading.current_thread() is not threading.main_thread():
            self._run_tasks(task_dispatcher)
            return

        def stop(signum: int, _frame: Any) -> None:
            # Only a flag: raising here could cut a queue read in the middle of a message.
            self._stop_signal = signum

        self._stop_signal = 0
        previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
        try:
            self._run_tasks(task_dispatcher)
        except _Stop:
            self.final_result = ERROR
            STOPPED[:] = [self._stop_signal]
            name = signal.Signals(self._stop_signal).name
            print(f"nthlayer: build stopped by {name}: finished tasks are recorded, the others did not run",
                  file=sys.stderr)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _stop_workers(self, procs: list[Any], job_q: Any, result_q: Any, queued: int, task_dispatcher: Any) -> None:
        """After a stop signal: take back the jobs not yet started, record the running ones as they
        finish (within STOP_GRACE seconds), then end the workers."""
        self._stop_running = True
        while queued:
            try:
                job = job_q.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                queued -= 1
        for _ in procs:
            job_q.put(None)
        deadline = time.monotonic() + STOP_GRACE
        while queued and time.monotonic() < deadline:
            try:
                result = result_q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if "exit" in result:
                break
            if self._take_result(task_dispatcher, result) is not None:
                queued -= 1
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join()

    def _take_result(self, task_dispatcher: Any, result: dict[str, Any]) -> Any:
        """Handle a worker's message: a report on the way (None), or a job's result (its node, recorded)."""
        node = task_dispatcher.nodes[result["name"]]
        if "reporter" in result:
            getattr(self.reporter, result["reporter"])(node.task)
            return None
        if "task" in result:  # only what running the task changed: see _RETURNED
            result["task"] = {key: value for key, value in result["task"].items() if key in _RETURNED}
        self._process_result(node, node.task, result)
        return node

    def _run_tasks(self, task_dispatcher: Any) -> None:
        job_q = JobPipe()
        direct = self.Child == Process and job_q.capacity is not None  # see JobPipe
        result_q = ResultPipe() if direct else self.Queue()
        self._run_tasks_init(task_dispatcher)
        queued = 0  # jobs taken from the dispatcher whose result has not come back
        waiting: collections.deque[bytes] = collections.deque()  # those not written yet (JobPipe.fits)
        finished = False  # the dispatcher has nothing more to give
        procs: list[Any] = []

        def write_waiting() -> None:
            while waiting and (not direct or job_q.fits(waiting[0]) or queued == len(waiting)):
                job_q.put_bytes(waiting.popleft())

        def top_up(completed: Any = None) -> None:
            nonlocal queued, finished
            while not finished and (completed is not None or queued < self.num_process * AHEAD):
                job = self._next_job(completed)
                completed = None
                if job is None:
                    finished = True
                elif job == "wait":
                    if not queued:
                        raise RuntimeError("doit: every remaining task waits, and none runs")
                    break
                else:
                    if not procs:  # the workers start with the first job, not after the parent's checks
                        # (and before it is written: a job larger than the pipe holds waits for a reader)
                        target, args = self.execute_task_subprocess, (job_q, result_q, self.reporter.__class__)
                        if self.Child == Process:
                            target, args = self._worker, (*args, os.getpid())
                            release_free_memory()  # the workers start with (and count) this process's pages
                        for _ in range(self.num_process):
                            proc = self.Child(target=target, args=args)
                            proc.start()
                            procs.append(proc)
                    waiting.append(dumps(job))
                    queued += 1
                    write_waiting()

        try:
            top_up()
            while queued:
                if self._stop_signal:
                    raise _Stop()
                try:
                    result = result_q.get(timeout=STOP_POLL)
                except queue.Empty:
                    continue
                if "exit" in result:
                    raise result["exit"](result["exception"])
                node = self._take_result(task_dispatcher, result)
                if node is not None:
                    queued -= 1
                    write_waiting()
                    top_up(node)
        except _Stop:
            queued -= len(waiting)  # taken, never written: not run, as the jobs taken back
            waiting.clear()
            self._stop_workers(procs, job_q, result_q, queued, task_dispatcher)
            raise
        except (SystemExit, KeyboardInterrupt, Exception):
            if self.Child == Process:
                for proc in procs:
                    proc.terminate()
            raise
        for _ in procs:
            job_q.put(None)  # each worker runs its teardown and stops
        for proc in procs:
            proc.join()
        while not result_q.empty():  # teardown reports, safe to read: the workers have stopped
            result = result_q.get()
            getattr(self.reporter, result["reporter"])(task_dispatcher.tasks[result["name"]])


def install() -> bool:
    """Make doit's process-parallel runs in this process use :class:`PrefetchMRunner`; False (doit's
    runner stays) when this doit lacks a method the runner relies on."""
    from doit import cmd_run

    if cmd_run.MRunner is PrefetchMRunner:
        return True
    if cmd_run.MRunner is not MRunner or not all(callable(getattr(MRunner, name, None)) for name in _USES):
        return False
    cmd_run.MRunner = PrefetchMRunner
    return True
