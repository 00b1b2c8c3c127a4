"""``nthlayer discover`` against a real Prometheus holding service-graph and exporter series for the example
services (tests/discover_fixture.py says what the data holds and why)."""
from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import ROOT, UPDATE_GOLDEN
from discover_fixture import END, discovery_prometheus
from generators.discovery import (SERVICE_GRAPH_SOURCES, Edge, TechnologyUse, confidence, dependency_name, propose,
                                  technology_probe)
from nthlayer.ops.discover import probes
from prom_fixture import requires_prometheus

GOLDEN = ROOT / "tests" / "golden" / "discover"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example services, as the working directory (the diffs name services/NAME.yaml)."""
    shutil.copytree(ROOT / "services", tmp_path / "services")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def discover(run_cli, project: Path):
    server = discovery_prometheus()

    def _run(*args: str) -> tuple[int, str, str]:
        return run_cli("discover", "--prometheus", server.url, "--at", str(END), *args)

    return _run


def _texts(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("*.yaml"))}


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


# --- against Prometheus ---------------------------------------------------------------------------

@requires_prometheus
def test_every_example_spec_diff_and_the_summary(discover, project: Path) -> None:
    before = _texts(project / "services")
    code, out, err = discover("--all")
    assert (code, err) == (0, "")
    _golden("all.out", out)
    assert _texts(project / "services") == before  # without --write nothing is touched


@requires_prometheus
def test_rates_confidence_and_unknown_services(discover) -> None:
    code, out, _ = discover("--service", "checkout-web", "--service", "payment-api", "--service", "search-api")
    assert code == 0
    lines = out.splitlines()
    # Istio reports the call from both ends: counted once.
    assert "#   checkout-web -> payment-api: 20.000 req/s, seen 7/7 days, high confidence (istio): declared" in lines
    assert "#   search-api -> user-service: 0.200 req/s, seen 2/7 days, low confidence (tempo): add" in lines
    assert lines[lines.index("# unknown services (no spec; not written):") + 1] == (
        "#   payment-api -> fraud-scorer: 2.000 req/s, seen 7/7 days, high confidence (istio)")
    assert "fraud-scorer" not in "".join(line for line in lines if not line.startswith("#"))
    assert lines[-1] == "# 3 of 3 specs would change"


@requires_prometheus
def test_min_rps_floor(discover) -> None:
    code, out, _ = discover("--service", "order-worker", "--min-rps", "0.1")
    assert code == 0
    assert out.splitlines()[-2:] == [
        "#   order-worker -> notification-service: 0.050 req/s, seen 7/7 days, high confidence (tempo): "
        "below --min-rps 0.1, ignored",
        "# no change: the specs agree with what Prometheus sees"]
    code, out, _ = discover("--service", "order-worker", "--min-rps", "0.05")
    assert "+  upstream: [payment-api, notification-service]\n" in out


@requires_prometheus
def test_prune_removes_only_what_was_looked_for(discover) -> None:
    code, out, _ = discover("--service", "checkout-web")
    assert "#   checkout-web -> inventory-api: not seen: kept (hand-written; --prune removes it)" in out.splitlines()
    assert "+  upstream: [payment-api, user-service, inventory-api, search-api]\n" in out
    code, out, _ = discover("--service", "checkout-web", "--prune")
    assert code == 0
    # The redis instance was seen; nginx and nodejs have no discovery metric there: never pruned.
    assert out.split("# discovered")[0] == """\
--- services/checkout-web.yaml
+++ services/checkout-web.yaml
@@ -10,7 +10,7 @@
   slo_overrides:
     latency: 1000
 dependencies:
-  upstream: [payment-api, user-service, inventory-api]
+  upstream: [payment-api, user-service, search-api]
   technologies:
     - type: nginx
       name: checkout-edge
"""
    assert "#   checkout-web -> inventory-api: not seen: remove (--prune)" in out.splitlines()


@requires_prometheus
def test_prune_judges_only_instances_prometheus_shows(discover, project: Path) -> None:
    spec = project / "services" / "user-service.yaml"
    spec.write_text(spec.read_text().replace(
        "    - type: redis\n", "    - type: postgres\n      name: legacy-db\n      selector: {cluster: legacy}\n"
                              "    - type: redis\n"))
    code, out, _ = discover("--service", "user-service", "--prune", "--write")
    assert code == 0
    # pg_up{cluster="legacy"} is there, tied to no service: not this one's. redis_cluster=sessions has no
    # series at all: an exporter this Prometheus does not scrape says nothing, so session-cache stays.
    assert "#   user-service uses postgres legacy-db: not seen: remove (--prune)" in out.splitlines()
    assert spec.read_text() == (ROOT / "services" / "user-service.yaml").read_text()


def test_prune_keeps_the_upstreams_of_a_service_no_source_shows_calling() -> None:
    spec = {"service": "a", "dependencies": {"upstream": ["b", "c"]}}
    edge = Edge("a", "b", Decimal(1), 7, 7, ("istio",))
    assert propose(spec, [edge], [], min_rps=Decimal(0), prune=True, callers={"a"}, visible={}).remove_upstream == ("c",)
    kept = propose(spec, [], [], min_rps=Decimal(0), prune=True, callers={"x"}, visible={})
    assert (kept.remove_upstream, kept.kept, kept.changes) == ((), ("b", "c"), False)


COMMENTED = """\
# Checkout pages: hand-written, keep the notes.
team: storefront        # owns it
service: checkout-web
type: web
tier: 1
dependencies:
  upstream: [payment-api, user-service]   # the money path
  # caches and queues
  technologies:
  - type: redis
    name: cart-cache
    selector: {redis_cluster: "carts"}    # quoted on purpose
  # end of the list
