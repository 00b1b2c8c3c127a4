"""How many processes the build's plan and ``nthlayer validate`` split their work over, and how a forked
one ends with its parent (a module of its own: validate needs these, not the build's plan and doit,
which cost its start 50 ms to import)."""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PARALLEL_MIN_FILES = 200  # below this, forking costs more than it saves


def worker_count() -> int:
    """Processes a build splits its work over: two where there are two cores (docs/benchmarks.md)."""
    return min(2, len(os.sched_getaffinity(0)))


def die_with_parent(parent: int | None = None) -> None:
    """End this (forked) process when its parent dies, whatever kills the parent. ``parent``: the pid it
    had before the fork (default: the current parent), so that one already dead is noticed.

    Linux: the kernel sends SIGKILL (prctl PR_SET_PDEATHSIG). Elsewhere, or if prctl fails: a daemon
    thread checks twice a second that the parent is still the same process. Also a Pool initializer.
    """
    if parent is None:
        parent = os.getppid()
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


_PR_SET_PDEATHSIG = 1  # linux/prctl.h

__all__ = ["PARALLEL_MIN_FILES", "worker_count", "die_with_parent"]
