"""Safe YAML loading that remembers where every value came from.

The document is composed (not constructed) with the C loader, then walked by
hand so that we can: reject duplicate keys, bound the size of what aliases
expand to (the "billion laughs" bomb), and record a ``line:col`` for every
JSON pointer, which is what error messages quote.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from generators.errors import SpecError, SpecErrors, clip, excerpt

MAX_FILE_BYTES = 256 * 1024
MAX_NODES = 20_000
MAX_DEPTH = 64

_STR_TAG = "tag:yaml.org,2002:str"


@lru_cache(maxsize=None)
def _pyyaml() -> tuple[Any, type, Any]:
    """PyYAML, its loader (the C one when built with libyaml) and a constructor, on first need:
    importing it costs a process 23 ms, which a build whose specs are all unchanged never needs."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    resolved: dict[tuple[str, Any], str] = {}

    class Loader(base):  # type: ignore[misc, valid-type]
        """The safe loader, remembering each plain scalar's tag: the resolver's regular expressions ran
        for every scalar of every file (a tenth of a spec's validation), and specs repeat their keys and
        values. The tag depends on the text and its style alone (the safe loader has no path resolvers)."""

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is not yaml.ScalarNode:
                return super().resolve(kind, value, implicit)
            key = (value, implicit)
            tag = resolved.get(key)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(resolved) < _RESOLVED_MAX:
                    resolved[key] = tag
            return tag

    return yaml, Loader, yaml.constructor.SafeConstructor()


_RESOLVED_MAX = 200_000  # scalars whose tags are remembered (a few megabytes at most)


