"""``state/validate-cache.json``: what ``nthlayer validate`` found about each spec, by content.

A spec's own checks (its summary: own errors and warnings, name, upstreams, technologies), the warnings
for alerts its dependency selectors silence, and its policy verdict are functions of its path and bytes,
given the validating code, the catalog, the policies and the external-links setting. Those are the
cache's key (:func:`cache_key`); each entry is keyed by a SHA-256 of the spec's path and bytes, so a
checkout that changes file times (git, a CI cache restore) still hits, and any edit misses. The checks
that involve other files (duplicate names, unknown upstreams and technologies, composites) are made
again on every run from the summaries.

Written only where the state folder already exists (the build made it) and only when an entry changed;
atomically. A file that is a symbolic link is never cached (where it points is part of its verdict).
"""
from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from typing import Any

from generators.catalog import technology_files
from generators.errors import SpecError
from generators.render import write_if_changed
from generators.yamlload import external_links_allowed

CACHE_FILE = "validate-cache.json"
FORMAT = "1"
# Besides the spec-index's code (nthlayer/buildsys/plan.py INDEX_CODE, which decides a summary and the
# selector warnings), what decides a verdict's input document.
_OWN_CODE = ("policy_input.py",)
_LIBRARIES = ("jsonschema", "fastjsonschema", "PyYAML", "google-re2", "promql-parser")


def _library_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def cache_key(catalog_dir: str, policies_digest: str) -> str:
    """What every entry is valid for: the validating code (sizes and times, as the build's spec index
    keys it), the libraries' versions, each catalog file's size and time, the policies' digest, and
    whether links leaving the project are read."""
    from nthlayer.buildsys.kinds import GENERATORS_DIR
    from nthlayer.buildsys.plan import INDEX_CODE

    parts = [FORMAT, policies_digest, f"external-links:{int(external_links_allowed())}"]
    for name in (*INDEX_CODE, *_OWN_CODE):
        stat = (GENERATORS_DIR / name).stat()
        parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    parts += [f"{name}={_library_version(name)}" for name in _LIBRARIES]
    for tech, path in sorted(technology_files(catalog_dir).items()):
        stat = os.stat(path)
        parts.append(f"{tech}:{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def content_digest(path: str) -> str | None:
    """The entry key of a spec file: its path and bytes (None: a link, or unreadable: always checked)."""
    try:
        if os.path.islink(path):
            return None
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return hashlib.sha256(path.encode("utf-8", "surrogateescape") + b"\0" + raw).hexdigest()


class ValidateCache:
    """The entries of one key: ``[summary, selector warnings, verdict or None]`` by content digest. The
    entries of files not seen this run are dropped on save (the file keeps the folder's specs only)."""

    def __init__(self, path: str | None, key: str) -> None:
        self.path = path
        self.key = key
        self.entries: dict[str, list[Any]] = {}
        self.seen: set[str] = set()
        self.dirty = False
        if path and os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    data = json.load(handle)
                if data.get("key") == key and isinstance(data.get("files"), dict):
                    self.entries = data["files"]
            except (OSError, ValueError, AttributeError):
                self.entries = {}
        self.loaded = len(self.entries)

    def get(self, digest: str | None) -> list[Any] | None:
        if digest is None:
            return None
        self.seen.add(digest)
        return self.entries.get(digest)

    def put(self, digest: str | None, entry: list[Any]) -> None:
        if digest is None:
            return
        self.seen.add(digest)
        if self.entries.get(digest) != entry:
            self.entries[digest] = entry
            self.dirty = True

    def save(self) -> None:
        """Write the file (atomically) when an entry changed or went; a read-only state folder is no error."""
        if not self.path:
            return
        stale = [digest for digest in self.entries if digest not in self.seen]
        for digest in stale:
            del self.entries[digest]
        if not (self.dirty or stale):
            return
        data = json.dumps({"key": self.key, "files": self.entries}, separators=(",", ":"), sort_keys=True)
        try:
            write_if_changed(self.path, data.encode("utf-8"))
        except OSError:
            pass  # a cache: the next run checks again


def lines_json(lines: Any) -> list[list[Any]]:
    return [list(line) for line in lines]


def lines_of(data: list[list[Any]]) -> tuple[SpecError, ...]:
    return tuple(SpecError(*line) for line in data)


__all__ = ["CACHE_FILE", "ValidateCache", "cache_key", "content_digest", "lines_json", "lines_of"]
