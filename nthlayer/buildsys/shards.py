"""Sharded builds (docs/build.md "Sharded builds"): one shard's services per CI stage, the shared files
assembled from per-shard fragments in a final stage.

``doit shard=K/N`` builds the services of shard K of N only and, instead of the shared files (Alertmanager
routing, Grafana overview, kustomization, composites, reports), writes one *fragment*:
``out/.shards/shard-K-of-N.json``, what those files need from the shard's specs — the spec summaries and
routing facts the plan already holds (a broken spec's last valid routing included, from that stage's
state/spec-index.json). ``doit assemble=N`` reads the N fragments from ``out/.shards/`` (each stage's out/
downloaded into one), rebuilds the plan from them without validating or generating any service, writes
the shared files, and removes ``out/.shards/``: the final out/ is byte for byte a full build's.

A service's shard is a stable hash (SHA-256, not Python's salted ``hash()``) of its name, or of its team
(``shard_by=team``: a team's services build together); a broken spec is placed by its last valid name (or
team), else by its file's stem, so it falls in the shard whose state knows its last valid routing.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, replace
from typing import Any

from generators.alertmanager import Routing
from generators.errors import SpecError, UserError
from generators.render import write_if_changed
from generators.spec import FileSummary
from nthlayer.buildsys.plan import BuildPlan, SpecEntry

FRAGMENTS_DIR = ".shards"  # under out/: uploaded with each stage's out/, removed by the assembly
FRAGMENT_FORMAT = 1
SHARD_BY = ("name", "team")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int
    by: str = "name"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, entry: SpecEntry) -> bool:
        """Whether the spec of ``entry`` is built by this shard."""
        return shard_of(entry, self.count, self.by) == self.index


def parse_shard(text: str, by: str = "name", option: str = "shard=") -> Shard:
    """``K/N`` (1 ≤ K ≤ N) and ``name`` or ``team``; a UserError naming the value (as ``option``) otherwise."""
    by = by or "name"
    if by not in SHARD_BY:
        raise UserError(f"shard_by={by}: must be one of {', '.join(SHARD_BY)}")
    index, slash, count = text.strip().partition("/")
    if not slash or not index.isdigit() or not count.isdigit():
        raise UserError(f"{option}{text}: must be K/N, the shard K (1 to N) of N, e.g. {option}2/8")
    shard = Shard(int(index), int(count), by)
    if shard.count < 1:
        raise UserError(f"{option}{text}: the number of shards must be at least 1")
    if not 1 <= shard.index <= shard.count:
        raise UserError(f"{option}{text}: the shard must be between 1 and {shard.count} (K/N, e.g. {option}2/8)")
    return shard


def parse_count(text: str, option: str = "assemble=") -> int:
    """``assemble=N``: the number of shards, at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise UserError(f"{option}{text}: must be the number of shards, e.g. {option}8")
    return int(text)


def shard_key(entry: SpecEntry, by: str) -> str:
    """What places a spec: its service's name or team (a broken spec's last valid ones), else its stem."""
    if entry.routing is None:
        return entry.stem
    return entry.routing.team if by == "team" else entry.routing.name


def shard_number(key: str, count: int) -> int:
    """The shard (1 to ``count``) of ``key``: the same on every machine, run and Python hash seed."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % count + 1


def shard_of(entry: SpecEntry, count: int, by: str = "name") -> int:
    return shard_number(shard_key(entry, by), count)


def in_shard(plan: BuildPlan, shard: Shard) -> BuildPlan:
    """The plan of the specs of ``shard`` (each validated against all the others first: make_plan)."""
    return replace(plan, entries=[entry for entry in plan.entries if shard.holds(entry)])


def fragment_path(out_dir: str, shard: Shard) -> str:
    return f"{out_dir}/{FRAGMENTS_DIR}/shard-{shard.index}-of-{shard.count}.json"


def _files_digest(paths: list[str]) -> str:
    return hashlib.sha256("\0".join(paths).encode("utf-8")).hexdigest()


def fragment_bytes(full: BuildPlan, shard: Shard, secrets_dir: str) -> bytes:
    """The fragment of ``shard``: its specs' summaries, errors and routing facts, with what the assembly
    checks the other fragments against (same spec files, same shard count and key, same settings)."""
    mine = in_shard(full, shard)
    entries = [[entry.path, entry.stem, entry.summary.to_json(), entry.errors, entry.warnings,
                entry.routing, list(entry.upstream)] for entry in mine.entries]
    document = {
        "format": FRAGMENT_FORMAT,
        "shard": [shard.index, shard.count],
        "by": shard.by,
        "services_dir": full.services_dir,
        "secrets_dir": secrets_dir,
        "strict": full.strict,
        # Every shard saw the same spec files: the union of the fragments is then every spec, once.
        "files": _files_digest([entry.path for entry in full.entries]),
        "file_count": len(full.entries),
        "entries": entries,
    }
    return (json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


def fragment_task(full: BuildPlan, shard: Shard, secrets_dir: str) -> dict[str, Any]:
    """The doit task writing the shard's fragment (rewritten only when its bytes change)."""
    from doit.tools import config_changed

    from nthlayer.buildsys.outputs import targets_unedited

    path = fragment_path(full.out_dir, shard)
    data = fragment_bytes(full, shard, secrets_dir)

    def action() -> None:
        write_if_changed(path, data)

    action.__name__ = "write_fragment"
    return {
        "actions": [action],
        "targets": [path],
        "uptodate": [config_changed(hashlib.sha256(data).hexdigest()), targets_unedited([path])],
        "clean": True,
    }


