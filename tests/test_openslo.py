"""OpenSLO v1: the JSON Schema and validator accept what we generate and reject what the spec forbids."""
from __future__ import annotations

from pathlib import Path

import pytest

from generators.openslo import openslo_files
from generators.openslo_validate import validate_openslo_dir
from generators.render import write_all
from generators.spec import load_spec
from tests.conftest import ROOT

SPECS = [ROOT / "services" / "payment-api.yaml",
         *sorted((ROOT / "tests" / "golden" / "slo").glob("*/spec.yaml"))]

SLO_DOC = """\
apiVersion: openslo/v1
kind: SLO
metadata:
  name: api-availability
spec:
  service: api
  indicatorRef: api-availability
  timeWindow:
  - duration: 30d
    isRolling: true
  budgetingMethod: Occurrences
  objectives:
  - target: 0.999
"""
SLI_DOC = """\
apiVersion: openslo/v1
kind: SLI
metadata:
  name: api-availability
spec:
  ratioMetric:
    counter: true
    bad:
      metricSource:
        type: Prometheus
        spec:
          query: http_requests_total{code=~"5.."}
    total:
      metricSource:
        type: Prometheus
        spec:
          query: http_requests_total
"""


# SLI_DOC is 17 lines: after SLI_DOC + "---\n" the SLO document starts at line 19.


def _lines(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "slo.yaml").write_text(text)
    return [e.format().replace(f"{tmp_path}/", "") for e in validate_openslo_dir(str(tmp_path))]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.parent.name if p.name == "spec.yaml" else p.stem)
def test_accepts_everything_we_generate(tmp_path: Path, spec: Path) -> None:
    service = load_spec(str(spec)).service
    write_all(openslo_files(service, str(tmp_path)))
    assert validate_openslo_dir(str(tmp_path)) == []


def test_accepts_a_hand_written_pair(tmp_path: Path) -> None:
    assert _lines(tmp_path, SLI_DOC + "---\n" + SLO_DOC) == []


def test_rejects_target_one(tmp_path: Path) -> None:
    assert _lines(tmp_path, SLI_DOC + "---\n" + SLO_DOC.replace("target: 0.999", "target: 1.0")) == [
        "slo.yaml:31:13: /spec/objectives/0/target: target 1.0 must be below 1 (a 100% objective leaves no error budget)"]


def test_rejects_target_percent_100_and_both_targets(tmp_path: Path) -> None:
    assert _lines(tmp_path, SLI_DOC + "---\n" + SLO_DOC.replace("target: 0.999", "targetPercent: 100")) == [
        "slo.yaml:31:20: /spec/objectives/0/targetPercent: targetPercent 100 must be below 100 "
        "(a 100% objective leaves no error budget)"]
    both = SLO_DOC.replace("target: 0.999", "target: 0.999\n    targetPercent: 99.9")
    assert _lines(tmp_path, SLI_DOC + "---\n" + both) == [
        "slo.yaml:31:5: /spec/objectives/0: an objective needs exactly one of 'target' and 'targetPercent'"]


def test_rejects_a_missing_budgeting_method(tmp_path: Path) -> None:
    assert _lines(tmp_path, SLO_DOC.replace("  budgetingMethod: Occurrences\n", "") + "---\n" + SLI_DOC) == [
        "slo.yaml:6:3: /spec: missing required key 'budgetingMethod'"]


def test_rejects_an_unknown_budgeting_method(tmp_path: Path) -> None:
    assert _lines(tmp_path, SLI_DOC + "---\n" + SLO_DOC.replace("Occurrences", "Events")) == [
        "slo.yaml:29:20: /spec/budgetingMethod: budgetingMethod 'Events' is not one of Occurrences, Timeslices, "
        "RatioTimeslices"]


def test_rejects_a_duration_in_words(tmp_path: Path) -> None:
    assert _lines(tmp_path, SLI_DOC + "---\n" + SLO_DOC.replace("duration: 30d", "duration: 30 days")) == [
        "slo.yaml:27:15: /spec/timeWindow/0/duration: '30 days' is not a duration shorthand such as "
        "5m, 1h, 30d, 4w, 1M, 1Q or 1Y"]


def test_rejects_two_time_windows(tmp_path: Path) -> None:
    two = SLO_DOC.replace("    isRolling: true\n", "    isRolling: true\n  - duration: 7d\n    isRolling: true\n")
    assert _lines(tmp_path, SLI_DOC + "---\n" + two) == [
        "slo.yaml:27:3: /spec/timeWindow: timeWindow must hold exactly one window"]


def test_rejects_bad_names_kinds_and_dangling_references(tmp_path: Path) -> None:
    text = (SLO_DOC.replace("name: api-availability\nspec", "name: API_availability\nspec")
            .replace("indicatorRef: api-availability", "indicatorRef: nowhere")
            + "---\napiVersion: openslo/v1\nkind: Dashboard\nmetadata: {name: d}\nspec: {}\n")
    assert _lines(tmp_path, text) == [
        "slo.yaml:4:9: /metadata/name: 'API_availability' is not a DNS label (lowercase letters, digits and '-', "
        "starting and ending with a letter or digit)",
        "slo.yaml:16:7: /kind: 'Dashboard' is not an OpenSLO v1 kind (Service, SLI, SLO, AlertCondition, "
        "AlertPolicy, AlertNotificationTarget, DataSource)",
    ]
    assert _lines(tmp_path, SLO_DOC.replace("indicatorRef: api-availability", "indicatorRef: nowhere")) == [
        "slo.yaml:7:17: /spec/indicatorRef: no SLI named 'nowhere' in these files"]


def test_rejects_a_policy_with_two_conditions_and_duplicate_names(tmp_path: Path) -> None:
    policy = """\
apiVersion: openslo/v1
kind: AlertPolicy
metadata:
  name: p
spec:
  conditions:
  - conditionRef: a
  - conditionRef: b
  notificationTargets:
  - targetRef: t
"""
    assert _lines(tmp_path, policy) == [
        "slo.yaml:7:3: /spec/conditions: an AlertPolicy holds exactly one condition in OpenSLO v1"]
    assert _lines(tmp_path, SLI_DOC + "---\n" + SLI_DOC) == [
        "slo.yaml:22:9: /metadata/name: duplicate SLI name 'api-availability' (also in slo.yaml at line 4)"]


def test_reports_yaml_errors_at_their_line(tmp_path: Path) -> None:
    assert _lines(tmp_path, SLI_DOC + "---\nkind: [SLO\n") == [
        "slo.yaml:20:1: /: YAML syntax error: while parsing a flow sequence: did not find expected ',' or ']'"]
    assert _lines(tmp_path, SLI_DOC + "---\n- 1\n") == [
        "slo.yaml:19:1: /: expected an OpenSLO document (a mapping with apiVersion, kind, metadata and spec)"]


def test_missing_folder(tmp_path: Path) -> None:
    assert [e.format() for e in validate_openslo_dir(str(tmp_path / "nope"))] == [
        f"{tmp_path}/nope:1:1: /: no such file or directory"]
