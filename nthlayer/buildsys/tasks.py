"""The doit tasks' actions and definitions: one task per spec (every per-service artifact kind, only the
stale kinds regenerated), the shared kinds' tasks, doit clean and the prune of removed services."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from typing import Any, Callable, Iterable

from generators.alertmanager import Routing
from generators.errors import SpecErrors
from generators.model import Service
from generators.render import make_folder, write_all, write_if_changed
from generators.spec import extra_kinds
from nthlayer.buildsys.kinds import (FORMER_SHARED_DIRS, KINDS, PER_SERVICE, SERVICE_FILES, SHARED, artifact_files,
                                     code_fingerprint, generate, shared_folder, shared_targets, targets)
from nthlayer.buildsys.outputs import remove_leftovers, targets_stamp, targets_unedited
from nthlayer.buildsys.plan import BuildPlan, SpecEntry, load_service
from nthlayer.buildsys.plugin_kinds import (FORMAT_PREFIX, active, format_files, format_kinds,
                                            remove_stale_format_files, stale_plugin_kinds)
from nthlayer.buildsys.plugins import PluginError
from nthlayer.buildsys.policies import verdict_unchanged
from nthlayer.buildsys.reporter import SpecFailure
from nthlayer.config import ConfigError


def code_stamps(state_dir: str) -> dict[str, str]:
    """One file per artifact kind holding the hash of its generator code (rewritten only when that
    changes), so each service task lists its code as four file_deps and doit reports which changed."""
    stamps = {}
    for kind in PER_SERVICE:
        path = os.path.join(state_dir, "code", f"{kind}.sha256")
        write_if_changed(path, (code_fingerprint(kind) + "\n").encode())
        stamps[kind] = path
    return stamps


def all_kinds(plugins: Iterable[str] = ()) -> list[str]:
    """Every kind of a spec: the registered ones, then the output formats of the plugins that apply to it."""
    return [*PER_SERVICE, *format_kinds(plugins)]


def stale_kinds(spec_path: str, changed: Iterable[str], stamps: dict[str, str], plugins: Iterable[str] = ()
                ) -> list[str]:
    """The artifact kinds a service task must regenerate, from the file_deps doit says changed: all
    after a spec edit (or a first build, or a missing output: doit then reports every file_dep), a
    kind whose code stamp changed, the technology alerts after a catalog file edit; for a change of the
    stamp of one of its ``plugins``, the kinds that plugin feeds (nthlayer.buildsys.plugin_kinds)."""
    changed = set(changed)
    every = all_kinds(plugins)
    if not changed or spec_path in changed:
        return every
    kinds = {kind for kind, stamp in stamps.items() if stamp in changed}
    kinds |= stale_plugin_kinds(changed, plugins)
    if changed - set(stamps.values()) - set(active().stamps.values()):
        kinds.update(kind.name for kind in KINDS.values() if kind.reads_catalog)  # the rest are catalog files
    return [kind for kind in every if kind in kinds]


def service_outputs(entry: SpecEntry, out_dir: str) -> list[str]:
    """The files a valid spec's task writes (its targets); none for a broken spec."""
    if entry.name is None:
        return []
    base = f"{out_dir}/{entry.name}/"
    slos, extras = entry.summary.slos, entry.summary.extras
    # Every kind's targets (a thousand tasks are made a run: the default SLOs' list is made once).
    return [base + name for name in (SERVICE_FILES if slos is None and not extras else
                                     [f for kind in PER_SERVICE for f in artifact_files(kind, slos, extras)])]


