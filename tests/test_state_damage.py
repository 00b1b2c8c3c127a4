"""A state database that is damaged, foreign, locked or unreachable: one clear line, the right exit code,
and never a blocked build (issue 14 items 6 and 11)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nthlayer.state import db as state
from prom_fixture import PrometheusServer, fixture_specs, prometheus, prometheus_blocks, requires_prometheus  # noqa: F401
from test_doit_build import _doit, _ran

AT = "2024-05-01T12:00:00Z"
HINT = ("restore it from a backup ('nthlayer state restore DIR', see docs/state.md) "
        "or point --state / $NTHLAYER_STATE at another file")
PROBLEMS = {
    "foreign": "not a DuckDB database file",
    "truncated": "truncated (DuckDB could not read a block it expects)",
    "checksum": "damaged (computed checksum",
}


def make_state(path: Path) -> None:
    """A real database with a deploy and an incident in it."""
    with state.connect(str(path)) as con:
        con.execute("INSERT INTO deploys (service, version, deployed_at, source) "
                    "VALUES ('alpha', 'v1', TIMESTAMP '2024-05-01 10:00:00', 'cli')")
        con.execute("INSERT INTO incidents (incident_key, service, severity, started_at, source) "
                    "VALUES ('INC-1', 'alpha', 'high', TIMESTAMP '2024-05-01 10:10:00', 'cli')")


def damage(path: Path, kind: str) -> None:
    """Make ``path`` a damaged database of the given kind (a real DuckDB file first, except 'foreign')."""
    if kind == "foreign":
        path.write_text("service,version\nalpha,v1\n")
        return
    make_state(path)
    data = bytearray(path.read_bytes())
    if kind == "truncated":
        data = data[:100_000]  # the header survives; the blocks it points at do not
    else:  # flip bytes inside the first data block: its stored checksum no longer matches
        for offset in range(12288 + 64, 12288 + 96):
            data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def expected_line(command: str, path: Path, kind: str) -> str:
    return f"nthlayer {command}: error: state database {path} is {PROBLEMS[kind]}"


@pytest.mark.parametrize("kind", sorted(PROBLEMS))
@pytest.mark.parametrize("argv", [
    ("record-deploy", "--service", "alpha", "--version", "v2"),
    ("record-incident", "--service", "alpha", "--started-at", AT, "--severity", "high"),
    ("correlate-deploy", "--service", "alpha", "--deploy", "v1"),
])
def test_damaged_database_is_one_line_and_exit_1(run_cli, tmp_path: Path, kind: str, argv: tuple[str, ...]) -> None:
    db = tmp_path / "s.duckdb"
    damage(db, kind)
    code, out, err = run_cli(*argv, "--state", str(db))
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1 and err.startswith(expected_line(argv[0], db, kind)), err
    assert err.rstrip("\n").endswith(HINT)
    assert not (tmp_path / "isolated-state" / "crash.log").exists()


def test_a_path_that_cannot_be_opened_is_one_line(run_cli, tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("")
    code, _, err = run_cli("record-deploy", "--service", "a", "--version", "1",
                           "--state", str(tmp_path / "plain-file" / "s.duckdb"))
    assert (code, err) == (1, f"nthlayer record-deploy: error: cannot create the state folder {tmp_path}/plain-file: "
                              "a file is in the way; pass --state FILE or set $NTHLAYER_STATE to a writable place\n")
    (tmp_path / "folder.duckdb").mkdir()
    code, _, err = run_cli("record-deploy", "--service", "a", "--version", "1", "--state", str(tmp_path / "folder.duckdb"))
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith(f"nthlayer record-deploy: error: cannot open state database {tmp_path}/folder.duckdb: ")


def test_new_database_and_folder_are_private(run_cli, tmp_path: Path) -> None:
    db = tmp_path / "new-state" / "s.duckdb"
    assert run_cli("record-deploy", "--service", "a", "--version", "1", "--state", str(db))[0] == 0
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    os.chmod(db, 0o644)  # a database from before: tightened on the next open
    assert run_cli("record-deploy", "--service", "a", "--version", "2", "--state", str(db))[0] == 0
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_a_first_build_creates_the_state_folder_private(tmp_path: Path) -> None:
    """The build, usually the first command of a project, creates state/ before the database: 0700 too."""
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "a.yaml").write_text("service: a\ntier: 3\nteam: t\n")
    result = _doit(tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


_HOLDER = textwrap.dedent("""
    import sys, time
    import duckdb
    con = duckdb.connect(sys.argv[1])
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def hold(path: Path, seconds: float = 60) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


# --- check-deploy: an unreadable database means "cannot decide" -----------------------------------

