"""doit plumbing: the dependency database backend and the file checker the build uses."""
from __future__ import annotations

import os
from typing import Any, NamedTuple

from doit.dependency import JsonDB, MD5Checker, get_file_md5

from generators.render import write_if_changed


def compact_json(value: Any, sort_keys: bool = False) -> bytes:
    """``value`` as compact JSON (no spaces; named tuples as arrays), for the build's own state files:
    doit's dependency database, the spec index and the policy verdicts. orjson writes the 15 MB database
    of 10,000 services about six times faster than the json module (docs/benchmarks.md); ``json.loads``
    reads back exactly what it wrote (floats in shortest round-trip form)."""
    import orjson

    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    return orjson.dumps(value, option=option, default=_as_array)


def _as_array(value: Any) -> Any:
    if isinstance(value, tuple):  # a named tuple (orjson writes plain tuples itself)
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class FileStat(NamedTuple):
    st_mtime: float
    st_size: int


class SharedMD5Checker(MD5Checker):
    """doit's md5 checker, but each dependency is stat'ed and hashed once per run, not once per task.

    Every service task depends on the same four code stamps and on shared catalog files; no task
    writes a file another depends on (they write only under out/), so a file's state within one run
    is one value.
    """

    # Each file's state (mtime, size, md5), keyed by mtime and size: valid across runs. One tuple per
    # state, shared by every task that depends on the file (the database holds 100,000 at 10,000 services).
    _known: dict[tuple[str, float, int], tuple[float, int, str]] = {}

    def __init__(self) -> None:
        super().__init__()
        self._stats: dict[str, FileStat] = {}  # one doit run (a checker is made per run)

    def info(self, file_path: str) -> FileStat:
        """The file's mtime and size, what doit's checks read of os.stat (held for every spec of a run)."""
        stat = self._stats.get(file_path)
        if stat is None:
            found = os.stat(file_path)
            stat = self._stats[file_path] = FileStat(found.st_mtime, found.st_size)
        return stat

    def get_state(self, dep: str, current_state: Any) -> Any:
        stat = self.info(dep)
        if current_state and current_state[0] == stat.st_mtime:
            return None
        key = (dep, stat.st_mtime, stat.st_size)
        state = self._known.get(key)
        if state is None:
            state = self._known[key] = (stat.st_mtime, stat.st_size, get_file_md5(dep))
        return state


def _as_read_back(value: Any) -> Any:
    """``value`` as JSON would give it back: tuples as lists."""
    if isinstance(value, (tuple, list)):
        return [_as_read_back(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_read_back(item) for key, item in value.items()}
    return value


class StateJsonDB(JsonDB):
    """doit's dependency database as one JSON file (registered as doit backend ``nthlayer-json``).

    Like doit's ``json`` backend (read whole, served from memory: half the per-task cost of ``sqlite3``
    on a no-op run of 1000 services), but the file is replaced atomically and only when its content
    changed, so an interrupted run cannot leave it half-written and a no-op run writes nothing.
    """

    desc = "JSON file, written atomically and only when changed"

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None) -> None:
        self._saved: bytes | None = None
        self._dirty = False
        super().__init__(name, codec, module_name=module_name)

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        old = self.get(task_id, dependency)
        # A tuple comes back from JSON as a list; a new entry needs no such comparison (a first build: 14,000)
        if old != value and (old is None or old != _as_read_back(value)):
            self._dirty = True
            super().set(task_id, dependency, value)

    def remove(self, task_id: str) -> None:
        self._dirty = self._dirty or task_id in self._db
        super().remove(task_id)

    def remove_all(self) -> None:
        self._dirty = self._dirty or bool(self._db)
        super().remove_all()

    def _load(self) -> Any:
        with open(self.name, "rb") as handle:
            self._saved = handle.read()
        try:
            return self.codec.decode(self._saved.decode("utf-8"))
        except ValueError:
            from doit.dependency import DatabaseException

            raise DatabaseException(f"{os.path.abspath(self.name)} is not valid JSON: remove it and the next "
                                    "build rebuilds everything") from None

    def dump(self) -> None:
        if not self._dirty and self._saved is not None:
            return
        data = compact_json(self._db)
        if data != self._saved:
            write_if_changed(self.name, data)
            self._saved = data
        self._dirty = False