def service_checks(entry: SpecEntry, plan: BuildPlan, stamps: dict[str, str], name: str) -> dict[str, Any]:
    """What doit checks of a spec's task: its name, file dependencies, targets and ``uptodate`` entries.
    The settled fast path decides on these alone (nthlayer.buildsys.settled); :func:`service_task` adds
    what runs it."""
    # A spec that is no regular file (a named pipe, a dangling link) is reported by its action; doit
    # must not hash it: opening a named pipe waits forever, a missing file_dep is a doit error. (A spec
    # without errors was read as a regular file: a no-op build of 1000 specs asks nothing more.)
    regular = not entry.errors or os.path.isfile(entry.path)
    deps = [entry.path, *stamps.values()] if regular else list(stamps.values())
    plugin_stamps = active().stamps
    deps += [plugin_stamps[key] for key in entry.plugins if key in plugin_stamps]  # the plugins that apply to it
    outputs = service_outputs(entry, plan.out_dir)
    if entry.name is not None:
        deps += plan.catalog_files(entry)
    # A hand-edited file is rebuilt; the action records the files as it wrote them.
    uptodate: list[Any] = [targets_unedited(outputs, saved_by_action=True)] if outputs else []
    if plan.policy_error is None and entry.name is not None:
        # It depends on its policy verdict, not on the policy files: a changed verdict re-runs it. (While a
        # policy cannot be used there are no verdicts: only stale services run, to fail; see policies_task.)
        uptodate.append(verdict_unchanged(entry.verdict) if entry.verdict else _NO_VERDICT)
    if entry.errors or active().error is not None:
        # Its files may be unchanged since a successful run (a warning under --strict, a clash with
        # another spec, a policy's deny, a plugin that does not load): the task must still run, to fail
        # and report the errors.
        uptodate = [False]
    return {"name": name, "file_dep": deps, "targets": outputs, "uptodate": uptodate}


def service_task(entry: SpecEntry, plan: BuildPlan, stamps: dict[str, str], name: str,
                 checks: dict[str, Any] | None = None) -> dict[str, Any]:
    """The doit task of one spec: every per-service artifact, regenerating only the stale kinds.
    ``checks``: its :func:`service_checks`, when already made."""
    task = service_checks(entry, plan, stamps, name) if checks is None else checks
    every = all_kinds(entry.plugins)

    def title(task: Any) -> str:
        kinds = stale_kinds(entry.path, task.dep_changed or (), stamps, entry.plugins)
        return task.name if len(kinds) == len(every) else f"{task.name} ({', '.join(kinds)})"

    outputs = task["targets"]
    task.update(actions=[service_action(entry, plan, stamps, outputs)], title=title,
                clean=[(clean_targets, [outputs, plan.out_dir])])
    return task


_NO_VERDICT = verdict_unchanged("")  # most specs: one check shared by their tasks


def policies_task(plan: BuildPlan) -> dict[str, Any]:
    """Fails, with the lines naming the file, while nthlayer.toml's [policy] or a policy file cannot be
    used (no service is judged, so none is built); up to date otherwise. Services themselves stay up to
    date meanwhile, so fixing the policy rebuilds only what its verdicts change."""
    def action() -> Any:
        return SpecFailure(plan.policy_error) if plan.policy_error else None

    action.__name__ = "check_policies"
    return {"actions": [action], "uptodate": [plan.policy_error is None], "verbosity": 2}


def service_files(service: Service, plan: BuildPlan, kinds: Iterable[str] = PER_SERVICE) -> dict[str, bytes]:
    """The files of ``kinds`` for one service, as the build writes them (``nthlayer build --check``
    compares out/ with them)."""
    files: dict[str, bytes] = {}
    for kind in kinds:
        if kind.startswith(FORMAT_PREFIX):  # an output-format plugin: the paths are its own (checked there)
            files.update(format_files(kind, service, plan.out_dir))
            continue
        made = generate(kind, service, plan.out_dir, plan.catalog_dir, plan.catalog_cache)
        # The SLO names decide the file names (the default pair's names give the default files).
        expected = set(targets(plan.out_dir, service.name, kind, tuple(s.name for s in service.slos),
                               extra_kinds(service)))
        if set(made) != expected:
            raise RuntimeError(f"{kind} generator wrote {sorted(made)}, dodo expects {sorted(expected)}")
        files.update(made)
    return files


