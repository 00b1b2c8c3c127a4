"""Building services: ``nthlayer build`` (doit in this process), ``nthlayer build --check`` and
``POST /api/v1/slos/generate`` (doit in a child process). Every path runs the one packaged build
definition (nthlayer.buildsys.dodo) and maps doit's exit status the same way."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from generators.errors import UserError

BUILD_TIMEOUT_SECONDS = 600.0


def _task_loader() -> Any:
    """doit's loader for the packaged task definitions, made when doit loads them (after it has read
    ``name=value`` variables), as its own loader imports dodo.py then."""
    from doit.cmd_base import NamespaceTaskLoader

    class PackagedTasks(NamespaceTaskLoader):
        def setup(self, opt_values: dict[str, Any]) -> None:
            from nthlayer.buildsys.dodo import namespace

            self.namespace = namespace()

    return PackagedTasks()


def run_build(command: list[str], options: list[str], services: str, name: str = "nthlayer build") -> int:
    """Run a doit command (``run`` with task names and options, ``list``, ``clean`` …) on the packaged
    tasks, in this process and folder; nthlayer's exit code. A ``run`` is audited (ok or failed)."""
    from doit.doit_cmd import DoitMain

    from nthlayer.buildsys.dodo import doit_exit_code

    doit = DoitMain(_task_loader())
    doit.BIN_NAME = name  # doit's hints ("Type ... list") name the command the user typed
    code = doit_exit_code(doit.run([*command, *options]))
    if command == ["run"]:
        from nthlayer.state.db import record_audit

        record_audit("build", None, "ok" if code == 0 else "failed",
                     {"exit": code, "doit_args": options, "services": services})
    return code


def check_build(services: str, out: str, state: str, catalog: str | None, secrets_dir: str | None,
                strict: bool) -> tuple[list[tuple[str, str]], list[str]]:
    """``nthlayer build --check``: the files of ``out`` that differ from what the specs produce, and the
    error lines of invalid inputs (nthlayer.buildsys.outputs.check_out); writes nothing."""
    from nthlayer.buildsys.outputs import check_out

    state_db = os.environ.get("NTHLAYER_STATE", os.path.join(state, "nthlayer.duckdb"))
    return check_out(services, out, state_db, os.path.join(state, "spec-index.json"), catalog, secrets_dir, strict)


@dataclass(frozen=True)
class BuildOutcome:
    exit_code: int  # nthlayer build's: 0 built, 1 a spec or task failed
    output: str


def build_services(names: list[str], services_dir: str, out_dir: str, workdir: str,
                   timeout: float = BUILD_TIMEOUT_SECONDS) -> BuildOutcome:
    """Run the doit build (dodo.py, as ``nthlayer build``) for the named services' tasks only (a name
    without a spec in ``services_dir``: NotFound, before anything runs).

    In a child process: doit prints, changes directory and forks workers, none of which a server's
    threads may share; and the child cannot hold up the server longer than ``timeout``."""
    from nthlayer.buildsys.dodo import DODO_FILE, doit_exit_code
    from nthlayer.ops.services import NotFound, spec_index

    known = spec_index(services_dir)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise NotFound(f"no spec for service {', '.join(repr(n) for n in unknown)} in {services_dir}")
    command = [sys.executable, "-m", "doit", "run", "-f", DODO_FILE, "-d", workdir,
               f"services={os.path.abspath(services_dir)}", f"out={os.path.abspath(out_dir)}",
               *(f"service:{name}" for name in names)]
    try:
        done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UserError(f"the build did not finish within {timeout:g} s") from None
    return BuildOutcome(doit_exit_code(done.returncode), (done.stdout + done.stderr).strip())
