"""The labelled correlation benchmark (issue 21 item 6, benchmarks/correlation_eval.py) at a small scale:
seeded and deterministic, its ground truth causal, and the advanced score ahead of the deck's on F1."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import correlation_eval  # noqa: E402

sys.path.remove(str(ROOT / "benchmarks"))

DECK = "deck: time + dependency + history"
ADVANCED = "advanced: all five factors"


def test_same_seed_same_world_and_figures() -> None:
    first, second = correlation_eval.simulate(5, 30, 60), correlation_eval.simulate(5, 30, 60)
    assert (first.deploys, first.incidents, first.edges) == (second.deploys, second.incidents, second.edges)
    assert correlation_eval.simulate(6, 30, 60).deploys != first.deploys


def test_ground_truth_is_causal_and_includes_downstream_incidents() -> None:
    world = correlation_eval.simulate(5, 30, 60)
    deployed = {version: (name, minute) for name, version, minute, _bad in world.deploys}
    caused = [(deployed[cause], name, minute) for _key, name, minute, cause in world.incidents if cause]
    assert caused and all(minute > at for (_service, at), _name, minute in caused)
    assert any(service != name for (service, _at), name, _minute in caused)  # some on callers, not the deploy
    assert sum(1 for *_rest, cause in world.incidents if cause is None) > len(caused)  # noise outnumbers


def test_advanced_score_beats_the_deck_on_f1() -> None:
    report = correlation_eval.evaluate(5, 30, 60)
    deck, advanced = report["results"][DECK], report["results"][ADVANCED]
    assert advanced["f1"] > deck["f1"] and advanced["recall"] > deck["recall"]
    assert report == correlation_eval.evaluate(5, 30, 60)  # deterministic end to end


def test_command_line_prints_the_table() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "correlation_eval.py"), "--seed", "5",
                           "--days", "30", "--services", "60"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[2] == "| score | BLOCK pairs | right | precision | recall | F1 |"
    assert [line.split(" | ")[0] for line in lines[4:]] == [f"| {DECK}", "| + blast radius", "| + metric evidence",
                                                            f"| {ADVANCED}"]
