"""``nthlayer validate`` of many specs: split over two forked processes (and two Rego engines, or the
policies evaluated in Python, generators/policy_native.py), with every line the same as one process
checking the files in turn with the Rego engine (nthlayer/ops/validation.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nthlayer.ops import validation
from tests.conftest import ROOT

CATALOG = str(ROOT / "rules_catalog")
CORPUS = ROOT / "tests" / "bad_specs"


def _valid(index: int) -> str:
    """A valid spec: some with technologies whose selectors silence alerts, some a policy judges."""
    tier = index % 3 + 1
    lines = [f"service: many-{index:03d}", f"tier: {tier}", f"team: team-{index % 7}"]
    if index % 5:  # every fifth tier-1 spec has no runbook: a policy warning
        lines.append(f"runbook_url: https://runbooks.example.com/many-{index:03d}")
    if index % 4 == 0:
        lines += ["dependencies:", "  technologies:", "    - type: postgres", f"      name: pg-{index}",
                  "      selector: {cluster: main}" if index % 8 == 0 else ""]  # no selector: a warning
    if index % 11 == 0:
        lines += ["dependencies:" if index % 4 else "", "  upstream: [nowhere]"]
    if index % 13:  # the others page nobody: tier 1 is denied by policy
        lines += ["pagerduty:", "  escalation_emails: [oncall@example.com]"]
    return "\n".join(line for line in lines if line) + "\n"


@pytest.fixture
def many(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NTHLAYER_CONFIG", raising=False)
    services = tmp_path / "services"
    services.mkdir()
    for path in sorted(CORPUS.glob("*.yaml")):  # every broken spec of the corpus beside them
        shutil.copyfile(path, services / path.name)
    for index in range(validation.PARALLEL_MIN_FILES + 20):
        (services / f"many-{index:03d}.yaml").write_text(_valid(index))
    return tmp_path


def test_many_specs_give_the_same_lines_in_two_processes_as_in_one(many: Path, run_cli,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _checked_counting(monkeypatch)
    monkeypatch.setattr(validation, "worker_count", lambda: 2)
    parallel = run_cli("validate", "--catalog", CATALOG)
    monkeypatch.setenv("NTHLAYER_POLICY_ENGINE", "rego")  # every verdict from the Rego engine
    engine = run_cli("validate", "--catalog", CATALOG)
    monkeypatch.setattr(validation, "PARALLEL_MIN_FILES", 10**9)
    serial = run_cli("validate", "--catalog", CATALOG)
    monkeypatch.delenv("NTHLAYER_POLICY_ENGINE")
    serial_native = run_cli("validate", "--catalog", CATALOG)
    assert calls == [len(list((many / "services").iterdir()))] * 4
    assert parallel == serial == engine == serial_native
    code, out, err = parallel
    lines = err.splitlines()
    assert (code, out) == (1, "")
    # What each kind of check says is there: a corpus file's own lines, a selector warning, policy lines.
    corpus_line = (CORPUS / "tier-4.err").read_text().splitlines()[0].replace("tests/bad_specs/", "services/")
    assert corpus_line in lines
    assert any(line.startswith("services/many-000.yaml:") and "policy tier1-runbook: warning" in line for line in lines)
    assert any(line.startswith("services/many-039.yaml:") and "policy tier1-pagerduty:" in line for line in lines)
    assert any(line.startswith("services/many-004.yaml:") and "has no selector" in line for line in lines)


def _checked_counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many files each run checks itself (the cache answers for the others)."""
    calls: list[int] = []
    forked = validation._check_all

    def counting(files: list[str], documents: dict, verdicts: dict) -> list:
        calls.append(len(files))
        return forked(files, documents, verdicts)

    monkeypatch.setattr(validation, "_check_all", counting)
    return calls


def test_validate_remembers_what_it_found_by_content_in_the_state_folder(many: Path, run_cli,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _checked_counting(monkeypatch)
    files = len(list((many / "services").iterdir()))
    uncached = run_cli("validate", "--catalog", CATALOG)
    assert calls == [files] and not (many / "state").exists()  # no state folder: nothing kept
    (many / "state").mkdir()  # a build made it
    first = run_cli("validate", "--catalog", CATALOG)
    second = run_cli("validate", "--catalog", CATALOG)
    assert calls == [files, files, 0]
    assert first == second == uncached
    assert (many / "state" / "validate-cache.json").exists()

    # An edit is a new content: that file alone is checked again, with its new lines.
    spec = many / "services" / "many-001.yaml"
    spec.write_text(spec.read_text().replace("tier: 2", "tier: 7"))
    edited = run_cli("validate", "--catalog", CATALOG)
    assert calls[-1] == 1
    assert "services/many-001.yaml:2:7: /tier: 7 is not a tier: use 1, 2, 3 or critical, standard, low" \
        in edited[2].splitlines()
    # ... and putting it back gives back the verdicts of the first run.
    spec.write_text(spec.read_text().replace("tier: 7", "tier: 2"))
    assert run_cli("validate", "--catalog", CATALOG) == uncached
    assert calls[-1] == 1

    # A project policy: every verdict is evaluated again (the policies are part of the cache's key).
    (many / "own.rego").write_text('package nthlayer.policies.own\n\nimport rego.v1\n\n'
                                   'deny contains {"id": "own", "msg": "not this one", "pointer": "/team"} if {\n'
                                   '\tinput.service == "many-002"\n}\n')
    (many / "nthlayer.toml").write_text('[policy]\npaths = ["own.rego"]\n')
    judged = run_cli("validate", "--catalog", CATALOG)
    assert calls[-1] == files
    assert [line for line in judged[2].splitlines() if "policy own" in line] == ["services/many-002.yaml:3:1: policy own: not this one"]
    assert run_cli("validate", "--catalog", CATALOG) == judged and calls[-1] == 0


def test_a_cached_run_checks_composites_against_the_cached_specs(tmp_path: Path, run_cli,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "services", tmp_path / "services")
    (tmp_path / "state").mkdir()
    calls = _checked_counting(monkeypatch)
    first = run_cli("validate", "--catalog", CATALOG)
    composite = tmp_path / "services" / "composites" / "checkout.yaml"
    composite.write_text(composite.read_text().replace("slo: latency", "slo: latenc"))
    second = run_cli("validate", "--catalog", CATALOG)
    assert first[0] == 0 and "composite" in first[1]
    assert calls[-1] == 0 and second[0] == 1
    assert any(line.startswith("services/composites/checkout.yaml:") and "latenc" in line
               for line in second[2].splitlines())
