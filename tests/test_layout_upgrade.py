"""Upgrading across issue 22's layout change: an out/ and state/ built by the release before it (one OpenSLO file
per SLO in openslo/, a k8s/ folder of three files per service, out/k8s/kustomization.yaml), then one build with
this code, must leave exactly the tree a fresh build writes, `nthlayer build --check` clean, and `doit clean`
must remove it all.

The old tree is made by the old code itself: the package and dodo.py of the last commit before the change
(`git archive` of it, kept as a test fixture), put first on the build's PYTHONPATH."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_build_check import _nthlayer
from tests.test_doit_build import _doit

BEFORE_LAYOUT = "f4eed63"  # main before issue 22 item 2 (out/<service>/openslo/, out/<service>/k8s/, out/k8s/)


def _old_code(tmp_path: Path) -> Path:
    """The old code, from tests/fixtures/release-f4eed63.tar.gz (``git archive f4eed63 dodo.py nthlayer
    generators rules_catalog``, kept in the repository so that the test also runs in a clone without that history)."""
    old = tmp_path / "old"
    old.mkdir()
    with tarfile.open(ROOT / "tests" / "fixtures" / f"release-{BEFORE_LAYOUT}.tar.gz") as archive:
        archive.extractall(old, filter="data")
    return old


def _old_doit(old: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
    # the old catalog too: the old schema rejects what later catalog files declare (discovery blocks)
    env.update(NTHLAYER_CATALOG=str(old / "rules_catalog"), PYTHONPATH=str(old))
    return subprocess.run([sys.executable, "-m", "doit", "-f", str(old / "dodo.py"), "-d", str(cwd)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _tree(out: Path) -> dict[str, str]:
    """Every file and folder under ``out`` (folders as "/"), files by content hash."""
    return {str(p.relative_to(out)) + ("/" if p.is_dir() else ""):
            "" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*"))}


def test_an_out_of_the_old_layout_becomes_exactly_the_new_tree(tmp_path: Path) -> None:
    old = _old_code(tmp_path)
    upgraded, fresh = tmp_path / "upgraded", tmp_path / "fresh"
    for project in (upgraded, fresh):
        shutil.copytree(ROOT / "services", project / "services")
    built = _old_doit(old, upgraded)
    assert built.returncode == 0, built.stdout + built.stderr
    before = _tree(upgraded / "out")
    assert {"payment-api/openslo/service.yaml", "payment-api/openslo/availability.yaml",
            "payment-api/k8s/prometheusrule.yaml", "payment-api/k8s/kustomization.yaml",
            "k8s/kustomization.yaml"} <= set(before)  # the old layout, as the old code wrote it

    result = _doit(upgraded)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "removed out/k8s (a folder of an earlier layout)" in result.stdout
    assert _doit(fresh).returncode == 0
    assert _tree(upgraded / "out") == _tree(fresh / "out")
    assert not [p for p in _tree(upgraded / "out") if "/openslo/" in p and not p.startswith("composites/")
                or p.endswith("/k8s/") or p.startswith("k8s")]

    check = _nthlayer(upgraded, "build", "--check")
    assert (check.returncode, check.stdout) == (0, ""), check.stderr
    again = _doit(upgraded)
    assert again.returncode == 0 and [line for line in again.stdout.splitlines() if line.startswith(".  ")] == []

    cleaned = _doit(upgraded, "clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert [p for p in _tree(upgraded / "out") if not p.endswith("/")] == []  # every file the build wrote is gone
