"""NthLayer as users install it, not from this checkout: a wheel in a fresh virtualenv, run in a monorepo
that has only services/, and the pre-commit hook run by pre-commit itself (which pip-installs the hook's
repository the same way). Dependencies come from the package index (pip's cache makes it quick)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

BAD_SPEC = "service: Bad\ntier: 9\n"
BAD_LINES = ("services/bad.yaml:1:1: /: missing required key 'team'\n"
             "services/bad.yaml:1:10: /service: 'Bad' is not a valid service name: use lowercase letters, digits "
             "and hyphens, start and end with a letter or digit, at most 63 characters\n"
             "services/bad.yaml:2:7: /tier: 9 is not a tier: use 1, 2, 3 or critical, standard, low\n")


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _git(cwd: Path, *args: str) -> None:
    result = _run(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args], cwd)
    assert result.returncode == 0, result.stderr


def _snapshot(target: Path) -> Path:
    """This checkout's files as they are now (committed or not), committed in a new git repository: what a
    CI clone holds, and a repository pre-commit can install the hook from."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
    assert listed.returncode == 0, listed.stderr
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    _git(target, "init", "-q")
    _git(target, "add", "-A")
    _git(target, "commit", "-q", "-m", "snapshot")
    return target


def _monorepo(folder: Path) -> Path:
    """A repository with only services/ (two good specs)."""
    (folder / "services").mkdir(parents=True)
    shutil.copy(ROOT / "services" / "payment-api.yaml", folder / "services")
    shutil.copy(ROOT / "services" / "user-service.yaml", folder / "services")
    _git(folder, "init", "-q")
    return folder


def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_an_installed_wheel_validates_and_builds_outside_the_checkout(tmp_path: Path) -> None:
    source = _snapshot(tmp_path / "source")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NTHLAYER_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(sys.prefix))  # no nthlayer but the installed one

    # pre-commit installs the hook's environment from the repository (pip install ., no -e) for each
    # try-repo run: both run while the wheel is built and installed.
    hooked = _monorepo(tmp_path / "hooked")
    (hooked / "services" / "bad.yaml").write_text(BAD_SPEC)
    _git(hooked, "add", "-A")
    try_repo = [sys.executable, "-m", "pre_commit", "try-repo", str(source), "nthlayer-validate", "--files"]
    hooks = {case: subprocess.Popen([*try_repo, *files], cwd=hooked, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
             for case, files in (("good", ["services/payment-api.yaml", "services/user-service.yaml"]),
                                 ("bad", ["services/bad.yaml", "services/payment-api.yaml"]))}
    try:
        wheels = tmp_path / "wheels"
        built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)], tmp_path)
        assert built.returncode == 0, built.stderr
        venv = tmp_path / "venv"
        assert _run([sys.executable, "-m", "venv", str(venv)], tmp_path).returncode == 0
        wheel = next(wheels.glob("nthlayer_slo-*.whl"))  # the distribution is nthlayer-slo (item 18)
        installed = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile", str(wheel)],
                         tmp_path, env, timeout=600)
        assert installed.returncode == 0, installed.stderr
        nthlayer = str(venv / "bin" / "nthlayer")
        monorepo = _monorepo(tmp_path / "monorepo")
        run_env = {**env, "NTHLAYER_STATE": str(monorepo / "state" / "nthlayer.duckdb")}

        # Every command's module is installed (nthlayer.cli.commands is a package of its own).
        from nthlayer.cli.commands import COMMANDS

        for command in COMMANDS:
            helped = _run([nthlayer, command, "--help"], monorepo, run_env)
            assert helped.returncode == 0 and helped.stdout.startswith(f"usage: nthlayer {command}"), helped.stderr

        valid = _run([nthlayer, "validate"], monorepo, run_env)
        assert (valid.returncode, valid.stdout, valid.stderr) == (0, "2 specs valid (2 services)\n", "")
        build = _run([nthlayer, "build"], monorepo, run_env)
        assert build.returncode == 0, build.stdout + build.stderr
        check = _run([nthlayer, "build", "--check"], monorepo, run_env)
        assert (check.returncode, check.stdout, check.stderr) == (0, "", "")
        # The Kubernetes data: the CRD made from the packaged schema, the vendored CRDs as package data.
        crd = _run([nthlayer, "operator", "--print-crd"], monorepo, run_env)
        assert crd.returncode == 0 and crd.stdout == (ROOT / "deploy" / "crd.yaml").read_text(), crd.stderr
        vendored = _run([str(venv / "bin" / "python"), "-c", "from generators.crd_schema import load_crd; "
                         "print(load_crd('monitoring.coreos.com_prometheusrules.yaml')['spec']['group'])"], monorepo)
        assert vendored.stdout == "monitoring.coreos.com\n", vendored.stderr
        # The report's vendored charting library and its licence are package data (docs/report.md).
        assert (monorepo / "out" / "reports" / "index.html").is_file()
        assets = _run([str(venv / "bin" / "python"), "-c", "from generators.report_html import ASSETS\n"
                       "print(' '.join(sorted(p.name for p in ASSETS.iterdir())))"], monorepo, run_env)
        assert assets.stdout.split() == ["VENDORED.md", "report.css", "report.js", "uPlot.LICENSE",
                                         "uPlot.iife.min.js", "uPlot.min.css"], assets.stderr

        # The same files as this checkout builds: the packaged catalog and build definition are these.
        here = _monorepo(tmp_path / "here")
        # The same settings as the installed run: the suite's own NTHLAYER_SECRETS_DIR (conftest) would
        # change alertmanager.yml's routing_key_file paths.
        local_env = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
        local = _run([sys.executable, "-m", "nthlayer", "build"], here,
                     {**local_env, "NTHLAYER_STATE": str(here / "state" / "nthlayer.duckdb")})
        assert local.returncode == 0, local.stderr
        assert _tree(monorepo / "out") == _tree(here / "out")
        assert "postgres" in (monorepo / "out" / "user-service" / "prometheus" / "alerts.rules.yaml").read_text()
    finally:
        outputs = {case: hook.communicate(timeout=600)[0] for case, hook in hooks.items()}
    assert hooks["good"].returncode == 0, outputs["good"]
    assert "nthlayer validate" in outputs["good"] and "Passed" in outputs["good"]
    assert hooks["bad"].returncode == 1, outputs["bad"]
    assert "Failed" in outputs["bad"] and BAD_LINES + "3 errors in 1 file\n" in outputs["bad"]
