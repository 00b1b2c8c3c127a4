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

doit has no setting for the runner class: it reads ``doit.cmd_run.MRunner`` when a run starts.
:func:`install` sets it (dodo.py calls it) when this doit has every method the loop relies on, and
otherwise leaves doit's runner alone: the build stays correct, only slower.
"""
from __future__ import annotations

from multiprocessing import Process
from typing import Any

from doit.runner import JobTask, JobTaskPickle, MRunner
from doit.task import DelayedLoaded

AHEAD = 2  # tasks queued per worker: the one it runs and the next

_USES = ("select_task", "execute_task", "process_task_result", "_process_result", "_run_tasks_init",
         "execute_task_subprocess", "teardown")


class PrefetchMRunner(MRunner):
    """``MRunner`` with up to ``AHEAD`` tasks per worker in the job queue."""

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

    def run_tasks(self, task_dispatcher: Any) -> None:
        result_q = self.Queue()
        job_q = self.Queue()
        self._run_tasks_init(task_dispatcher)
        queued = 0  # jobs put in the queue whose result has not come back
        finished = False  # the dispatcher has nothing more to give
        procs: list[Any] = []

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
                    return
                else:
                    job_q.put(job)
                    queued += 1
                    if not procs:  # the workers start with the first job, not after the parent's checks
                        for _ in range(self.num_process):
                            proc = self.Child(target=self.execute_task_subprocess,
                                              args=(job_q, result_q, self.reporter.__class__))
                            proc.start()
                            procs.append(proc)

        try:
            top_up()
            while queued:
                result = result_q.get()
                if "exit" in result:
                    raise result["exit"](result["exception"])
                node = task_dispatcher.nodes[result["name"]]
                if "reporter" in result:
                    getattr(self.reporter, result["reporter"])(node.task)
                    continue
                self._process_result(node, node.task, result)
                queued -= 1
                top_up(node)
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