@requires_prometheus
@pytest.mark.parametrize("kind", ["checksum", "foreign", "locked"])
def test_check_deploy_cannot_decide_without_its_state(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                      fixture_specs: Path, tmp_path: Path,  # noqa: F811
                                                      monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    db = tmp_path / "s.duckdb"
    holder = None
    if kind == "locked":
        make_state(db)
        monkeypatch.setenv("NTHLAYER_STATE_LOCK_TIMEOUT", "0.2")
        holder = hold(db)
    else:
        damage(db, kind)
    try:
        def gate(*extra: str) -> tuple[int, str, str]:
            return run_cli("check-deploy", "--service", "alpha", "--services", str(fixture_specs), "--prometheus",
                           prometheus.url, "--at", AT, "--state", str(db), *extra)

        code, out, err = gate()
        assert code == 3, out + err
        assert out.startswith("CANNOT DECIDE: deploy of alpha (tier 1)\n  - cannot read recent deploys and "
                              f"incidents: state database {db} ")
        assert err.endswith("nthlayer check-deploy: warning: the decision was not recorded in the audit trail\n")
        assert "Traceback" not in err
        assert gate("--on-unknown", "approve")[0] == 0
        code, out, _ = gate("--on-unknown", "tier")
        assert code == 2 and "undecided; applied tier 1 (critical) default: block" in out
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()


@requires_prometheus
def test_a_budget_block_still_blocks_without_state(run_cli, prometheus: PrometheusServer,  # noqa: F811
                                                   fixture_specs: Path, tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "s.duckdb"
    damage(db, "foreign")
    code, out, _ = run_cli("check-deploy", str(fixture_specs / "delta.yaml"), "--services", str(fixture_specs),
                           "--prometheus", prometheus.url, "--at", AT, "--state", str(db))
    assert code == 2 and out.startswith("BLOCK: deploy of delta"), out


# --- the build: only `correlate` fails ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["checksum", "truncated", "locked"])
def test_build_with_a_bad_state_builds_every_service(tmp_path: Path, kind: str) -> None:
    import shutil

    from conftest import ROOT

    shutil.copytree(ROOT / "services", tmp_path / "services")
    (tmp_path / "state").mkdir()
    db = tmp_path / "state" / "nthlayer.duckdb"
    holder = None
    if kind == "locked":
        make_state(db)
        holder = hold(db)
    else:
        damage(db, kind)
    try:
        result = _doit(tmp_path, env={"NTHLAYER_STATE_LOCK_TIMEOUT": "0.3"})
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    services = sorted(p.stem for p in (tmp_path / "services").glob("*.yaml"))
    assert result.returncode == 1, result.stdout + result.stderr
    composites = sorted(p.stem for p in (tmp_path / "services" / "composites").glob("*.yaml"))
    assert _ran(result) == sorted([f"service:{s}" for s in services] + [f"composite:{c}" for c in composites]
                                  + ["alertmanager", "correlate", "grafana-overview", "k8s", "prune", "report"])
    for name in services:
        assert (tmp_path / "out" / name / "prometheus" / "slo.rules.yaml").is_file()
        assert (tmp_path / "out" / name / "openslo.yaml").is_file()
    assert (tmp_path / "out" / "alertmanager" / "alertmanager.yml").is_file()
    assert "Traceback" not in result.stdout + result.stderr
    problem = {"locked": "is still locked by another nthlayer process after 0.3 s",
               "checksum": "is damaged (computed checksum",
               "truncated": "is truncated"}[kind]
    notice = "state database is locked by another nthlayer process; retrying…"  # while it waits
    lines = sorted(line for line in result.stderr.splitlines() if line != notice)
    # The two tasks that read the state fail, one line each; nothing else does.
    assert len(lines) == 2, result.stderr
    for line, task in zip(lines, ("correlate", "report")):
        assert line.startswith(f"nthlayer: {task}: state database state/nthlayer.duckdb {problem}"), result.stderr
    assert not (tmp_path / "out" / "reports" / "correlations.json").exists()
    assert not (tmp_path / "out" / "reports" / "index.html").exists()


def test_crash_log_goes_beside_the_database_in_use(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    monkeypatch.delenv("NTHLAYER_CRASH_LOG")
    db = tmp_path / "elsewhere" / "other-app.duckdb"
    db.parent.mkdir()
    con = duckdb.connect(str(db))  # another program's DuckDB file: its schema_version is not ours
    con.execute("CREATE TABLE schema_version (version VARCHAR, applied_at VARCHAR)")
    con.execute("INSERT INTO schema_version VALUES ('v-one', 'yesterday')")
    con.close()
    code, _, err = run_cli("record-deploy", "--service", "a", "--version", "1", "--state", str(db))
    assert code == 4 and err.rstrip().endswith(f"details in {db.parent}/nthlayer-crash.log"), err
    assert "Traceback" in (db.parent / "nthlayer-crash.log").read_text()


def test_damage_met_only_by_a_query_is_the_same_one_line(run_cli, tmp_path: Path) -> None:
    # The file opens (its header and catalog survive); reading the deploys reaches the cut-off blocks.
    db = tmp_path / "s.duckdb"
    with state.connect(str(db)) as con:
        con.execute("INSERT INTO deploys (service, version, deployed_at, source) SELECT 'svc-' || i, 'v1', "
                    "TIMESTAMP '2024-01-01' + to_seconds(i), 'cli' FROM range(20000) t(i)")
    data = db.read_bytes()
    db.write_bytes(data[:len(data) // 10])
    code, _, err = run_cli("correlate-deploy", "--service", "svc-1", "--deploy", "v1", "--state", str(db))
    assert (code, err) == (1, f"nthlayer correlate-deploy: error: state database {db} is truncated (DuckDB could "
                              f"not read a block it expects); {HINT}\n")
