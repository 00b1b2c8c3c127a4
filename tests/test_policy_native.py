"""generators/policy_native.py against the Rego engine it stands in for.

Each document is evaluated both ways: by rego-cpp (regopy, in a process of its own, one document at a
time so that one it fails on does not hide the others) and by the native evaluator. Where the native one
answers, the deny and warn sets are the same; where it declines, the engine decides (the documents it
declines are counted, so a test cannot pass by declining everything).
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from generators import policy_native
from generators.policy import DEFAULT_POLICY_DIR, PolicySet
from generators.policy_input import tier_policy
from generators.tiers import TIERS

ROOT = Path(__file__).resolve().parent.parent

# One interpreter, each document queried alone: an answer, or the engine's error for it.
_ENGINE = r"""
import json, sys
from generators import policy_engine
from regopy import Input, Interpreter, LogLevel
request = json.load(sys.stdin)
rego = Interpreter()
rego.log_level = LogLevel.NONE
for name, text in request["modules"]:
    rego.add_module(name, text)
bundle = rego.build(None, ["nthlayer/policies"])
answers = []
for document in request["inputs"]:
    try:
        rego.set_input(policy_engine._input(document, Input))
        output = rego.query_bundle_entrypoint(bundle, "nthlayer/policies")
        answers.append(output.results[0].expressions[0] if output.ok() and output.results else {"error": str(output)})
    except Exception as exc:
        answers.append({"error": repr(exc)})
json.dump(answers, sys.stdout)
"""


def engine_trees(modules: list[tuple[str, str]], documents: list[dict]) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", _ENGINE], input=json.dumps({"modules": modules, "inputs": documents}),
                          capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout)


def sets(tree: dict) -> dict:
    """A package tree's deny and warn sets, order aside."""
    return {(package, severity): sorted(json.dumps(item, sort_keys=True) for item in node.get(severity, []))
            for package, node in tree.items() if isinstance(node, dict) for severity in ("deny", "warn")}


def compare(modules: list[tuple[str, str]], documents: list[dict]) -> tuple[int, int, int]:
    """(answered natively and equal, declined, documents with a finding); fails on any difference."""
    native = policy_native.compile_policies(modules)
    assert native is not None, "the policies are in the native subset"
    answered = declined = found = 0
    for document, engine in zip(documents, engine_trees(modules, documents)):
        try:
            mine = native.tree(document)
        except policy_native.Declined:
            declined += 1
            continue
        assert "error" not in engine, (document, engine)
        assert sets(mine) == sets(engine), json.dumps(document)
        answered += 1
        found += any(items for items in sets(engine).values())
    return answered, declined, found


NAMES = ["api", "checkout-db", "a b", "é-ü", "😀", 'quo"te', "back\\slash", "new\nline", "", "%s", "100%"]
OBJECTIVES = [0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.99999, 0.1234567, 0.9990001, 1, 0.5, 99.99, 1e-7, 2]


def random_document(rng: random.Random, names: list[str] = NAMES) -> dict:
    """An input document of the published shape (generators/policy_input.py), values drawn to reach
    every branch of the default policies and the strings and numbers the engine treats oddly."""
    tier = rng.choice([1, 2, 3])
    return {
        "version": 1, "path": "services/x.yaml", "service": rng.choice(names), "tier": tier,
        "tier_name": TIERS[tier].name, "team": "t", "type": "api", "description": "",
        "runbook_url": rng.choice([None, "https://runbooks.example.com/x"]),
        "labels": {},
        "slos": [{"name": rng.choice(names), "kind": rng.choice(["availability", "latency", "throughput"]),
                  "objective": rng.choice(OBJECTIVES), "pages": rng.random() < 0.5,
                  "pointer": f"/slos/{index}", "objective_pointer": rng.choice(["/tier", f"/slos/{index}/objective"])}
                 for index in range(rng.randint(0, 3))],
        "dependencies": {"upstream": [], "technologies": [
            {"type": rng.choice(["postgres", "redis", "kafka"]), "name": rng.choice(names),
             "category": rng.choice(["database", "cache", "queue", None]),
             "selector": rng.choice([{}, {"cluster": "a"}]), "runbook_url": None,
             "pointer": f"/dependencies/technologies/{index}"} for index in range(rng.randint(0, 3))]},
        "pagerduty": {"routed": rng.random() < 0.6, "escalation": rng.choice(["spec", "missing", "policy"]),
                      "urgency": rng.choice(["low", "high", "severity_based"]),
                      "urgency_pointer": rng.choice(["/tier", "/pagerduty/urgency"]),
                      "pointer": rng.choice(["/tier", "/pagerduty"])},
        "tier_policy": tier_policy(TIERS[tier]) | (
            {"availability": rng.choice([0.999, 0.995, 0.99, 0.1234567])} if rng.random() < 0.2 else {}),
    }


def documents(seed: int, count: int, names: list[str] = NAMES) -> list[dict]:
    rng = random.Random(seed)
    return [random_document(rng, names) for _ in range(count)]


def default_modules() -> list[tuple[str, str]]:
    return [(policy.path, policy.text) for policy in PolicySet.load().files]


@pytest.mark.parametrize("seed", [1, 2])
def test_default_policies_same_findings_as_the_engine(seed):
    answered, declined, found = compare(default_modules(), documents(seed, 300))
    assert answered > 200 and found > 100, (answered, declined, found)
    assert declined > 0  # the names with a quote, a backslash or a line end: the engine's answer breaks