@dataclass
class Located:
    """A loaded document plus where each JSON pointer starts in the file."""

    path: str
    data: Any
    marks: dict[str, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[str, tuple[int, int]] = field(default_factory=dict)

    def where(self, pointer: str, key: bool = False) -> tuple[int, int]:
        """Best line/col for a pointer: its own mark, else its nearest ancestor's."""
        if key and pointer in self.key_marks:
            return self.key_marks[pointer]
        probe = pointer
        while True:
            if probe in self.marks:
                return self.marks[probe]
            if not probe:
                return (1, 1)
            probe = probe.rsplit("/", 1)[0]

    def error(self, pointer: str, message: str, key: bool = False, warning: bool = False) -> SpecError:
        line, col = self.where(pointer, key=key)
        return SpecError(self.path, line, col, pointer, message, warning)


def escape_pointer_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def pointer_of(parts: Any) -> str:
    return "".join("/" + escape_pointer_token(str(p)) for p in parts)


class _Walker:
    def __init__(self, located: Located, max_nodes: int = MAX_NODES) -> None:
        self.located = located
        self.max_nodes = max_nodes
        self.nodes = 0
        self.errors: list[SpecError] = []

    def _mark(self, node: Any) -> tuple[int, int]:
        return (node.start_mark.line + 1, node.start_mark.column + 1)

    def walk(self, node: Any, pointer: str, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            line, col = self._mark(node)
            raise SpecErrors([SpecError(self.located.path, line, col, "",
                                        f"document expands to more than {self.max_nodes} values "
                                        "(YAML aliases nested too deep?); refusing to load it")])
        if depth > MAX_DEPTH:
            line, col = self._mark(node)
            raise SpecErrors([SpecError(self.located.path, line, col, "",
                                        f"document is nested more than {MAX_DEPTH} levels deep")])
        self.located.marks.setdefault(pointer, self._mark(node))
        if node.id == "mapping":  # PyYAML's node kinds: "scalar", "sequence", "mapping"
            result: dict[str, Any] = {}
            seen: dict[Any, tuple[int, int]] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    line, col = self._mark(key_node)
                    self.errors.append(SpecError(self.located.path, line, col, pointer,
                                                 "YAML merge keys ('<<') are not supported"))
                    continue
                if key_node.id != "scalar":
                    line, col = self._mark(key_node)
                    self.errors.append(SpecError(self.located.path, line, col, pointer,
                                                 "mapping keys must be plain strings"))
                    continue
                key = self._scalar(key_node, pointer)
                if not isinstance(key, str):
                    key = str(key_node.value)
                child = f"{pointer}/{escape_pointer_token(key)}"
                if key in seen:
                    line, col = self._mark(key_node)
                    first = seen[key]
                    message = f"duplicate key {excerpt(key, 60)} (first defined at line {first[0]})"
                    self.errors.append(SpecError(self.located.path, line, col, child, message))
                    continue
                seen[key] = self._mark(key_node)
                self.located.key_marks[child] = self._mark(key_node)
                result[key] = self.walk(value_node, child, depth + 1)
            return result
        if node.id == "sequence":
            return [self.walk(item, f"{pointer}/{i}", depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, pointer)

    def _scalar(self, node: Any, pointer: str) -> Any:
        if node.tag == _STR_TAG:
            return node.value  # what the constructor returns for a string, most of a spec's values
        yaml, _, constructor = _pyyaml()
        try:
            value = constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            line, col = self._mark(node)
            self.errors.append(SpecError(self.located.path, line, col, pointer, f"invalid value: {clip(str(exc))}"))
            return None
        finally:
            constructor.constructed_objects.clear()  # its memo would keep every node of every file loaded
        if type(value).__name__ in ("date", "datetime"):
            # Keep timestamps as the text the user wrote; the schema decides.
            return str(node.value)
        return value


def _mark_error(path: str, exc: Any, text: str) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        problem = f"{exc.context}: {exc.problem}"
    if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
        # PyYAML says "found character that cannot start any token" without naming it.
        return SpecError(path, line, col, "", "YAML syntax error: a tab character; YAML indents with spaces only")
    return SpecError(path, line, col, "", f"YAML syntax error: {problem}")


def _char_at(text: str, line: int, column: int) -> str:
    """The character at a 0-based line and column of ``text`` ('' past its end)."""
    lines = text.split("\n", line + 1)
    return lines[line][column:column + 1] if line < len(lines) else ""


def _decode(path: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise SpecErrors([SpecError(path, line, col, "",
                                    f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})")]) from None


_EXTERNAL_LINKS: list[bool] = []  # set by allow_external_links(); else NTHLAYER_ALLOW_EXTERNAL_LINKS decides
_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def allow_external_links(allowed: bool) -> None:
    """Read input files that are symbolic links to files outside the project (refused by default)."""
    _EXTERNAL_LINKS[:] = [allowed]


def external_links_allowed() -> bool:
    """Whether symbolic links leaving the project are read (the flag, else $NTHLAYER_ALLOW_EXTERNAL_LINKS);
    cached validation results depend on it (nthlayer/buildsys/plan.py)."""
    return _EXTERNAL_LINKS[0] if _EXTERNAL_LINKS else os.environ.get("NTHLAYER_ALLOW_EXTERNAL_LINKS") == "1"


def project_root(path: str) -> str:
    """The project an input file belongs to: the current folder when the file lies under it (nthlayer
    runs from the project: ``doit``, ``nthlayer validate services/``), else the folder above the file's."""
    here = os.path.realpath(".")
    absolute = os.path.abspath(path)
    if absolute.startswith(os.path.join(os.path.abspath("."), "")):
        return here
    return os.path.realpath(os.path.dirname(os.path.dirname(absolute)))


def _error(path: str, message: str) -> SpecErrors:
    return SpecErrors([SpecError(path, 1, 1, "", message)])


def _link_problem(path: str) -> SpecErrors | None:
    """A symbolic link that dangles, loops or (unless allowed) leaves the project."""
    if not os.path.islink(path):
        return None
    target = os.path.realpath(path)
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return _error(path, "symbolic link that loops (it leads back to itself)")
        return _error(path, f"symbolic link to {clip(target)}, which does not exist")
    root = project_root(path)
    if not external_links_allowed() and not target.startswith(os.path.join(root, "")):
        return _error(path, f"symbolic link to {clip(target)}, outside the project {clip(root)}; refused "
                            "(--allow-external-links, or NTHLAYER_ALLOW_EXTERNAL_LINKS=1 for a build, reads it)")
    return None


def read_bounded(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """Read a regular file (symbolic links resolved), refusing (without reading it all) one larger than
    ``limit`` bytes, and anything else without reading it: a named pipe would block the build forever."""
    problem = _link_problem(path)
    if problem is not None:
        raise problem
    try:
        # O_NONBLOCK: opening a named pipe would otherwise wait for a writer; regular files ignore it.
        handle = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
    except OSError as exc:
        raise _error(path, f"cannot read file: {exc.strerror}") from None
    with handle:
        status = os.fstat(handle.fileno())
        mode = status.st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a file")
            raise _error(path, f"not a regular file ({kind}); only regular files are read")
        try:
            # Its size and one byte more (a file that grew since shows it), not limit + 1 bytes: a buffer
            # that large made and shrunk for every small spec cost more than the read.
            raw = handle.read(min(status.st_size, limit) + 1)
            if status.st_size < len(raw) <= limit:
                raw += handle.read(limit + 1 - len(raw))
        except OSError as exc:
            raise _error(path, f"cannot read file: {exc.strerror}") from None
    if len(raw) > limit:
        size = os.path.getsize(path)
        raise SpecErrors([SpecError(path, 1, 1, "",
                                    f"file is {size} bytes; files larger than {limit} bytes are refused")])
    return raw


def _compose(path: str, raw: bytes | None, max_bytes: int, many: bool) -> list[Any]:
    """The composed YAML node(s) of a file: one document, or (``many``) every document in it."""
    if raw is None:
        raw = read_bounded(path, max_bytes)
    elif len(raw) > max_bytes:
        raise SpecErrors([SpecError(path, 1, 1, "",
                                    f"file is {len(raw)} bytes; files larger than {max_bytes} bytes are refused")])
    text = _decode(path, raw)
    yaml, loader, _ = _pyyaml()
    try:
        nodes = list(yaml.compose_all(text, Loader=loader)) if many else [yaml.compose(text, Loader=loader)]
    except yaml.MarkedYAMLError as exc:
        raise SpecErrors([_mark_error(path, exc, text)]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - unmarked errors are rare
        raise SpecErrors([SpecError(path, 1, 1, "", f"YAML error: {exc}")]) from None
    except RecursionError:
        raise SpecErrors([SpecError(path, 1, 1, "", "document is nested too deeply")]) from None
    nodes = [node for node in nodes if node is not None]
    if not nodes:
        raise SpecErrors([SpecError(path, 1, 1, "", "file is empty; expected a mapping")])
    return nodes


def _located(path: str, node: Any, max_bytes: int) -> Located:
    located = Located(path, None)
    walker = _Walker(located, max(MAX_NODES, max_bytes // 8))
    located.data = walker.walk(node, "", 0)
    if walker.errors:
        raise SpecErrors(walker.errors)
    return located


def load_yaml(path: str, raw: bytes | None = None, max_bytes: int = MAX_FILE_BYTES) -> Located:
    """Load one YAML document from ``path`` (or from ``raw``) with line marks.

    Raises SpecErrors for anything that is not a single, well-formed document.
    """
    return _located(path, _compose(path, raw, max_bytes, many=False)[0], max_bytes)


def load_yaml_documents(path: str, raw: bytes | None = None, max_bytes: int = MAX_FILE_BYTES) -> list[Located]:
    """Every document of a ``---``-separated YAML file (OpenSLO, Sloth's multi-service files), each with
    its line marks (pointers are relative to its own document; lines count from the file's start).
    Empty documents are skipped; raises SpecErrors when there is none, or for any malformed one."""
    located: list[Located] = []
    errors: list[SpecError] = []
    for node in _compose(path, raw, max_bytes, many=True):
        try:
            located.append(_located(path, node, max_bytes))
        except SpecErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise SpecErrors(errors)
    return located
