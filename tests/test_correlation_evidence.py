"""Advanced correlation (issue 21 items 4-5): metric evidence read from a real Prometheus over a backfilled
TSDB, blast radius through the dependency graph, other change kinds, and causality.

The fixture's ``beta`` serves 1000 requests per 5 minutes without an error until the last hour before
:data:`END`, then 100 errors per 5 minutes (10 %, burn rate 20 on its 99.5 % SLO): a deploy of beta an hour
before END is a bad one. ``alpha`` fails 1 request in 2000 all month (burn rate 0.5 on 99.9 %): a deploy of
alpha then is a good one, its SLIs flat.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from prom_fixture import (END, PrometheusServer, fixture_specs, free_port, prometheus,  # noqa: F401
                          prometheus_blocks, spec_text, write_specs)
from nthlayer.state.correlation import blast_weight, downstream, metric_points
from nthlayer.state.db import connect, format_time

DEPLOYED = END - 3600  # an hour before the end of the data: beta's errors begin right after


def at(seconds_before_end: int) -> str:
    return format_time(datetime.fromtimestamp(END - seconds_before_end, timezone.utc))


@pytest.fixture
def graph(tmp_path: Path) -> Path:
    """The fixture's services with a chain beta ← delta ← epsilon (delta calls beta, epsilon calls delta)."""
    folder = write_specs(tmp_path / "services")
    (folder / "delta.yaml").write_text(spec_text("delta", 1, "dependencies:\n  upstream: [beta]\n"))
    (folder / "epsilon.yaml").write_text(spec_text("epsilon", 2, "dependencies:\n  upstream: [delta]\n"))
    return folder


def record(run_cli, state: str, *args: str) -> str:
    code, out, err = run_cli(*args, "--state", state)
    assert (code, err) == (0, ""), err
    return out


def incident(run_cli, state: str, service: str, key: str, started_before_end: int) -> None:
    record(run_cli, state, "record-incident", "--service", service, "--id", key, "--severity", "high",
           "--started-at", at(started_before_end))


def correlate(run_cli, state: str, specs: Path, service: str, version: str, *extra: str) -> tuple[int, str]:
    code, out, err = run_cli("correlate-deploy", "--service", service, "--deploy", version, "--services", str(specs),
                             "--state", state, *extra)
    assert err == ""
    return code, out


def correlate_json(run_cli, state: str, specs: Path, service: str, version: str,
                   *extra: str) -> tuple[int, dict[str, Any]]:
    code, out = correlate(run_cli, state, specs, service, version, "--json", *extra)
    return code, json.loads(out)


def test_a_bad_deploy_steps_the_burn_rate_up_and_blocks(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                         graph: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "s.duckdb")
    record(run_cli, state, "record-deploy", "--service", "beta", "--version", "b7", "--at", at(3600))
    incident(run_cli, state, "beta", "INC-B", 2400)  # 20 minutes after the deploy
    # Without Prometheus: the deck's three factors only, 0.4667 + 0.3 = INVESTIGATE.
    code, out = correlate(run_cli, state, graph, "beta", "b7")
    assert (code, out) == (0, (
        "beta b7: 1 correlated incident within 1h; action: INVESTIGATE\n"
        "  metrics: unavailable: no Prometheus URL given\n"
        "  INC-B  beta  high  started 2024-05-01T11:20:00Z  confidence 77%  INVESTIGATE\n"
        "    factors: time 0.4667/0.5, dependency 0.3/0.3, blast radius 0/0 (same service), history 0/0.2, "
        "metrics unavailable/0.4\n"))
    # With it: beta's availability burn rate went from 0 to 20 (a page-level step): full metric weight.
    code, out = correlate(run_cli, state, graph, "beta", "b7", "--prometheus", prometheus.url)
    assert (code, out) == (2, (
        "beta b7: 1 correlated incident within 1h; action: BLOCK\n"
        "  metrics: step up: beta availability burn rate 0.00 → 20.00 in the 30m after vs before (0.4/0.4)\n"
        "  INC-B  beta  high  started 2024-05-01T11:20:00Z  confidence 100%  BLOCK\n"
        "    factors: time 0.4667/0.5, dependency 0.3/0.3, blast radius 0/0 (same service), history 0/0.2, "
        "metrics 0.4/0.4\n"))
    with connect(state) as con:
        stored = json.loads(con.execute("SELECT factors FROM correlations").fetchall()[0][0])
    assert stored["metrics"] == 0.4 and stored["weights"] == {
        "time": 0.5, "dependency": 0.3, "blast_radius": 0, "history": 0.2, "metrics": 0.4}
    assert stored["metrics_evidence"] == {"service": "beta", "slo": "availability", "burn_before": 0.0,
                                          "burn_after": 20.0}