def _entry(row: list[Any]) -> SpecEntry:
    path, stem, summary, errors, warnings, routing, upstream = row
    return SpecEntry(path, stem, FileSummary.from_json(summary), [SpecError(*e) for e in errors],
                     [SpecError(*w) for w in warnings], Routing(*routing) if routing is not None else None,
                     tuple(upstream))


def assembled_plan(services_dir: str, out_dir: str, catalog_dir: str, count: int, secrets_dir: str,
                   strict: bool, catalog_cache: str | None = None) -> BuildPlan:
    """The plan of a full build, from the fragments of ``count`` shards in out/.shards/ (no spec is read).

    A UserError names what does not fit: a missing or unreadable fragment, fragments of another shard
    count, made from other spec files or settings than the others, or for another services folder."""
    folder = f"{out_dir}/{FRAGMENTS_DIR}"
    documents = []
    for index in range(1, count + 1):
        path = fragment_path(out_dir, Shard(index, count))
        try:
            with open(path, encoding="utf-8") as handle:
                documents.append((path, json.load(handle)))
        except FileNotFoundError:
            found = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
            raise UserError(f"{path}: missing: assembling {count} shards needs the fragment of each "
                            f"(found: {', '.join(found) or 'none'}; download every shard stage's out/ first)") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: cannot read the fragment: {exc}") from None
    first_path, first = documents[0]
    if first.get("format") != FRAGMENT_FORMAT:
        raise UserError(f"{first_path}: fragment format {first.get('format')!r}, this nthlayer reads "
                        f"{FRAGMENT_FORMAT}: build the shards and assemble with the same version")
    for path, document in documents:
        for key, wanted in (("format", FRAGMENT_FORMAT), ("by", first["by"]), ("files", first["files"]),
                            ("secrets_dir", secrets_dir), ("strict", strict), ("services_dir", services_dir)):
            if document.get(key) != wanted:
                raise UserError(f"{path}: {key} is {document.get(key)!r} but {wanted!r} in this assembly "
                                f"(or {first_path}): every shard must build the same specs with the same settings")
    entries = sorted((_entry(row) for _, document in documents for row in document["entries"]),
                     key=lambda entry: entry.path)
    paths = [entry.path for entry in entries]
    if len(paths) != first["file_count"] or _files_digest(paths) != first["files"]:
        raise UserError(f"{folder}: the fragments hold {len(paths)} specs, the shards saw {first['file_count']}: "
                        f"a fragment of another build is among them")
    return BuildPlan(services_dir, out_dir, catalog_dir, entries, catalog_cache, strict)


def broken_specs(plan: BuildPlan) -> list[str]:
    """The error lines of the specs that failed in their shard (their stage failed already)."""
    return [error.format() for entry in plan.entries for error in entry.errors]


def shard_errors_task(plan: BuildPlan) -> dict[str, Any]:
    """Fails with the lines of the specs broken in their shard (their stage failed already), as their
    service tasks fail a full build; their services keep their last valid routing, as there."""
    from nthlayer.buildsys.reporter import SpecFailure

    lines = broken_specs(plan)

    def action() -> Any:
        return SpecFailure("\n".join(lines)) if lines else None

    action.__name__ = "check_shard_errors"
    return {"actions": [action], "uptodate": [not lines], "verbosity": 2}


def assemble_task(plan: BuildPlan, after: list[str]) -> dict[str, Any]:
    """The last task of an assembly: removes out/.shards/ once the tasks ``after`` succeeded (else the
    fragments stay: fix the spec, rebuild its shard, assemble again)."""
    def action() -> None:
        shutil.rmtree(f"{plan.out_dir}/{FRAGMENTS_DIR}", ignore_errors=True)

    action.__name__ = "remove_fragments"
    return {"actions": [action], "task_dep": after, "uptodate": [False], "verbosity": 2}
