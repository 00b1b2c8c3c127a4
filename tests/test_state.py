"""The state database: migrations, UTC handling, audit records, and the one-process-per-file lock."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import ROOT
from generators.errors import UserError
from nthlayer.state import db as state


def test_migrations_are_applied_once_and_tables_exist(tmp_path: Path) -> None:
    path = str(tmp_path / "s.duckdb")
    with state.connect(path) as con:
        pass
    with state.connect(path) as con:
        versions = con.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        indexes = {r[0] for r in con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
    assert versions == [(v,) for v, _ in state.MIGRATIONS]
    assert {"slos", "error_budgets", "deploys", "incidents", "correlations", "audit", "schema_version"} <= tables
    assert {"slos_service", "error_budgets_service", "deploys_service", "incidents_service",
            "correlations_service", "audit_service"} <= indexes


def test_state_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NTHLAYER_STATE", raising=False)
    assert state.state_path() == os.path.join("state", "nthlayer.duckdb")
    monkeypatch.setenv("NTHLAYER_STATE", "/x/env.duckdb")
    assert state.state_path() == "/x/env.duckdb"
    assert state.state_path("/x/flag.duckdb") == "/x/flag.duckdb"


def test_body_rolls_back_on_error(tmp_path: Path) -> None:
    path = str(tmp_path / "s.duckdb")
    with pytest.raises(RuntimeError):
        with state.connect(path) as con:
            state.insert_audit(con, "x", None, "ok", {})
            raise RuntimeError("boom")
    with state.connect(path) as con:
        assert con.execute("SELECT count(*) FROM audit").fetchall() == [(0,)]


def test_times_are_stored_as_utc_and_naive_input_is_refused() -> None:
    aware = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert state.to_db(aware) == datetime(2024, 5, 1, 12, 0)
    assert state.from_db(datetime(2024, 5, 1, 12, 0)) == datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="naive datetime"):
        state.to_db(datetime(2024, 5, 1, 12, 0))


def test_parse_time_accepts_rfc3339_and_unix_and_rejects_naive() -> None:
    expected = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert state.parse_time("2024-05-01T12:00:00Z") == expected
    assert state.parse_time("2024-05-01T14:00:00+02:00") == expected
    assert state.parse_time("1714564800") == expected
    assert state.format_time(expected) == "2024-05-01T12:00:00Z"
    with pytest.raises(UserError, match="has no timezone"):
        state.parse_time("2024-05-01T12:00:00", "--at")
    with pytest.raises(UserError, match="neither RFC 3339"):
        state.parse_time("yesterday", "--at")


def test_audit_records_actor_and_scrubs_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    path = str(tmp_path / "s.duckdb")
    state.record_audit("generate", "payment-api", "ok",
                       {"files": 3, "api_token": "s3cr3t", "nested": {"password": "p", "keep": "v"}}, path=path)
    with state.connect(path) as con:
        rows = con.execute("SELECT actor, action, service, result, details FROM audit").fetchall()
    assert rows == [("octocat", "generate", "payment-api", "ok",
                     '{"api_token":"[redacted]","files":3,"nested":{"keep":"v","password":"[redacted]"}}')]
    assert state.current_actor({"USER": "alice"}) == "alice"
    assert state.current_actor({"CI_COMMIT_AUTHOR": "bob <b@x>", "USER": "root"}) == "bob <b@x>"
    assert state.current_actor({}) == "unknown"


_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from nthlayer.state import db as state
    for n in range({rows}):
        state.record_audit("test", sys.argv[1], str(n), {{}}, path={path!r})
""")


def test_two_concurrent_writer_processes_lose_no_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "s.duckdb")
    script = _WRITER.format(root=str(ROOT), rows=25, path=path)
    writers = [subprocess.Popen([sys.executable, "-c", script, name], stderr=subprocess.PIPE, text=True)
               for name in ("w1", "w2")]
    errors = [w.communicate(timeout=120)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    with state.connect(path) as con:
        counts = con.execute("SELECT service, count(DISTINCT result) FROM audit GROUP BY service ORDER BY 1").fetchall()
    assert counts == [("w1", 25), ("w2", 25)]


_HOLDER = textwrap.dedent("""
    import sys, time
    import duckdb
    con = duckdb.connect(sys.argv[1])
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
""")


def _hold(path: str, seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_lock_conflict_waits_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "s.duckdb")
    with state.connect(path):
        pass
    holder = _hold(path, 0.5)
    state.record_audit("test", None, "ok", {}, path=path)
    holder.wait(timeout=30)
    assert "state database is locked by another nthlayer process; retrying…" in capsys.readouterr().err


def test_lock_conflict_fails_clearly_after_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "s.duckdb")
    with state.connect(path):
        pass
    monkeypatch.setenv("NTHLAYER_STATE_LOCK_TIMEOUT", "0.2")
    holder = _hold(path, 5)
    try:
        with pytest.raises(state.StateLocked, match="still locked by another nthlayer process after 0.2 s"):
            state.record_audit("test", None, "ok", {}, path=path)
    finally:
        holder.kill()
        holder.wait()