CONSTRUCTS = r'''
package nthlayer.policies.constructs

import rego.v1

# every construct of the subset, each where the engine's treatment of values shows
deny contains msg if {
	some i, slo in input.slos
	msg := sprintf("%d %v %s %v %%", [i, slo.objective, slo.name, slo.pages])
}

deny contains {"id": "not", "count": count(input.slos)} if {
	not input.pagerduty.routed
}

warn contains x if {
	input.tier >= 2
	input.tier < 3
	x := "tier two"
}

warn contains "exact" if {
	input.tier_policy.availability == 0.999
}

warn contains item if {
	some tech in input.dependencies.technologies
	tech.category != "database"
	item := {"type": tech.type, "selected": count(tech.selector) > 0, "first": input.dependencies.technologies[0].type}
}

deny contains "rounded" if {
	some slo in input.slos
	slo.objective <= 0.123457
}

deny contains joined if {
	unscoped := [tech.name | some tech in input.dependencies.technologies; count(tech.selector) == 0]
	count(unscoped) > 0
	joined := concat("", ["unscoped: ", concat(", ", unscoped), "!"])
}

warn contains sprintf("second %s", [name]) if {
	name := input.slos[1].name
}

deny contains sprintf("%v", [value]) if {
	some value in input.mixed
	value == 1
}

warn contains sprintf("%d long", [count(value)]) if {
	some value in input.mixed
	count(value) >= 0
}

deny contains "seven decimals" if {
	some slo in input.slos
	slo.objective == 0.1234567
}

warn contains sprintf("%v %v", [0.12345678, -0.87654321]) if {
	input.tier == 1
}

deny contains "the list [1]" if {
	some value in input.mixed
	value == [1]
}

warn contains concat("/", input.mixed) if {
	count(input.mixed) > 1
}
'''


@pytest.mark.parametrize("seed", [3, 4])
def test_each_construct_as_the_engine(seed):
    rng = random.Random(seed)
    docs = documents(seed, 200, [name for name in NAMES if name.isprintable() and '"' not in name and "\\" not in name])
    for document in docs:
        document["mixed"] = rng.sample([1, 1.0, True, "1", None, 2, [1], [1, 2], {"a": 1}, "ab", "c", "d e"], rng.randint(0, 4))
    answered, declined, found = compare([("constructs.rego", CONSTRUCTS)], docs)
    assert answered > 80 and found > 80, (answered, declined, found)


@pytest.mark.parametrize("value, text", [(0.999, "0.999"), (99.99, "99.98999999999999"), (100.0, "100"),
                                         (0.1234567, "0.123457"), (1e-7, "0"), (1e16, "1e+16"), (-0.5, "-0.5")])
def test_floats_as_the_engine_formats_them(value, text):
    module = ('package nthlayer.policies.f\n\nimport rego.v1\n\n'
              'deny contains sprintf("%v", [input.x]) if {\n\tinput.x\n}\n')
    native = policy_native.compile_policies([("f.rego", module)])
    assert native.tree({"x": value}) == {"f": {"deny": [text]}}
    assert engine_trees([("f.rego", module)], [{"x": value}]) == [{"f": {"deny": [text]}}]


@pytest.mark.parametrize("module", [
    "package nthlayer.policies.x\n\nimport rego.v1\n\nviolation contains 1 if {\n\tinput.a\n}\n",  # another rule
    "package nthlayer.policies.x\n\nimport rego.v1\n\ndeny contains 1 if {\n\tinput.a + 1 > 2\n}\n",  # arithmetic
    "package nthlayer.policies.x\n\nimport rego.v1\n\ndeny contains 1 if {\n\tsome x in data.y\n}\n",  # data
    "package nthlayer.policies.x\n\nimport rego.v1\n\ndeny contains 1 if {\n\tx := lower(input.a)\n}\n",  # a builtin
    "package nthlayer.policies.x\n\ndeny contains 1 if {\n\tinput.a\n}\n",  # no import rego.v1
    "package nthlayer.policies.x\n\nimport rego.v1\n\ndeny contains 1 if {\n\tinput.a with input.b as 1\n}\n",
    "package nthlayer.policies.x\n\nimport rego.v1\n\ndeny contains 1 if {\n\tevery x in input.a { x }\n}\n",
])
def test_outside_the_subset_the_engine_evaluates_everything(module):
    assert policy_native.compile_policies([("x.rego", module)]) is None


def test_the_shipped_policies_are_in_the_subset():
    assert sorted(path.stem for path in DEFAULT_POLICY_DIR.glob("*.rego"))
    assert policy_native.compile_policies(default_modules()) is not None


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("NTHLAYER_POLICY_ENGINE", "rego")
    assert policy_native.compile_policies(default_modules()) is None


def test_a_string_that_is_not_utf8_anywhere_sends_the_document_to_the_engine():
    module = 'package nthlayer.policies.r\n\nimport rego.v1\n\ndeny contains "a" if {\n\tinput.a\n}\n'
    native = policy_native.compile_policies([("r.rego", module)])
    assert native.tree({"a": True, "unread": "x"}) == {"r": {"deny": ["a"]}}
    with pytest.raises(policy_native.Declined):  # the engine refuses the whole document: it decides
        native.tree({"a": True, "unread": "\ud800"})
    assert "error" in engine_trees([("r.rego", module)], [{"a": True, "unread": "\ud800"}])[0]
