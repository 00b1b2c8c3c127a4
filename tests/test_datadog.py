"""Datadog: desired state (golden, build kind), and setup-datadog against a stateful TLS fake of its API."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, UPDATE_GOLDEN
from generators.datadog import datadog_files, dd_window, desired_state
from generators.slo_maths import burn_factor
from generators.slo_rules import enabled_burn_windows
from generators.spec import validate_specs

GOLDEN = ROOT / "tests" / "golden" / "datadog"


@pytest.mark.parametrize("case", sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()))
def test_golden_desired_state(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN / case)
    result = validate_specs(["services"], None)
    assert result.errors == []
    written = set()
    for spec in result.specs:
        for path, data in datadog_files(spec.service, os.path.join("out", spec.service.name)).items():
            expected = GOLDEN / case / "expected" / os.path.relpath(path, "out")
            written.add(os.path.relpath(path, "out"))
            if UPDATE_GOLDEN:
                expected.parent.mkdir(parents=True, exist_ok=True)
                expected.write_bytes(data)
            assert data.decode() == expected.read_text(encoding="utf-8"), path
    on_disk = {str(p.relative_to(GOLDEN / case / "expected")) for p in (GOLDEN / case / "expected").rglob("*.json")}
    assert written == on_disk  # a service without a datadog: block has no datadog.json


def test_monitors_use_the_prometheus_alert_windows_and_factors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN / "basic")
    service = next(s.service for s in validate_specs(["services"], None).specs if s.service.name == "checkout")
    slo = service.slo("availability")
    queries = [m["body"]["query"] for m in desired_state(service)["monitors"]]
    wanted = [f'burn_rate("{{slo_id}}").over("30d").long_window("{dd_window(w.long)}").short_window("{dd_window(w.short)}") > '
              f'{burn_factor(w, 30)}' for w, _ in enabled_burn_windows(service, slo) if w.long != "3d"]
    assert queries == wanted and len(wanted) == 3
    assert [m["body"]["options"]["thresholds"]["critical"] for m in desired_state(service)["monitors"]] == [
        burn_factor(w, 30) for w, _ in enabled_burn_windows(service, slo) if w.long != "3d"]


def test_the_build_writes_datadog_json_only_with_a_datadog_block_and_removes_it_with_the_block(
        tmp_path: Path) -> None:
    from test_doit_build import _doit, _ran

    shutil.copytree(GOLDEN / "basic" / "services", tmp_path / "services")
    first = _doit(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    out = tmp_path / "out"
    assert sorted(p.parent.name for p in out.glob("*/datadog.json")) == ["checkout", "ledger"]
    assert (out / "checkout" / "datadog.json").read_bytes() == (
        GOLDEN / "basic" / "expected" / "checkout" / "datadog.json").read_bytes()
    assert _ran(_doit(tmp_path)) == []  # the optional kind keeps the no-op build a no-op
    spec = tmp_path / "services" / "ledger.yaml"
    spec.write_text(spec.read_text().split("datadog:")[0])
    third = _doit(tmp_path)
    assert third.returncode == 0 and _ran(third) == ["service:ledger"], third.stdout + third.stderr
    assert not (out / "ledger" / "datadog.json").exists() and (out / "ledger" / "pagerduty.json").exists()
