"""Rego policies on specs: each default policy firing and passing (exact lines), a project's own policy,
disabling a default, and broken policies reported at their file and line."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from generators.errors import SpecError
from generators.policy import PolicyError, default_policy_ids
from generators.spec import load_spec
from nthlayer.config import ConfigError
from nthlayer.ops.policy import policy_problems
from tests.conftest import ROOT

ROUTED = "pagerduty:\n  escalation_emails: [oncall@example.com]\n"
RUNBOOK = "runbook_url: https://runbooks.example.com/a\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder (services/, no nthlayer.toml) as the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NTHLAYER_CONFIG", raising=False)
    (tmp_path / "services").mkdir()
    return tmp_path


def check(project: Path, text: str, name: str = "a") -> list[str]:
    """The policy lines of one spec, formatted as validate prints them (denies and warnings, sorted)."""
    path = f"services/{name}.yaml"
    (project / path).write_text(text)
    denies, warnings = policy_problems([load_spec(path)], str(ROOT / "rules_catalog"))
    return [line.format() for line in sorted(denies + warnings)]


def test_the_default_policies_are_these() -> None:
    assert default_policy_ids() == ["database-selector", "dependency-selector", "objective-below-tier",
                                    "tier1-objective", "tier1-pagerduty", "tier1-runbook", "tier3-no-page"]


def test_every_example_service_passes_the_default_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    specs = [load_spec(f"services/{path.name}") for path in sorted((ROOT / "services").glob("*.yaml"))]
    assert len(specs) >= 10
    assert policy_problems(specs, "rules_catalog") == ([], [])


# -- tier1-pagerduty (deny) ---------------------------------------------------------------------------------

def test_tier1_pagerduty_fires_without_pagerduty(project: Path) -> None:
    assert check(project, "service: a\ntier: 1\nteam: t\n" + RUNBOOK) == [
        "services/a.yaml:2:1: policy tier1-pagerduty: tier-1 service 'a' must route its pages to PagerDuty: "
        "list pagerduty.escalation_emails or schedule_ids, or reference pagerduty.escalation_policy_id or service_id"]


def test_tier1_pagerduty_fires_when_nobody_is_named(project: Path) -> None:
    assert check(project, "service: a\ntier: critical\nteam: t\n" + RUNBOOK + "pagerduty:\n  urgency: high\n") == [
        "services/a.yaml:5:1: policy tier1-pagerduty: tier-1 service 'a' is on PagerDuty but names nobody to "
        "escalate to: set pagerduty.escalation_policy_id or service_id, or list schedule_ids or escalation_emails"]


@pytest.mark.parametrize("pagerduty", [ROUTED, "pagerduty:\n  service_id: PXXXXXX\n",
                                       "pagerduty:\n  escalation_policy_id: PABC123\n",
                                       "pagerduty:\n  schedule_ids: [PSCHED1]\n"])
def test_tier1_pagerduty_passes_when_routed(project: Path, pagerduty: str) -> None:
    assert check(project, "service: a\ntier: 1\nteam: t\n" + RUNBOOK + pagerduty) == []


def test_tier2_needs_no_pagerduty_from_the_policies(project: Path) -> None:
    assert check(project, "service: a\ntier: 2\nteam: t\n") == []


# -- tier1-runbook (warn) -----------------------------------------------------------------------------------

def test_tier1_runbook_warns_without_runbook(project: Path) -> None:
    assert check(project, "service: a\ntier: 1\nteam: t\n" + ROUTED) == [
        "services/a.yaml:2:1: policy tier1-runbook: warning: tier-1 service 'a' has no runbook_url: "
        "its pages would link no runbook"]


# -- tier1-objective (deny) ---------------------------------------------------------------------------------

def test_tier1_objective_fires_on_a_loose_override(project: Path) -> None:
    text = ("service: a\ntier: 1\nteam: t\n" + RUNBOOK + ROUTED
            + "observability:\n  slo_overrides:\n    availability: 0.995\n    latency_target: 0.9\n")
    assert check(project, text) == [
        "services/a.yaml:9:5: policy tier1-objective: SLO availability of tier-1 service 'a' has objective 0.995, "
        "below tier 1's 0.999: a critical service's objectives are at least 0.999"]


def test_tier1_objective_fires_on_each_loose_slo_of_a_slos_block(project: Path) -> None:
    text = ("service: a\ntier: 1\nteam: t\n" + RUNBOOK + ROUTED + "slos:\n"
            "  - {name: checkout, objective: 0.99, events: {bad: 'x_failed_total', total: 'x_total'}}\n"
            "  - {name: ingest, objective: 0.9995, ratio_query: 'sum(rate(e[$window])) / sum(rate(t[$window]))'}\n"
            "  - {name: fast, objective: 0.9, latency: {threshold: 0.25}}\n")
    assert check(project, text) == [
        "services/a.yaml:8:22: policy tier1-objective: SLO checkout of tier-1 service 'a' has objective 0.99, "
        "below tier 1's 0.999: a critical service's objectives are at least 0.999"]


def test_tier1_objective_passes_at_the_tier_default_and_above(project: Path) -> None:
    text = ("service: a\ntier: 1\nteam: t\n" + RUNBOOK + ROUTED
            + "observability:\n  slo_overrides:\n    availability: 0.9995\n")
    assert check(project, text) == []
    assert check(project, "service: a\ntier: 1\nteam: t\n" + RUNBOOK + ROUTED) == []


# -- objective-below-tier (warn) ----------------------------------------------------------------------------

def test_objective_below_tier_warns_on_tier_2(project: Path) -> None:
    text = "service: a\ntier: 2\nteam: t\nobservability:\n  slo_overrides:\n    availability: 0.99\n"
    assert check(project, text) == [
        "services/a.yaml:6:5: policy objective-below-tier: warning: SLO availability has objective 0.99, below "
        "the 0.995 of tier 2 (standard): choose the tier whose bar the service meets"]
    assert check(project, text.replace("0.99\n", "0.995\n")) == []


# -- database-selector (deny) and dependency-selector (warn) ------------------------------------------------

DEPS = "service: a\ntier: 2\nteam: t\ndependencies:\n  technologies:\n"


def test_database_selector_fires_on_an_unscoped_database(project: Path) -> None:
    text = DEPS + "    - {type: redis, name: cache, selector: {job: redis}}\n    - type: postgres\n      name: main-db\n"
    assert check(project, text) == [
        "services/a.yaml:7:7: policy database-selector: database dependency postgres 'main-db' has no selector: "
        "its alerts would fire for every postgres instance Prometheus scrapes; add a selector naming this one "
        "(e.g. {cluster: main-db})"]


def test_dependency_selector_warns_on_other_unscoped_dependencies(project: Path) -> None:
    text = DEPS + "    - {type: postgres, name: db, selector: {cluster: db}}\n    - {type: redis, name: cache}\n"
    assert check(project, text) == [
        "services/a.yaml:7:7: policy dependency-selector: warning: dependency redis 'cache' has no selector: "
        "its alerts would fire for every redis instance Prometheus scrapes"]


def test_scoped_dependencies_pass(project: Path) -> None:
    text = DEPS + "    - {type: postgres, name: db, selector: {cluster: db}}\n    - {type: redis, name: c, selector: {job: c}}\n"
    assert check(project, text) == []


# -- tier3-no-page (deny) -----------------------------------------------------------------------------------

def test_tier3_no_page_fires_on_a_high_urgency_override(project: Path) -> None:
    text = "service: a\ntier: low\nteam: t\n" + ROUTED + "  urgency: high\n"
    assert check(project, text) == [
        "services/a.yaml:6:3: policy tier3-no-page: tier-3 service 'a' would page on its SLOs (availability, "
        "latency): PagerDuty urgency 'high' makes their pages high-urgency incidents; tier-3 SLOs are best effort "
        "(remove pagerduty.urgency, or raise the tier)"]


def test_tier3_no_page_passes_at_the_tiers_low_urgency_or_without_pages(project: Path) -> None:
    assert check(project, "service: a\ntier: 3\nteam: t\n" + ROUTED) == []
    quiet = ("service: a\ntier: 3\nteam: t\n" + ROUTED + "  urgency: high\nslos:\n"
             "  - {name: availability, availability: {}, alerting: {page: false}}\n")
    assert check(project, quiet) == []


# -- a project's own policies, disabling defaults -----------------------------------------------------------

OWN_POLICY = """package nthlayer.policies.acme

