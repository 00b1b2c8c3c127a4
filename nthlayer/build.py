"""What dodo.py wires: the build plan (which services, which files), task actions, and the reporter.

The plan is computed once per doit run from the spec files. A spec that fails
validation still gets its tasks: they fail with the spec's error lines, and
no file of that service (or any other) is touched.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from doit.exceptions import TaskFailed
from doit.reporter import ConsoleReporter

from generators.catalog import default_catalog_dir, technology_files
from generators.errors import SpecError, SpecErrors
from generators.model import Service
from generators.render import write_all
from generators.spec import RESERVED_SERVICE_NAMES, LoadedSpec, expand_paths, validate_specs

GENERATORS_DIR = Path(__file__).resolve().parent.parent / "generators"

# Every artifact kind: the generator modules its output depends on (besides the
# spec-loading core) and the files it writes, relative to out/<service>/.
CORE_CODE = ("errors.py", "yamlload.py", "spec.py", "model.py", "tiers.py", "render.py", "promql.py",
             "slo_maths.py", "schemas/service.schema.json")
ARTIFACTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "openslo": (("openslo.py",), ("openslo/service.yaml", "openslo/availability.yaml", "openslo/latency.yaml")),
    "slo_rules": (("slo_rules.py",), ("prometheus/slo.rules.yaml", "prometheus/slo-rules.test.yaml",
                                      "prometheus/scrape.yaml")),
    "alerts": (("tech_alerts.py", "promql_scope.py", "catalog.py", "schemas/catalog.schema.json"),
               ("prometheus/alerts.yaml",)),
    "pagerduty": (("pagerduty.py",), ("pagerduty.json",)),
}
SHARED_DIRS = frozenset({"alertmanager", "reports"})


@dataclass
class SpecEntry:
    path: str
    stem: str
    spec: LoadedSpec | None
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[SpecError] = field(default_factory=list)

    @property
    def service(self) -> Service | None:
        return self.spec.service if self.spec and not self.errors else None


@dataclass
class BuildPlan:
    services_dir: str
    out_dir: str
    catalog_dir: str
    entries: list[SpecEntry]

    @property
    def valid(self) -> list[Service]:
        return [e.service for e in self.entries if e.service is not None]

    def protected_dirs(self) -> set[str]:
        """out/ subfolders a prune must keep: current services, broken specs' stems, shared output."""
        names = {s.name for s in self.valid} | {e.stem for e in self.entries if e.service is None}
        return names | SHARED_DIRS

    def catalog_files(self, service: Service) -> list[str]:
        files = technology_files(self.catalog_dir)
        return [files[t] for t in service.technology_types if t in files]


def make_plan(services_dir: str, out_dir: str, catalog_dir: str | None = None) -> BuildPlan:
    catalog_dir = catalog_dir or default_catalog_dir()
    files = expand_paths([services_dir]) if os.path.isdir(services_dir) else []
    result = validate_specs(files, technology_files(catalog_dir))
    by_path: dict[str, SpecEntry] = {
        path: SpecEntry(path, Path(path).stem, None) for path in files
    }
    for spec in result.specs:
        by_path[spec.located.path].spec = spec
    for error in result.errors:
        by_path[error.path].errors.append(error)
    for warning in result.warnings:
        by_path[warning.path].warnings.append(warning)
    return BuildPlan(services_dir, out_dir, catalog_dir, [by_path[p] for p in files])


def code_deps(kind: str) -> list[str]:
    extra, _ = ARTIFACTS[kind]
    return [str(GENERATORS_DIR / name) for name in (*CORE_CODE, *extra)]


def targets(out_dir: str, service: str, kind: str) -> list[str]:
    return [f"{out_dir}/{service}/{name}" for name in ARTIFACTS[kind][1]]