def service_action(entry: SpecEntry, plan: BuildPlan, stamps: dict[str, str], outputs: list[str]
                   ) -> Callable[..., Any]:
    """The action of a spec's task: its stale kinds' files written, and the stamp of ``outputs`` (its
    targets) returned as the task's ``targets`` value (nthlayer.buildsys.outputs.targets_unedited)."""
    def action(changed: list[str]) -> Any:  # doit passes the file_deps that changed
        if active().error is not None:  # a plugin that does not load: no service is built without it
            return SpecFailure(active().error.format())
        if plan.policy_error:
            return SpecFailure(plan.policy_error)
        if entry.errors or entry.name is None:
            return SpecFailure("\n".join(e.format() for e in entry.errors))
        for warning in entry.warnings:
            print(warning.format(), file=sys.stderr)
        try:
            service = load_service(entry.path)
            kinds = stale_kinds(entry.path, changed, stamps, entry.plugins)
            files = service_files(service, plan, kinds)
        except SpecErrors as exc:
            return SpecFailure("\n".join(exc.lines()))
        except ConfigError as exc:  # nthlayer.toml does not parse: its one `file:line:col:` line
            return SpecFailure(str(exc))
        except PluginError as exc:
            return SpecFailure(exc.as_spec_error().format())
        # Only after every kind was generated: an error leaves all files as they were. Each file is written
        # under a temporary name and renamed (a killed build leaves whole files); a service's first build
        # makes its folders as it goes, and neither reads back nor cleans up after files in folders it made.
        everything = len(kinds) == len(all_kinds(entry.plugins))
        base = f"{plan.out_dir}/{service.name}"
        made: set[str] = set()
        make_folder(base, made)  # one mkdir tells a first build (no file to read back) from a later one
        write_all(files, made)
        if base not in made:
            remove_leftovers(sorted({os.path.dirname(path) for path in files} - made))  # a killed build's temp files
            _remove_former_files(base, [kind for kind in kinds if kind in KINDS], files)
            remove_stale_format_files(base, kinds, files, BUILT_IN_FOLDERS, everything)
        return {"targets": targets_stamp(outputs)}

    action.__name__ = "build_service"
    return action


# The folders under out/<service>/ the registered kinds write, or wrote in earlier layouts (an output format
# may not take their names).
BUILT_IN_FOLDERS = {name.split("/", 1)[0] for kind in KINDS.values() for name in (*kind.files, *kind.former)
                    if "/" in name or name in kind.former}


def _remove_former_files(base: str, kinds: list[str], files: dict[str, bytes]) -> None:
    """Remove what the regenerated ``kinds`` wrote before and no longer write: the files of a kind's default
    list it did not write now (``slos: []``), and its earlier layouts' files and folders (``former``)."""
    for name in kinds:
        kind = KINDS[name]
        for file in kind.files:
            path = f"{base}/{file}"
            if path not in files:
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass
        for old in kind.former:
            path = f"{base}/{old}"
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            except (IsADirectoryError, PermissionError):  # a folder (Linux says EISDIR, macOS EPERM)
                shutil.rmtree(path)


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
        why = "a folder of an earlier layout" if os.path.basename(path) in FORMER_SHARED_DIRS else "its service spec is gone"
        print(f"removed {path} ({why})")
    return None


def alertmanager_routes(plan: BuildPlan) -> list[Routing]:
    """What alertmanager.yml routes: :attr:`BuildPlan.routes` (do not modify it)."""
    return plan.routes


def routes_digest(routes: list[Routing]) -> str:
    return hashlib.sha256(json.dumps(sorted(routes)).encode()).hexdigest()


def shared_action(kind: str, plan: BuildPlan, settings: dict[str, str]) -> Callable[[], Any]:
    """The action of a shared kind's task: its files made from the whole plan, written atomically."""
    entry = SHARED[kind]

    def action() -> Any:
        files = entry.generate(plan, settings)
        remove_leftovers([shared_folder(kind, plan.out_dir)])
        write_all(files)
        return None

    action.__name__ = f"build_{kind}"
    return action


def shared_task(kind: str, plan: BuildPlan, settings: dict[str, str]) -> dict[str, Any]:
    """The doit task of a shared kind: rebuilt when its code, or what it reads from the plan, changed."""
    from doit.tools import config_changed

    outputs = shared_targets(kind, plan.out_dir)
    return {
        "actions": [shared_action(kind, plan, settings)],
        "uptodate": [config_changed({"code": code_fingerprint(kind), **SHARED[kind].inputs(plan, settings)}),
                     targets_unedited(outputs)],
        "targets": outputs,
        "clean": [(clean_targets, [outputs, plan.out_dir])],
    }
