"""doit plumbing: the dependency database backend and the file checker the build uses."""
from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable, Iterator, NamedTuple

from doit.dependency import JsonDB, MD5Checker, get_file_md5

from generators.render import replace_file


def compact_json(value: Any, sort_keys: bool = False) -> bytes:
    """``value`` as compact JSON (no spaces; named tuples as arrays), for the build's own state files:
    doit's dependency database, the spec index and the policy verdicts. orjson writes the 15 MB database
    of 10,000 services about six times faster than the json module (docs/benchmarks.md); ``json.loads``
    reads back exactly what it wrote (floats in shortest round-trip form)."""
    import orjson

    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    return orjson.dumps(value, option=option, default=_as_array)


def read_json(path: str) -> Any:
    """A state file :func:`compact_json` wrote, parsed by orjson (the 5 MB spec index of 10,000 specs in a
    third of json's time). OSError when it cannot be read, ValueError when it is not JSON."""
    import orjson

    with open(path, "rb") as handle:
        return orjson.loads(handle.read())


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


def settled_digest(checker: str, dep_mtimes: Iterable[tuple[str, float]], values: Any) -> str:
    """One short digest of what the settled fast path (nthlayer.buildsys.settled) compares: the checker's
    name, each file dependency with its modification time, the task's saved values. The database stores
    it with each entry (from the entry as saved); the fast path computes it from the files and the task
    as they are now; equal digests mean doit would find the task up to date by the same tests."""
    import orjson

    text = orjson.dumps([checker, sorted(dep_mtimes), values], option=orjson.OPT_SORT_KEYS, default=_as_array)
    return hashlib.blake2b(text, digest_size=16).hexdigest()


_DIGEST = "settled:"  # each entry's first key: its settled_digest, read without decoding the entry


def _entry_digest(entry: dict[str, Any]) -> str | None:
    """The settled digest of a database entry as saved; None when it lacks a part doit records."""
    deps, checker, values = entry.get("deps:"), entry.get("checker:"), entry.get("_values_:")
    if deps is None or checker is None or values is None:
        return None
    mtimes = []
    for dep in deps:
        state = entry.get(dep)
        if not state:
            return None
        mtimes.append((dep, state[0]))
    return settled_digest(checker, mtimes, values)


def _lines_of(data: bytes) -> dict[str, bytes]:
    """Each task's entry as written by :meth:`StateJsonDB.dump`: ``{``, then one ``"task":{…}`` line per
    task (a comma after each but the last), then ``}``; ValueError for anything else."""
    import json

    lines = data.split(b"\n")
    if lines[-1] != b"" or lines[-2] != b"}":
        raise ValueError("truncated")
    scan = json.decoder.scanstring
    raw: dict[str, bytes] = {}
    last = len(lines) - 3
    for number, line in enumerate(lines[1:-2], 1):
        text = line.decode("utf-8")
        if not text.startswith('"'):
            raise ValueError("not a task's line")
        task_id, end = scan(text, 1)  # the key (a JSON string), and the index after it
        start = end if text.isascii() else len(text[:end].encode("utf-8"))
        comma = number <= last - 1
        if line[start:start + 2] != b":{" or not line.endswith(b"}," if comma else b"}"):
            raise ValueError("not a task's line")
        raw[task_id] = line[start + 1:-1] if comma else line[start + 1:]
    return raw