def _generate(kind: str, service: Service, out_dir: str, catalog_dir: str) -> dict[str, bytes]:
    base = f"{out_dir}/{service.name}"
    if kind == "openslo":
        from generators.openslo import openslo_files

        return openslo_files(service, f"{base}/openslo")
    if kind == "slo_rules":
        from generators.slo_rules import slo_rule_files

        return slo_rule_files(service, f"{base}/prometheus")
    if kind == "alerts":
        from generators.catalog import load_catalog
        from generators.tech_alerts import service_alert_files

        return service_alert_files(service, load_catalog(catalog_dir), f"{base}/prometheus")
    if kind == "pagerduty":
        from generators.pagerduty import pagerduty_files

        return pagerduty_files(service, base)
    raise ValueError(kind)


class SpecFailure(TaskFailed):
    """A task failure whose message is user-facing error lines (no traceback)."""


def build_action(kind: str, entry: SpecEntry, out_dir: str, catalog_dir: str) -> Callable[[], Any]:
    def action() -> Any:
        if entry.errors or entry.service is None:
            return SpecFailure("\n".join(e.format() for e in entry.errors))
        for warning in entry.warnings:
            if kind == "openslo":
                print(warning.format(), file=sys.stderr)
        try:
            files = _generate(kind, entry.service, out_dir, catalog_dir)
        except SpecErrors as exc:
            return SpecFailure("\n".join(exc.lines()))
        expected = set(targets(out_dir, entry.service.name, kind))
        if set(files) != expected:
            raise RuntimeError(f"{kind} generator wrote {sorted(files)}, dodo expects {sorted(expected)}")
        write_all(files)
        return None

    action.__name__ = f"build_{kind}"
    return action


def clean_targets(paths: Iterable[str], stop_at: str) -> None:
    """doit clean: remove the files, then any folders they leave empty (up to out/)."""
    stop = os.path.abspath(stop_at)
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        folder = os.path.dirname(os.path.abspath(path))
        while folder.startswith(stop + os.sep) and os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
            folder = os.path.dirname(folder)


def prune_out(out_dir: str, keep: Iterable[str]) -> None:
    """Remove out/<name>/ folders of services that no longer exist."""
    keep = set(keep)
    removed: list[str] = []
    if not os.path.isdir(out_dir):
        return None
    for name in sorted(os.listdir(out_dir)):
        path = os.path.join(out_dir, name)
        if name in keep or not os.path.isdir(path) or name.startswith("."):
            continue
        shutil.rmtree(path)
        removed.append(path)
    for path in removed:
        print(f"removed {path} (its service spec is gone)")
    return None


class NthlayerReporter(ConsoleReporter):
    """doit's console reporter, but spec errors print as plain `path:line:col: pointer: message` lines."""

    desc = "nthlayer: console output with plain spec error lines"

    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)
        self.spec_lines: set[str] = set()

    def skip_uptodate(self, task: Any) -> None:  # quiet no-op runs
        pass

    def add_failure(self, task: Any, fail: Any) -> None:
        if isinstance(fail, SpecFailure):
            self.spec_lines.update(line for line in fail.message.splitlines() if line)
            task.executed = False  # nothing useful in its captured output
            return
        super().add_failure(task, fail)

    def complete_run(self) -> None:
        super().complete_run()
        for line in sorted(self.spec_lines):
            sys.stderr.write(line + "\n")
        if self.spec_lines:
            sys.stderr.write("nthlayer: invalid specs were not built; other services' outputs are up to date\n")


ALERTMANAGER_FILES = ("alertmanager.yml",)


def alertmanager_targets(out_dir: str) -> list[str]:
    return [f"{out_dir}/alertmanager/{name}" for name in ALERTMANAGER_FILES]


def alertmanager_action(plan: BuildPlan) -> Callable[[], Any]:
    def action() -> Any:
        from generators.alertmanager import alertmanager_files

        files = alertmanager_files(plan.valid, f"{plan.out_dir}/alertmanager")
        write_all(files)
        return None

    action.__name__ = "build_alertmanager"
    return action