def test_a_step_is_evidence_before_any_incident(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                 graph: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "s.duckdb")
    record(run_cli, state, "record-deploy", "--service", "beta", "--version", "b7", "--at", at(3600))
    code, document = correlate_json(run_cli, state, graph, "beta", "b7", "--prometheus", prometheus.url)
    assert (code, document["action"], document["incidents"]) == (0, "INVESTIGATE", [])
    assert document["metrics"]["worst"] == {"service": "beta", "slo": "availability", "burn_before": 0.0,
                                            "burn_after": 20.0}
    assert document["metrics"]["points"] == 0.4 and document["metrics"]["unavailable"] is None


def test_a_good_deploy_has_flat_slis_which_count_against_it(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                            graph: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "s.duckdb")
    record(run_cli, state, "record-deploy", "--service", "alpha", "--version", "a3", "--at", at(3600))
    incident(run_cli, state, "alpha", "INC-A", 2400)
    code, out = correlate(run_cli, state, graph, "alpha", "a3", "--prometheus", prometheus.url)
    assert (code, out) == (0, (
        "alpha a3: 1 correlated incident within 1h; action: INVESTIGATE\n"
        "  metrics: flat: alpha latency burn rate 0.10 → 0.10 in the 30m after vs before (-0.2/0.4)\n"
        "  INC-A  alpha  high  started 2024-05-01T11:20:00Z  confidence 57%  INVESTIGATE\n"
        "    factors: time 0.4667/0.5, dependency 0.3/0.3, blast radius 0/0 (same service), history 0/0.2, "
        "metrics -0.2/0.4\n"))


def test_metrics_unavailable_when_prometheus_cannot_be_reached(run_cli, graph: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "s.duckdb")
    record(run_cli, state, "record-deploy", "--service", "beta", "--version", "b7", "--at", at(3600))
    incident(run_cli, state, "beta", "INC-B", 2400)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, document = correlate_json(run_cli, state, graph, "beta", "b7", "--prometheus", closed,
                                    "--prometheus-retries", "0")
    assert code == 0 and document["action"] == "INVESTIGATE"
    reason = document["metrics"]["unavailable"]
    assert reason.startswith(f"Prometheus: ") and "127.0.0.1" in reason
    (pair,) = document["incidents"]
    assert (pair["confidence"], pair["factors"]["metrics"], pair["factors"]["metrics_unavailable"]) == (
        0.7667, None, reason)


def test_too_early_for_metric_evidence(run_cli, prometheus: PrometheusServer, graph: Path,  # noqa: F811
                                       tmp_path: Path) -> None:
    state = str(tmp_path / "s.duckdb")
    record(run_cli, state, "record-deploy", "--service", "beta", "--version", "now")  # at: now
    code, out = correlate(run_cli, state, graph, "beta", "now", "--prometheus", prometheus.url)
    assert code == 0 and out.splitlines()[1] == (
        "  metrics: unavailable: too early: 0m of SLI data after the change, 5m needed")