pagerduty: {team_id: PTEAM01}
"""

COMMENTED_WRITTEN = """\
# Checkout pages: hand-written, keep the notes.
team: storefront        # owns it
service: checkout-web
type: web
tier: 1
dependencies:
  upstream: [payment-api, user-service, search-api] # the money path
  # caches and queues
  technologies:
  - type: redis
    name: cart-cache
    selector: {redis_cluster: "carts"}    # quoted on purpose
  # end of the list
pagerduty: {team_id: PTEAM01}
"""


@requires_prometheus
def test_write_keeps_comments_order_and_style_then_a_second_run_proposes_nothing(discover, project: Path) -> None:
    spec = project / "services" / "checkout-web.yaml"
    spec.write_text(COMMENTED)
    assert discover("--service", "checkout-web", "--check")[0] == 1
    code, out, err = discover("--service", "checkout-web", "--write")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "# wrote services/checkout-web.yaml"
    assert spec.read_text() == COMMENTED_WRITTEN
    code, out, err = discover("--service", "checkout-web", "--check")
    assert (code, err) == (0, "")
    assert not out.startswith("---")
    assert out.splitlines()[-1] == "# no change: the specs agree with what Prometheus sees"


@requires_prometheus
def test_write_adds_blocks_a_spec_lacks_and_validates_as_the_build_does(discover, project: Path, run_cli) -> None:
    code, out, _ = discover("--all", "--write")
    assert code == 0
    assert run_cli("validate", "services")[0] == 0
    assert (project / "services" / "payment-api.yaml").read_text().endswith("""\
dependencies:
  upstream: [user-service]
  technologies:
    - type: go-runtime
      name: payment-api
      selector: {job: payment-api}
pagerduty:
  service_id: PXXXXXX