import rego.v1

deny contains {"id": "acme-team", "msg": sprintf("team '%s' is not an Acme team", [input.team]), "pointer": "/team"} if {
	not input.team in {"payments", "identity"}
}

warn contains {"id": "acme-description", "msg": "describe the service"} if {
	input.description == ""
}
"""


def test_a_project_policy_from_nthlayer_toml(project: Path) -> None:
    (project / "policies").mkdir()
    (project / "policies" / "acme.rego").write_text(OWN_POLICY)
    (project / "nthlayer.toml").write_text('[policy]\npaths = ["policies"]\n')
    assert check(project, "service: a\ntier: 2\nteam: t\n") == [
        "services/a.yaml:1:1: policy acme-description: warning: describe the service",
        "services/a.yaml:3:1: policy acme-team: team 't' is not an Acme team"]
    assert check(project, "service: a\ntier: 2\nteam: payments\ndescription: Card payments\n") == []


def test_disabling_a_default_policy_by_id(project: Path) -> None:
    text = "service: a\ntier: 1\nteam: t\n" + ROUTED
    assert check(project, text) != []
    (project / "nthlayer.toml").write_text('[policy]\ndisable = ["tier1-runbook"]\n')
    assert check(project, text) == []


def test_an_unknown_disabled_id_is_a_config_error(project: Path) -> None:
    (project / "nthlayer.toml").write_text('[policy]\ndisable = ["tier1-runbok"]\n')
    with pytest.raises(ConfigError) as raised:
        check(project, "service: a\ntier: 2\nteam: t\n")
    assert str(raised.value) == ("nthlayer.toml:2:1: /policy/disable: 'tier1-runbok' (item 0) is not a default "
                                 "policy: did you mean 'tier1-runbook'?")


def test_an_unknown_key_and_a_missing_path_are_config_errors(project: Path) -> None:
    (project / "nthlayer.toml").write_text('[policy]\npath = ["policies"]\n')
    with pytest.raises(ConfigError, match=r"^nthlayer.toml:2:1: /policy/path: unknown key 'path' in \[policy\]; "
                                          r"known keys: disable, paths$"):
        check(project, "service: a\ntier: 2\nteam: t\n")
    (project / "nthlayer.toml").write_text('\n[policy]\npaths = ["nowhere"]\n')
    with pytest.raises(ConfigError, match=r"^nthlayer.toml:3:1: /policy/paths: nowhere \(item 0\) does not exist$"):
        check(project, "service: a\ntier: 2\nteam: t\n")


# -- broken policies ----------------------------------------------------------------------------------------

def _own(project: Path, text: str) -> None:
    (project / "policies").mkdir(exist_ok=True)
    (project / "policies" / "own.rego").write_text(text)
    (project / "nthlayer.toml").write_text('[policy]\npaths = ["policies/own.rego"]\n')


def test_a_rego_syntax_error_names_its_file_line_and_column(project: Path) -> None:
    _own(project, "package nthlayer.policies.own\n\nimport rego.v1\n\ndeny contains x if {\n   x := \n}\n")
    with pytest.raises(PolicyError) as raised:
        check(project, "service: a\ntier: 2\nteam: t\n")
    assert str(raised.value) == "policies/own.rego:6:6: Invalid assignment operator"


def test_a_package_outside_nthlayer_policies_is_refused(project: Path) -> None:
    _own(project, "# mine\npackage acme.slo\n\ndeny contains 1 if { true }\n")
    with pytest.raises(PolicyError) as raised:
        check(project, "service: a\ntier: 2\nteam: t\n")
    assert str(raised.value) == ("policies/own.rego:2:1: package acme.slo is not under nthlayer.policies: "
                                 "nthlayer evaluates the deny and warn rules of packages nthlayer.policies.<name>")


def test_a_finding_that_breaks_the_contract_names_its_policy(project: Path) -> None:
    _own(project, "package nthlayer.policies.own\n\nimport rego.v1\n\n\nwarn contains input.team if { true }\n")
    with pytest.raises(PolicyError) as raised:
        check(project, "service: a\ntier: 2\nteam: t\n")
    assert str(raised.value) == ('policies/own.rego:6:1: warn yields "t": each finding must be an object '
                                 '{"id": ..., "msg": ..., "pointer": ...}')


def test_a_project_package_may_not_take_a_default_ones_name(project: Path) -> None:
    _own(project, "package nthlayer.policies.tier1_runbook\n")
    with pytest.raises(PolicyError, match=r"^policies/own.rego:1:1: package nthlayer.policies.tier1_runbook is "
                                          r"already the default policy .*tier1-runbook.rego"):
        check(project, "service: a\ntier: 2\nteam: t\n")


def test_findings_are_errors_with_the_warning_flag_for_warn(project: Path) -> None:
    (project / "services" / "a.yaml").write_text("service: a\ntier: 1\nteam: t\n")
    denies, warnings = policy_problems([load_spec("services/a.yaml")], str(ROOT / "rules_catalog"))
    assert [type(line) for line in denies + warnings] == [SpecError, SpecError]
    assert [line.pointer for line in denies] == ["policy tier1-pagerduty"]
    assert [(line.pointer, line.warning) for line in warnings] == [("policy tier1-runbook", True)]



def _random_json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.choice([0, -1, 2**63 - 1, -2**63, rng.randrange(-10**9, 10**9)])
    if choice == 3:
        return rng.choice([0.0, -0.5, 2.25, -1048576.125])  # exact in binary: rego-cpp prints 17 digits
    if choice in (4, 5):
        return "".join(rng.choice("aZ 0-_'.é€😀") for _ in range(rng.randrange(8)))
    if choice in (6, 7):
        return {_random_json(rng, 9) if False else f"k{rng.randrange(5)}é": _random_json(rng, depth + 1)
                for _ in range(rng.randrange(5))}
    return [_random_json(rng, depth + 1) for _ in range(rng.randrange(5))]


_SAME_INPUT = """
import json, sys
from regopy import Input, Interpreter, LogLevel
from generators.policy_engine import _input
for line in sys.stdin:
    document = json.loads(line)
    rego = Interpreter()
    rego.log_level = LogLevel.NONE
    rego.set_input(_input(document, Input))
    ours = str(rego.query("x := input"))
    rego.set_input(Input(document))
    theirs = str(rego.query("x := input"))
    if ours != theirs or json.loads(ours, strict=False)["bindings"]["x"] != document:
        print(line.strip(), ours, theirs)