def test_blast_radius_through_two_hops(run_cli, prometheus: PrometheusServer, graph: Path,  # noqa: F811
                                       tmp_path: Path) -> None:
    state = str(tmp_path / "s.duckdb")
    record(run_cli, state, "record-deploy", "--service", "beta", "--version", "b7", "--at", at(3600))
    incident(run_cli, state, "delta", "INC-D", 2400)  # delta calls beta: the deck's dependency factor
    incident(run_cli, state, "epsilon", "INC-E", 2400)  # epsilon calls delta: two hops from beta
    incident(run_cli, state, "gamma", "INC-G", 2400)  # unrelated: no metric credit either
    code, document = correlate_json(run_cli, state, graph, "beta", "b7")
    found = {i["id"]: (i["confidence"], i["factors"]["dependency"], i["factors"]["blast_radius"],
                       i["factors"]["hops"], i["factors"]["metrics"]) for i in document["incidents"]}
    assert found == {"INC-D": (0.7667, 0.3, 0, 1, None), "INC-E": (0.6167, 0, 0.15, 2, None),
                     "INC-G": (0.4667, 0, 0, None, 0)}
    # With the metrics: beta's step counts for its dependants, not for gamma.
    code, document = correlate_json(run_cli, state, graph, "beta", "b7", "--prometheus", prometheus.url)
    found = {i["id"]: (i["confidence"], i["factors"]["metrics"], i["action"]) for i in document["incidents"]}
    assert code == 2 and found == {"INC-D": (1, 0.4, "BLOCK"), "INC-E": (1, 0.4, "BLOCK"),
                                   "INC-G": (0.4667, 0, "MONITOR")}
    code, out = correlate(run_cli, state, graph, "beta", "b7")
    assert "    factors: time 0.4667/0.5, dependency 0/0.3, blast radius 0.15/0.15 (2 hops), history 0/0.2, " \
           "metrics unavailable/0.4\n" in out
    # gamma is not downstream of beta: neither blast radius nor metrics can count for it.
    assert out.endswith("  INC-G  gamma  high  started 2024-05-01T11:20:00Z  confidence 47%  MONITOR\n"
                        "    factors: time 0.4667/0.5, dependency 0/0.3, blast radius 0/0 (not downstream), "
                        "history 0/0.2, metrics 0/0\n")


def test_blast_radius_decays_per_hop_and_stops() -> None:
    chain = [("a", "b"), ("b", "c"), ("c", "d"), ("d", "e"), ("e", "f"), ("a", "c")]
    assert downstream(chain) == [
        ("a", "b", 1), ("a", "c", 1), ("a", "d", 2), ("a", "e", 3), ("a", "f", 4),  # the shortest path counts
        ("b", "c", 1), ("b", "d", 2), ("b", "e", 3), ("b", "f", 4),
        ("c", "d", 1), ("c", "e", 2), ("c", "f", 3), ("d", "e", 1), ("d", "f", 2), ("e", "f", 1)]
    assert downstream(chain, max_hops=1) == [(a, b, 1) for a, b in sorted(chain)]
    assert [str(blast_weight(h)) for h in range(6)] == ["0", "0", "0.1500", "0.0750", "0.0375", "0.0188"]
    assert downstream([("a", "b"), ("b", "a")]) == [("a", "b", 1), ("b", "a", 1)]  # a cycle ends


def test_metric_points_scale() -> None:
    assert [str(metric_points(s)) for s in (-3.0, 0.0, 0.99, 1.0, 7.2, 14.4, 40.0)] == [
        "-0.2", "-0.2", "-0.2", "0.0278", "0.2000", "0.4000", "0.4000"]