""")
    assert "  upstream: [user-service]\n  technologies:\n" in (project / "services" / "search-api.yaml").read_text()
    assert discover("--all", "--check")[0] == 0  # idempotent


@requires_prometheus
def test_an_edit_that_would_not_validate_writes_nothing(discover, project: Path) -> None:
    spec = project / "services" / "edge-gateway.yaml"
    text = spec.read_text()
    many = "".join(f"    - type: kubernetes\n      name: k{i}\n" for i in range(97))
    spec.write_text(text.replace("pagerduty:\n", many + "pagerduty:\n", 1))  # 3 + 97: the schema's maximum
    before = _texts(project / "services")
    code, out, err = discover("--all", "--write")
    assert code == 1
    assert err.splitlines() == [
        "nthlayer discover: error: the edited specs would not validate, so nothing was written (lines and "
        "columns are those of the proposed text above):",
        "services/edge-gateway.yaml:16:5: /dependencies/technologies: at most 100 items allowed, has 101"]
    assert "+    - type: redis\n" in out
    assert _texts(project / "services") == before  # the other specs' valid edits are not written either


@requires_prometheus
def test_bad_input_is_a_clear_error(run_cli, project: Path) -> None:
    assert run_cli("discover", "--all", "--prometheus", "http://127.0.0.1:9", "--prometheus-retries", "0")[1:] == (
        "", "nthlayer discover: error: Prometheus at http://127.0.0.1:9 is unavailable: connection failed "
            "(1 attempt)\n")
    assert run_cli("discover", "--all", "--prometheus", "localhost:9090")[2] == (
        "nthlayer discover: error: Prometheus URL 'localhost:9090' must start with http:// or https://\n")
    assert run_cli("discover", "--all", "--prometheus", "http://127.0.0.1:9", "--since", "36h") == (
        1, "", "nthlayer discover: error: --since '36h' is not a number of days or weeks such as 7d or 2w\n")
    assert run_cli("discover", "--all", "--prometheus", "http://127.0.0.1:9", "--min-rps", "-1")[2] == (
        "nthlayer discover: error: --min-rps '-1' is not a rate of at least 0 requests per second\n")
    assert run_cli("discover", "--service", "nope", "--prometheus", "http://127.0.0.1:9")[2] == (
        "nthlayer discover: error: no spec for service 'nope' in services\n")
    code, _, err = run_cli("discover", "--all", "--write", "--check", "--prometheus", "http://127.0.0.1:9")
    assert code == 64 and err.endswith("--check writes nothing; it cannot be combined with --write\n")


# --- the pure part ------------------------------------------------------------------------------

def test_queries() -> None:
    assert [s.query() for s in SERVICE_GRAPH_SOURCES] == [
        "max by (source_workload, destination_workload) (sum by (source_workload, destination_workload, reporter) "
        "(increase(istio_requests_total[1d])))",
        'sum by (deployment, dst_deployment) (increase(response_total{direction="outbound"}[1d]))',
        'sum by (client, server) (increase(traces_service_graph_request_total{connection_type!~"database|messaging_system"}'
        '[1d]))']
    probe = technology_probe("postgres", {"discovery": {"metric": "pg_up", "instance_label": "cluster"}})
    assert probe is not None and probe.query() == "count by (cluster, client_service) (count_over_time(pg_up[1d]))"
    runtime = technology_probe("go-runtime", {"discovery": {"metric": "go_goroutines", "instance_label": "job",
                                                             "service_label": "job"}})
    assert runtime is not None and runtime.query() == "count by (job) (count_over_time(go_goroutines[1d]))"


@pytest.mark.parametrize("seen, days, level", [(7, 7, "high"), (6, 7, "high"), (5, 7, "medium"), (3, 10, "medium"),
                                                (2, 7, "low"), (0, 7, "low")])
def test_confidence(seen: int, days: int, level: str) -> None:
    assert confidence(seen, days) == level


def test_dependency_names() -> None:
    assert [dependency_name(v) for v in ("orders-db", "Rate_Limits", "db-1.internal:5432")] == [
        "orders-db", "rate-limits", "db-1-internal-5432"]


def test_an_instance_shared_by_several_services_and_one_tied_to_none() -> None:
    probe = technology_probe("postgres", {"discovery": {"metric": "pg_up", "instance_label": "cluster"}})
    assert probe is not None
    from generators.discovery import technology_uses

    uses = technology_uses(probe, [({"cluster": "orders", "client_service": "a, b"}, [(1, "96"), (2, "0")]),
                                   ({"cluster": "old"}, [(1, "0"), (2, "3")])], 2)
    assert [(u.service, u.instance, u.days_seen) for u in uses] == [("", "old", 1), ("a", "orders", 1),
                                                                    ("b", "orders", 1)]


def test_the_shipped_catalog_declares_discovery_for_the_common_technologies() -> None:
    found, without = probes(str(ROOT / "rules_catalog"))
    assert {p.technology: (p.metric, p.instance_label, p.service_label) for p in found} == {
        "elasticsearch": ("elasticsearch_cluster_health_up", "cluster", "client_service"),
        "go-runtime": ("go_goroutines", "job", "job"),
        "jvm": ("jvm_memory_max_bytes", "job", "job"),
        "kafka": ("kafka_brokers", "kafka_cluster", "client_service"),
        "memcached": ("memcached_up", "job", "client_service"),
        "mongodb": ("mongodb_up", "rs_nm", "client_service"),
        "mysql": ("mysql_up", "job", "client_service"),
        "nodejs": ("nodejs_heap_size_total_bytes", "job", "job"),
        "postgres": ("pg_up", "cluster", "client_service"),
        "rabbitmq": ("rabbitmq_identity_info", "rabbitmq_cluster", "client_service"),
        "redis": ("redis_up", "redis_cluster", "client_service"),
    }
    assert "nginx" in without


FOUR_SPACES = """\
# the storefront's checkout
---
service: checkout-web
tier: 1
team: storefront
dependencies:
    upstream:
    -   payment-api
    technologies:
    -   type: redis
        name: cart-cache
"""


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "services").glob("*.yaml")) + ["four-spaces"])
def test_an_edit_changes_only_the_lines_it_must(name: str) -> None:
    from nthlayer.ops.spec_edit import apply_proposal
    from generators.discovery import Proposal

    text = FOUR_SPACES if name == "four-spaces" else (ROOT / "services" / name).read_text()
    edge = Edge("x", "zz-new", Decimal(1), 7, 7, ("istio",))
    use = TechnologyUse("x", "postgres", "cluster", "zz-db", 7, 7)
    after = apply_proposal(text, name, Proposal("x", (edge,), (), (use,), ()))
    import difflib

    removed = [line for line in difflib.ndiff(text.splitlines(), after.splitlines()) if line.startswith("- ")]
    assert len(removed) <= 1  # at most the flow list `upstream: [...]`, rewritten with the new name
    assert "zz-new" in after and "selector: {cluster: zz-db}" in after


def test_a_spec_edited_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    from generators.discovery import Proposal
    from generators.errors import UserError
    from nthlayer.ops.discover import SpecChange, write_changes

    path = tmp_path / "checkout-web.yaml"
    original = (ROOT / "services" / "checkout-web.yaml").read_text()
    edited = original.replace("upstream: [payment-api,", "upstream: [search-api, payment-api,")
    path.write_text(original + "# a teammate's note\n")
    with pytest.raises(UserError, match="changed while discovery ran; nothing written"):
        write_changes([SpecChange(str(path), Proposal("checkout-web"), original, edited)])
    assert path.read_text() == original + "# a teammate's note\n"
    path.write_text(original)
    assert write_changes([SpecChange(str(path), Proposal("checkout-web"), original, edited)]) == [str(path)]
    assert path.read_text() == edited
