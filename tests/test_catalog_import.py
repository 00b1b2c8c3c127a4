"""``nthlayer catalog import``: awesome-prometheus-alerts layout → imported catalog files, problems reported."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from generators.catalog import load_catalog, load_technology
from generators.catalog_import import camel_name, import_awesome, slug
from generators.yamlload import load_yaml
from tests.conftest import ROOT, requires_promtool

FIXTURE_CATALOG = str(ROOT / "tests" / "fixtures" / "catalog")
SOURCE = "tests/fixtures/awesome-format.yaml"
RULES = "/groups/0/services/0/exporters/0/rules"

EXPECTED_PROBLEMS = [
    f"{SOURCE}:21:17: {RULES}/2: rule skipped: query reads counter pg_stat_database_xact_commit_total raw, "
    "without rate()/increase(); the catalog refuses that",
    f"{SOURCE}:25:17: {RULES}/3: rule skipped: missing field 'query'",
    f"{SOURCE}:28:17: {RULES}/4: rule skipped: query is not valid PromQL: unclosed left parenthesis",
    f"{SOURCE}:32:17: {RULES}/5: rule skipped: name PostgresDown is already used by catalog technology postgres",
    f"{SOURCE}:36:17: {RULES}/6: rule skipped: name PostgresReplicaLagging is already used by {SOURCE}:12",
    f"{SOURCE}:40:17: {RULES}/7: rule skipped: severity 'page' is not one of critical, warning, info",
    f"{SOURCE}:54:17: /groups/0/services/1/exporters/0/rules/1: rule skipped: same query as "
    f"RedisClientsNearLimit ({SOURCE}:49)",
    f"{SOURCE}:58:13: /groups/0/services/1/exporters/1: no importable rules for technology 'redis-sidecar'; "
    "no file written",
]
HOST = "/groups/1/services/0/exporters/0/rules"
# What promtool (Prometheus 2.42) adds: things the Python PromQL parser accepts but Prometheus refuses.
PROMTOOL_PROBLEMS = [
    f"{SOURCE}:73:17: {HOST}/1: rule skipped: promtool: annotation \"description\": template: "
    "__alert_HostClockDrifting:1: function \"off\" not defined",
    f"{SOURCE}:78:17: {HOST}/2: rule skipped: promtool: could not parse expression: 1:1: parse error: "
    "unknown function with name \"limitk\"",
]
ALL_PROBLEMS = sorted(EXPECTED_PROBLEMS + PROMTOOL_PROBLEMS, key=lambda line: int(line.split(":")[1]))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture catalog and the awesome-format file, with paths as the CLI user types them."""
    shutil.copytree(FIXTURE_CATALOG, tmp_path / "catalog")
    (tmp_path / "tests" / "fixtures").mkdir(parents=True)
    shutil.copy(ROOT / SOURCE, tmp_path / SOURCE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_names() -> None:
    assert camel_name("Postgres replica lagging (> 30s)") == "PostgresReplicaLagging30s"
    assert camel_name("host  out-of inodes") == "HostOutOfInodes"
    assert slug("Host and hardware / Node") == "host-and-hardware-node"


def test_import_converts_and_reports(workdir: Path) -> None:
    result = import_awesome(load_yaml(SOURCE), "imported", load_catalog("catalog"), {})
    assert sorted(result.files) == ["imported/host-and-hardware.yaml", "imported/postgresql.yaml",
                                    "imported/redis-oliver006-redis-exporter.yaml"]
    assert result.rules == {"postgresql": 2, "redis-oliver006-redis-exporter": 1, "host-and-hardware": 3}
    assert [p.format() for p in sorted(result.problems)] == EXPECTED_PROBLEMS
    document = yaml.safe_load(result.files["imported/postgresql.yaml"])
    assert {k: v for k, v in document.items() if k != "rules"} == {
        "apiVersion": "nthlayer.dev/v1",
        "kind": "TechnologyRules",
        "technology": "postgresql",
        "display_name": "PostgreSQL",
        "category": "database",
        "imported": True,
        "source": "awesome-format.yaml: Databases and brokers / PostgreSQL / prometheus-community/postgres_exporter",
        "exporter": {"name": "prometheus-community/postgres_exporter",
                     "url": "https://github.com/prometheus-community/postgres_exporter"},
    }
    assert document["rules"][0] == {
        "name": "PostgresReplicaLagging",
        "expr": "pg_replication_lag_seconds > 30",
        "for": "2m",
        "severity": "warning",
        "tiers": [1, 2, 3],
        "summary": "Postgres replica lagging",
        "description": "Replica {{ $labels.instance }} is {{ $value }}s behind its primary.",
        "metrics": ["pg_replication_lag_seconds"],
    }
    assert document["rules"][1]["for"] == "0m"
    assert document["rules"][1]["metrics"] == ["pg_stat_database_xact_commit", "pg_stat_database_xact_rollback"]
    host = yaml.safe_load(result.files["imported/host-and-hardware.yaml"])
    assert host["category"] == "host"
    assert [r["name"] for r in host["rules"]] == ["HostOutOfInodes", "HostClockDrifting", "HostLoadSample"]


def test_checker_refusals_are_reported_at_the_rule(workdir: Path) -> None:
    seen: list[list[str]] = []

    def refuse_second(rules: list[dict]) -> dict[int, str]:
        seen.append([r["name"] for r in rules])
        return {1: "not today"}

    result = import_awesome(load_yaml(SOURCE), "imported", load_catalog("catalog"), {}, refuse_second)
    assert seen == [["PostgresReplicaLagging", "PostgresRollbacksHigh", "PostgresDown", "PostgresReplicaLagging",
                     "RedisClientsNearLimit", "RedisClientsNearLimitAgain", "HostOutOfInodes", "HostClockDrifting",
                     "HostLoadSample"]]
    assert f"{SOURCE}:17:17: {RULES}/1: rule skipped: promtool: not today" in [p.format() for p in result.problems]
    assert result.rules["postgresql"] == 1


@requires_promtool
def test_cli_import_writes_loadable_catalog_files(run_cli, workdir: Path) -> None:
    code, out, err = run_cli("catalog", "--catalog", "catalog", "import", SOURCE, "--into", "catalog")
    assert code == 0
    assert err.splitlines() == ALL_PROBLEMS
    assert out.splitlines() == [
        "host-and-hardware: 1 rule",
        "postgresql: 2 rules",
        "redis-oliver006-redis-exporter: 1 rule",
        "imported 4 rules into 3 technologies in catalog (3 files changed); 10 skipped (listed above)",
    ]
    catalog = load_catalog("catalog")
    assert sorted(catalog) == ["host-and-hardware", "postgres", "postgresql", "redis",
                               "redis-oliver006-redis-exporter"]
    assert catalog["postgresql"].imported
    assert run_cli("catalog", "--catalog", "catalog", "list", "--summary")[1] == (
        "5 technologies, 10 rules, 12 test cases (4 imported, untested)\n")
    # Importing again replaces the earlier import: same bytes, and its own rule names are no collision.
    code, out, err = run_cli("catalog", "--catalog", "catalog", "import", SOURCE, "--into", "catalog")
    assert code == 0
    assert err.splitlines() == ALL_PROBLEMS
    assert out.splitlines()[-1] == ("imported 4 rules into 3 technologies in catalog (0 files changed); "
                                    "10 skipped (listed above)")


@requires_promtool
def test_cli_import_strict_writes_nothing(run_cli, workdir: Path) -> None:
    code, out, err = run_cli("catalog", "--catalog", "catalog", "import", SOURCE, "--into", "out", "--strict")
    assert (code, out) == (1, "")
    assert err.splitlines() == [*ALL_PROBLEMS, "catalog import: 10 problems; nothing written"]
    assert not os.path.exists("out")


@requires_promtool
def test_import_never_overwrites_a_file_it_did_not_write(run_cli, workdir: Path) -> None:
    os.makedirs("into")
    shutil.copy("catalog/redis.yaml", "into/postgresql.yaml")  # a hand-written file under the imported name
    before = Path("into/postgresql.yaml").read_bytes()
    code, out, err = run_cli("catalog", "--catalog", "catalog", "import", SOURCE, "--into", "into")
    assert code == 0
    assert (f"{SOURCE}:8:13: /groups/0/services/0/exporters/0: into/postgresql.yaml exists and was not imported; "
            "not overwritten") in err.splitlines()
    assert Path("into/postgresql.yaml").read_bytes() == before
    assert "postgresql" not in out


def test_import_rejects_a_file_that_is_not_in_the_format(run_cli, workdir: Path) -> None:
    Path("bad.yaml").write_text("groups:\n  - name: x\n    services: nope\n", encoding="utf-8")
    code, out, err = run_cli("catalog", "--catalog", "catalog", "import", "bad.yaml", "--into", "into")
    assert code == 0
    assert err == "bad.yaml:2:5: /groups/0: expected a list under 'services'; skipped\n"
    assert out == "imported 0 rules into 0 technologies in into (0 files changed); 1 skipped (listed above)\n"


@requires_promtool
def test_imported_rules_pass_catalog_test(run_cli, workdir: Path) -> None:
    run_cli("catalog", "--catalog", "catalog", "import", SOURCE, "--into", "catalog")
    code, out, err = run_cli("catalog", "--catalog", "catalog", "test", "postgresql", "host-and-hardware")
    assert (code, err) == (0, "")
    assert out == ("catalog test passed: 2 technologies, 3 rules, 0 test cases (3 imported, untested) "
                   "(promtool check rules: ok, promtool test rules: ok)\n")
    assert load_technology(os.path.abspath("catalog/postgresql.yaml")).imported