def test_other_change_kinds_are_recorded_and_scored_like_deploys(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                                 graph: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "s.duckdb")
    for kind, change in (("flag", "checkout-v2=on"), ("config", "rev-42"), ("infra", "node-pool-upgrade")):
        out = record(run_cli, state, "record-change", "--service", "beta", "--kind", kind, "--id", change,
                     "--at", at(3600))
        assert out == f"recorded: {kind} change beta {change} at 2024-05-01T11:00:00Z\n"
    assert record(run_cli, state, "record-change", "--service", "beta", "--kind", "FLAG", "--id", "checkout-v2=on",
                  "--at", at(3600)) == "already recorded: flag change beta checkout-v2=on at 2024-05-01T11:00:00Z\n"
    incident(run_cli, state, "delta", "INC-D", 2400)
    code, out = correlate(run_cli, state, graph, "beta", "checkout-v2=on", "--prometheus", prometheus.url)
    assert code == 2 and out.splitlines()[0] == (
        "beta checkout-v2=on (flag change): 1 correlated incident within 1h; action: BLOCK")
    # History spans kinds: the flag change (recorded first, at the same instant) was followed by INC-D.
    code, document = correlate_json(run_cli, state, graph, "beta", "rev-42")
    assert (code, document["kind"], document["incidents"][0]["confidence"]) == (2, "config", 0.9667)
    code, _, err = run_cli("record-change", "--service", "beta", "--kind", "deploy", "--id", "x", "--state", state)
    assert code == 64 and "argument --kind: invalid choice: 'deploy' (choose from 'config', 'flag', 'infra')" in err
    with connect(state) as con:
        kinds = con.execute("SELECT version, kind FROM deploys ORDER BY version").fetchall()
        audit = con.execute("SELECT action, details->>'kind' FROM audit WHERE action LIKE 'record-%' "
                            "ORDER BY id").fetchall()
    assert kinds == [("checkout-v2=on", "flag"), ("node-pool-upgrade", "infra"), ("rev-42", "config")]
    assert audit[:3] == [("record-change", "flag"), ("record-change", "config"), ("record-change", "infra")]


def test_an_incident_that_started_before_the_change_is_never_attributed(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                                        graph: Path, tmp_path: Path) -> None:
    """Item 5: every other factor is in favour (same service, a dependant, history, a page-level metric
    step), and still an incident already under way when the change went out is no candidate."""
    state = str(tmp_path / "s.duckdb")
    record(run_cli, state, "record-deploy", "--service", "beta", "--version", "b6", "--at", at(7200))
    incident(run_cli, state, "beta", "INC-OLD", 6600)  # b6 earns the history factor for b7
    record(run_cli, state, "record-deploy", "--service", "beta", "--version", "b7", "--at", at(3600))
    incident(run_cli, state, "beta", "INC-1S", 3601)  # one second before b7
    incident(run_cli, state, "epsilon", "INC-2H", 3660)  # a dependant, a minute before
    incident(run_cli, state, "beta", "INC-AFTER", 3540)  # a minute after: the control
    for extra in ((), ("--prometheus", prometheus.url)):
        code, document = correlate_json(run_cli, state, graph, "beta", "b7", "--time-window", "1d", *extra)
        assert [i["id"] for i in document["incidents"]] == ["INC-AFTER"]
        assert document["incidents"][0]["factors"]["history"] == 0.2
    with connect(state) as con:
        pairs = con.execute("SELECT i.incident_key FROM correlations c JOIN incidents i ON i.id = c.incident_id "
                            "JOIN deploys d ON d.id = c.deploy_id WHERE d.version = 'b7'").fetchall()
    assert pairs == [("INC-AFTER",)]


def test_import_events_reads_changes_of_other_kinds(run_cli, tmp_path: Path) -> None:
    state = str(tmp_path / "s.duckdb")
    events = tmp_path / "changes.csv"
    events.write_text("type,service,id,version,deployed_at\n"
                      "flag,beta,checkout-v2=on,,2024-05-01T11:00:00Z\n"
                      "deploy,beta,,b7,2024-05-01T11:05:00Z\n"
                      "infra,delta,node-pool-upgrade,,2024-05-01T11:10:00Z\n")
    assert record(run_cli, state, "import-events", str(events)) == "deploys: 3 read, 3 new; incidents: 0 read, 0 new\n"
    with connect(state) as con:
        assert con.execute("SELECT service, version, kind FROM deploys ORDER BY deployed_at").fetchall() == [
            ("beta", "checkout-v2=on", "flag"), ("beta", "b7", "deploy"), ("delta", "node-pool-upgrade", "infra")]
    events.write_text("type,service,id,deployed_at\nrelease,beta,x,2024-05-01T11:00:00Z\n")
    code, _, err = run_cli("import-events", str(events), "--state", state)
    assert (code, err) == (1, f"nthlayer import-events: error: {events}:2: type 'release' is not one of deploy, "
                              "config, flag, infra, incident\n")
