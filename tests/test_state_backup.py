"""`nthlayer state backup DIR` / `restore DIR`: a damaged database comes back from its backup."""
from __future__ import annotations

import json
import stat
from pathlib import Path

from test_state_damage import HINT, damage, hold, make_state


def test_backup_then_restore_over_a_damaged_database(run_cli, tmp_path: Path) -> None:
    db = tmp_path / "state" / "nthlayer.duckdb"
    make_state(db)
    assert run_cli("record-deploy", "--service", "alpha", "--version", "v2", "--at", "2024-05-01T11:00:00Z",
                   "--state", str(db))[0] == 0
    backup = tmp_path / "backups" / "monday"
    code, out, err = run_cli("state", "backup", str(backup), "--state", str(db))
    assert (code, err) == (0, "")
    assert out == f"backed up {db} to {backup}: 2 deploys, 1 incidents, 1 audit records\n"
    assert {"schema.sql", "load.sql", "deploys.parquet"} <= {p.name for p in backup.iterdir()}
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700

    db.unlink()
    damage(db, "checksum")  # a damaged copy of a fresh database in its place
    code, _, err = run_cli("correlate-deploy", "--service", "alpha", "--deploy", "v1", "--state", str(db))
    assert code == 1 and err.rstrip().endswith(HINT)

    code, out, err = run_cli("state", "restore", str(backup), "--state", str(db))
    assert (code, err) == (0, "")
    assert out == (f"restored {db} from {backup}: 2 deploys, 1 incidents, 1 audit records\n"
                   f"the replaced database is kept as {db}.before-restore\n")
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    code, out, _ = run_cli("correlate-deploy", "--service", "alpha", "--deploy", "v1", "--state", str(db), "--json")
    assert code == 0 and [i["id"] for i in json.loads(out)["incidents"]] == ["INC-1"]
    # The restored database goes on: new rows get fresh ids.
    assert run_cli("record-deploy", "--service", "alpha", "--version", "v3", "--state", str(db))[0] == 0


def test_backup_refuses_a_full_folder_and_a_missing_database(run_cli, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    code, _, err = run_cli("state", "backup", str(tmp_path / "b"), "--state", str(db))
    assert (code, err) == (1, f"nthlayer state: error: no state database at {db}: nothing to back up\n")
    make_state(db)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine\n")
    code, _, err = run_cli("state", "backup", str(tmp_path / "b"), "--state", str(db))
    assert (code, err) == (1, f"nthlayer state: error: backup folder {tmp_path}/b already exists and is not empty; "
                              "name a new folder\n")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".nthlayer-backup-")] == []


def test_backup_of_a_damaged_database_is_one_line(run_cli, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    damage(db, "foreign")
    code, _, err = run_cli("state", "backup", str(tmp_path / "b"), "--state", str(db))
    assert (code, err) == (1, f"nthlayer state: error: state database {db} is not a DuckDB database file; {HINT}\n")
    assert not (tmp_path / "b").exists()


def test_restore_refuses_what_is_not_a_backup_and_a_database_in_use(run_cli, tmp_path: Path,
                                                                      monkeypatch) -> None:
    db = tmp_path / "s.duckdb"
    make_state(db)
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("state", "restore", str(tmp_path / "empty"), "--state", str(db))
    assert (code, err) == (1, f"nthlayer state: error: {tmp_path}/empty is not a state backup (no schema.sql or "
                              "load.sql); make one with 'nthlayer state backup DIR'\n")
    assert run_cli("state", "backup", str(tmp_path / "b"), "--state", str(db))[0] == 0
    holder = hold(db)
    try:
        code, _, err = run_cli("state", "restore", str(tmp_path / "b"), "--state", str(db))
    finally:
        holder.kill()
        holder.wait()
    assert (code, err) == (1, f"nthlayer state: error: state database {db} is in use by another nthlayer process; "
                              "stop it before restoring\n")
    assert sorted(p.name for p in tmp_path.glob("s.duckdb*")) == ["s.duckdb"]  # nothing swapped, nothing left