class StateJsonDB(JsonDB):
    """doit's dependency database as one JSON file (registered as doit backend ``nthlayer-json``).

    Like doit's ``json`` backend (read whole, served from memory: half the per-task cost of ``sqlite3``
    on a no-op run of 1000 services), but the file is replaced atomically and only when its content
    changed, so an interrupted run cannot leave it half-written and a no-op run writes nothing.

    One task's entry per line (the file is still one JSON object), decoded only when doit or the fast
    path asks for it: a no-op build of 10,000 services leaves most tasks out (nthlayer.buildsys.settled)
    and reads only the digest each line begins with, instead of decoding 15 MB (0.2-0.3 s). A changed
    entry is encoded again with its new digest; the others are written back as they were read.
    """

    desc = "JSON file, written atomically and only when changed"

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None) -> None:
        self._on_disk = False  # the file exists as this object last read or wrote it
        self._dirty = False
        # Every task's entry, in the file's order: its line's JSON as read, or None once changed (then
        # the decoded entry in _db is the one to write).
        self._raw: dict[str, bytes | None] = {}
        super().__init__(name, codec, module_name=module_name)

    def _entry(self, task_id: str) -> dict[str, Any] | None:
        entry = self._db.get(task_id)
        if entry is None:
            raw = self._raw.get(task_id)
            if raw is None:
                return None
            import orjson  # what json.loads gives for this file (floats as written, strings, lists)

            try:
                entry = orjson.loads(raw)
            except ValueError:  # a line damaged by hand: as if the task had no entry (it runs, and is recorded)
                del self._raw[task_id]
                self._dirty = True
                return None
            self._db[task_id] = entry
        return entry

    def get(self, task_id: str, dependency: str) -> Any:
        entry = self._entry(task_id)
        return None if entry is None else entry.get(dependency)

    def in_(self, task_id: str) -> bool:
        return task_id in self._raw

    def settled_digest(self, task_id: str) -> str | None:
        """The entry's digest as last saved (None: no entry, none recorded, or changed in this run)."""
        raw = self._raw.get(task_id)
        if raw is None:
            return None
        prefix = b'{"' + _DIGEST.encode() + b'":"'
        if raw.startswith(prefix):
            return raw[len(prefix):raw.index(b'"', len(prefix))].decode("ascii")
        return None

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        old = self.get(task_id, dependency)
        # A tuple comes back from JSON as a list; a new entry needs no such comparison (a first build: 14,000)
        if old != value and (old is None or old != _as_read_back(value)):
            self._dirty = True
            self._raw[task_id] = None
            self._db.setdefault(task_id, {})[dependency] = value

    def remove(self, task_id: str) -> None:
        if task_id in self._raw:
            self._dirty = True
            del self._raw[task_id]
            self._db.pop(task_id, None)

    def remove_all(self) -> None:
        self._dirty = self._dirty or bool(self._raw)
        self._raw = {}
        self._db = {}

    def _load(self) -> Any:
        with open(self.name, "rb") as handle:
            data = handle.read()  # only the entries' slices are kept, not the whole file
        self._on_disk = True
        try:
            if data.startswith(b"{\n"):
                try:
                    self._raw = _lines_of(data)  # each line decoded as it is split
                    return {}
                except (ValueError, IndexError):
                    pass  # JSON of another layout (an older one, or edited by hand): read whole below
            return self._whole(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            from doit.dependency import DatabaseException

            raise DatabaseException(f"{os.path.abspath(self.name)} is not valid JSON: remove it and the next "
                                    "build rebuilds everything") from None

    def _whole(self, text: str) -> dict[str, Any]:
        """The database as one JSON object (the layout before entries had lines): rewritten at the next dump."""
        import json

        entries = json.loads(text)
        if not isinstance(entries, dict) or not all(isinstance(entry, dict) for entry in entries.values()):
            raise ValueError("not an object of objects")
        self._raw = dict.fromkeys(entries)
        self._dirty = True
        return entries

    def dump(self) -> None:
        if not self._dirty and self._on_disk:
            return
        replace_file(self.name, self._lines())  # a line at a time: 15 MB at 10,000 services, not held twice
        self._on_disk = True
        self._dirty = False

    def _lines(self) -> Iterator[bytes]:
        yield b"{\n"
        separator = b""
        for task_id, raw in self._raw.items():
            if raw is None:
                entry = {key: value for key, value in self._db[task_id].items() if key != _DIGEST}
                digest = _entry_digest(entry)
                raw = compact_json({_DIGEST: digest, **entry} if digest else entry)
            yield separator + compact_json(task_id) + b":" + raw
            separator = b",\n"
        yield b"\n}\n" if separator else b"}\n"
