"""The two references a full build is measured against (benchmarks/run.py, docs/benchmarks.md).

- **doit's floor** (:data:`FLOOR_DODO`, run as ``python -m doit -f floor_dodo.py``): one task per service
  spec with the same doit settings our build uses where they are doit's own cost — the ``nthlayer-json``
  dependency database, the shared MD5 checker, two forked worker processes with the prefetching runner,
  our reporter — and an action that does nothing. What it measures: starting Python and doit, loading
  N tasks, hashing N spec files, handing N tasks to the workers and collecting their results, writing
  the dependency database. Not in it: reading the specs, generating, writing files (that is the I/O
  floor's part).
- **the I/O floor** (``python benchmarks/floors.py SRC DST``): the very tree a full build wrote under
  SRC (same paths, same bytes) written again under DST, a fresh folder, from memory: the tree is read
  first and not timed; then every folder is made once, and every file written to a temporary name
  beside it and renamed into place (what the build's writer does per file). It prints the seconds of
  the timed part and what it wrote, as JSON.
"""
from __future__ import annotations

import json
import os
import sys
import time

FLOOR_DODO = '''
import glob, os

from nthlayer.buildsys.backend import SharedMD5Checker
from nthlayer.buildsys.plan import worker_count
from nthlayer.buildsys.reporter import NthlayerReporter
from nthlayer.buildsys.runner import install

os.makedirs("floor-state", exist_ok=True)
DOIT_CONFIG = {"dep_file": "floor-state/doit.json", "backend": "nthlayer-json",
               "check_file_uptodate": SharedMD5Checker, "num_process": worker_count(), "par_type": "process",
               "reporter": NthlayerReporter, "verbosity": 1, "default_tasks": ["floor"]}
install()


def _nothing():
    return True


def task_floor():
    for path in sorted(glob.glob("services/*.yaml")):
        yield {"name": os.path.basename(path)[:-5], "actions": [_nothing], "file_dep": [path]}
'''


def read_tree(source: str) -> tuple[list[str], list[tuple[str, bytes]]]:
    """The folders (parents first) and the files (path relative to ``source``, bytes) of a tree."""
    folders: list[str] = []
    files: list[tuple[str, bytes]] = []
    for top, dirs, names in os.walk(source):
        dirs.sort()
        relative = os.path.relpath(top, source)
        if relative != ".":
            folders.append(relative)
        for name in sorted(names):
            with open(os.path.join(top, name), "rb") as handle:
                files.append((os.path.normpath(os.path.join(relative, name)), handle.read()))
    return folders, files


def write_tree(target: str, folders: list[str], files: list[tuple[str, bytes]]) -> None:
    """Every folder made once, every file written to a temporary name beside it, then renamed."""
    from generators.render import _new_file, _write_fd  # the build writer's own calls, open to rename

    os.mkdir(target)
    for folder in folders:
        os.mkdir(os.path.join(target, folder))
    for relative, data in files:
        final = os.path.join(target, relative)
        head, tail = os.path.split(final)
        temporary = os.path.join(head, f".{tail}.tmp")
        _write_fd(_new_file(temporary), data)
        os.rename(temporary, final)


def main(argv: list[str]) -> int:
    source, target = argv
    folders, files = read_tree(source)
    started = time.perf_counter()
    write_tree(target, folders, files)
    seconds = time.perf_counter() - started
    json.dump({"seconds": seconds, "files": len(files), "folders": len(folders),
               "bytes": sum(len(data) for _, data in files)}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