print("checked")
"""


def test_the_engines_input_is_regopys_input() -> None:
    """The engine makes rego-cpp's input with direct C calls (generators.policy_engine._input): for 400
    random JSON documents (nesting, unicode, int64 and float limits; rego-cpp writes a string's quotes
    and control characters unescaped in its answer, so the documents have none) Rego sees exactly what regopy's
    own Input gives it. In a process of its own, as the engine runs (regopy beside re2 aborts)."""
    rng = random.Random(22)
    documents = [{f"k{i}": _random_json(rng) for i in range(rng.randrange(1, 6))} for _ in range(400)]
    result = subprocess.run([sys.executable, "-c", _SAME_INPUT], input="\n".join(json.dumps(d) for d in documents),
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "checked\n"


def test_engines_started_ahead_answer_the_next_check_and_unused_ones_are_stopped(project: Path) -> None:
    from generators import policy
    from nthlayer.buildsys.settled import stamps_ahead

    spec = "service: a\ntier: 1\nteam: t\n" + RUNBOOK
    expected = check(project, spec)
    assert expected and not policy._STARTED
    policy.start_engines(2)
    first, second = policy._STARTED
    # A child forked while they wait (the build's stamps_ahead) must not hold their input open: the check
    # would wait for that child. Its groups are many, so it is still stat-ing when the check runs.
    groups = [(str(project / "services" / "a.yaml"),)] * 200_000
    collect = stamps_ahead(groups)
    assert check(project, spec) == expected  # answered by the first engine started
    assert policy._STARTED == [second] and first.returncode == 0
    policy.stop_engines()
    assert policy._STARTED == [] and second.returncode is not None
    assert len(collect()) == 1
