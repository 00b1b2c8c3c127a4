"""Deploy ↔ incident correlation: known scores on hand-built scenarios, idempotent imports, fingerprint, reports."""
from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import ROOT
from nthlayer.buildsys.reports import write_correlation_reports
from nthlayer.state.events import state_fingerprint
from nthlayer.state.db import connect

EVENTS = ROOT / "tests" / "fixtures" / "events"


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "services"
    folder.mkdir()
    (folder / "user-service.yaml").write_text("service: user-service\ntier: 2\nteam: identity\n")
    (folder / "payment-api.yaml").write_text(
        "service: payment-api\ntier: 1\nteam: payments\ndependencies:\n  upstream: [user-service]\n"
        "pagerduty:\n  service_id: PPAY001\n")
    (folder / "search-api.yaml").write_text("service: search-api\ntier: 2\nteam: search\n")
    return folder


@pytest.fixture
def db(tmp_path: Path, run_cli) -> str:
    path = str(tmp_path / "s.duckdb")
    code, out, err = run_cli("import-events", str(EVENTS / "deploys.csv"), str(EVENTS / "incidents.json"),
                             str(EVENTS / "mixed.csv"), "--state", path)
    assert (code, out, err) == (0, "deploys: 3 read, 3 new; incidents: 6 read, 6 new\n", "")
    return path


def correlate(run_cli, db: str, specs: Path, version: str, service: str = "user-service",
              *extra: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run_cli("correlate-deploy", "--deploy", version, "--service", service, "--services", str(specs),
                             "--state", db, "--json", *extra)
    assert err == ""
    return code, json.loads(out)


def scores(document: dict[str, Any]) -> list[tuple[str, float, float, float, float, str]]:
    return [(i["id"], i["confidence"], i["factors"]["time"], i["factors"]["dependency"], i["factors"]["history"],
             i["action"]) for i in document["incidents"]]


def test_first_deploy_downstream_before_and_unrelated(run_cli, db: str, specs: Path) -> None:
    code, document = correlate(run_cli, db, specs, "v1")
    assert code == 0 and document["action"] == "INVESTIGATE"
    assert scores(document) == [
        ("INC-1", 0.75, 0.45, 0.3, 0, "INVESTIGATE"),  # payment-api calls user-service, 30 min after
        ("INC-4", 0.49, 0.49, 0, 0, "MONITOR"),  # 6 min after, but search-api does not depend on it
    ]  # INC-2 started 30 min before the deploy: the deploy cannot have caused it, so it is no candidate


def test_an_incident_that_started_before_the_deploy_is_never_a_candidate(run_cli, db: str, specs: Path) -> None:
    # Issue 14 item 5: with history and dependency credit, an earlier incident scored 50 % "INVESTIGATE".
    assert run_cli("record-deploy", "--service", "user-service", "--version", "v3",
                   "--at", "2024-05-02T11:30:00Z", "--state", db)[0] == 0
    code, document = correlate(run_cli, db, specs, "v3")
    assert (code, document["action"], document["incidents"]) == (0, "NONE", [])  # INC-5 began 30 min earlier
    write_correlation_reports(db, str(specs), str(Path(db).parent / "out"))
    report = json.loads((Path(db).parent / "out" / "reports" / "correlations.json").read_text())
    pairs = [(e["deploy"]["version"], e["incident"]["id"]) for e in report["top_correlated_deploys"]["user-service"]]
    assert ("v3", "INC-5") not in pairs and ("v1", "INC-2") not in pairs


def test_three_days_later_only_counts_inside_a_wide_window(run_cli, db: str, specs: Path) -> None:
    _, document = correlate(run_cli, db, specs, "v1", "user-service", "--time-window", "4d")
    by_id = {i["id"]: i for i in document["incidents"]}
    # 72 h after: 0.5 − 7.2 is below zero, so time gives 0 (the full difference, not timedelta.seconds).
    assert (by_id["INC-3"]["confidence"], by_id["INC-3"]["factors"]["hours_after_deploy"]) == (0.3, 72)
    assert by_id["INC-3"]["factors"]["time"] == 0


def test_history_pushes_a_second_deploy_over_the_block_line(run_cli, db: str, specs: Path) -> None:
    code, document = correlate(run_cli, db, specs, "v2")
    assert code == 2 and document["action"] == "BLOCK"
    assert scores(document) == [("INC-5", 0.9, 0.4, 0.3, 0.2, "BLOCK")]
    code, out, _ = run_cli("correlate-deploy", "--deploy", "v2", "--service", "user-service",
                           "--services", str(specs), "--state", db)
    assert out == ("user-service v2: 1 correlated incident within 1h; action: BLOCK\n"
                   "  metrics: unavailable: no Prometheus URL given\n"
                   "  INC-5  user-service  critical  started 2024-05-02T11:00:00Z  confidence 90%  BLOCK\n"
                   "    factors: time 0.4/0.5, dependency 0.3/0.3, blast radius 0/0 (same service), history 0.2/0.2, "
                   "metrics unavailable/0.4\n")


def test_incident_without_id_gets_a_natural_key(run_cli, db: str, specs: Path) -> None:
    _, document = correlate(run_cli, db, specs, "s7", "search-api")
    assert scores(document) == [("search-api@2024-04-30T08:20:00Z", 0.7667, 0.4667, 0.3, 0, "INVESTIGATE")]


def test_unknown_deploy_is_a_user_error(run_cli, db: str, specs: Path) -> None:
    code, _, err = run_cli("correlate-deploy", "--deploy", "v9", "--service", "user-service", "--state", db)
    assert code == 1 and "no recorded deploy or change of user-service version v9" in err


def test_reimport_does_not_duplicate_and_fingerprint_follows_data(run_cli, db: str) -> None:
    before = state_fingerprint(db)
    code, out, _ = run_cli("import-events", str(EVENTS / "deploys.csv"), str(EVENTS / "incidents.json"),
                           str(EVENTS / "mixed.csv"), "--state", db)
    assert (code, out) == (0, "deploys: 3 read, 0 new; incidents: 6 read, 0 new\n")
    assert state_fingerprint(db) == before  # same data (audit rows do not count)
    with connect(db) as con:
        assert con.execute("SELECT count(*) FROM deploys").fetchall() == [(3,)]
        assert con.execute("SELECT count(*) FROM incidents").fetchall() == [(6,)]
    # Resolving an open incident changes the data, so the fingerprint, without adding a row.
    assert run_cli("record-incident", "--service", "user-service", "--id", "INC-5", "--severity", "critical",
                   "--started-at", "2024-05-02T11:00:00Z", "--resolved-at", "2024-05-02T12:00:00Z",
                   "--state", db)[0] == 0
    resolved = state_fingerprint(db)
    assert resolved != before
    assert run_cli("record-deploy", "--service", "x", "--version", "1", "--at", "1714564800", "--state", db)[0] == 0
    assert state_fingerprint(db) not in (before, resolved)


def test_fingerprint_of_missing_database_equals_empty_one(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.duckdb")
    assert state_fingerprint(missing) == state_fingerprint(missing)
    assert not os.path.exists(missing)
    empty = str(tmp_path / "empty.duckdb")
    with connect(empty):
        pass
    assert state_fingerprint(empty) == state_fingerprint(missing)


def test_bad_records_name_file_and_row(run_cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("service,version,deployed_at\napi,1,2024-05-01T10:00:00\n")
    code, _, err = run_cli("import-events", str(bad), "--state", str(tmp_path / "s.duckdb"))
    assert (code, err) == (1, f"nthlayer import-events: error: {bad}:2: deployed_at '2024-05-01T10:00:00' has no "
                              "timezone; add Z for UTC or an offset such as +02:00\n")


def test_reports_are_deterministic(db: str, specs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert write_correlation_reports(db, str(specs), str(out)) == [
        str(out / "reports" / "correlations.json"), str(out / "reports" / "correlations.md")]
    first = (out / "reports" / "correlations.json").read_bytes()
    assert write_correlation_reports(db, str(specs), str(out)) == []
    report = json.loads(first)
    assert [e["incident"]["id"] for e in report["top_correlated_deploys"]["user-service"]] == [
        "INC-5", "INC-1", "INC-4"]  # INC-2 began before v1: never listed against it
    assert [i["id"] for i in report["incidents_without_suspect"]] == ["INC-3", "INC-4", "INC-2"]
    markdown = (out / "reports" / "correlations.md").read_text()
    assert "| v2 | 2024-05-02T10:00:00Z | INC-5 second deploy breaks login | user-service | 90% | BLOCK |" in markdown


# --- PagerDuty import over TLS ------------------------------------------------------------------

PD_INCIDENTS = [
    {"id": "Q1", "title": "payments down", "urgency": "high", "status": "resolved",
     "created_at": "2024-05-01T10:20:00Z", "resolved_at": "2024-05-01T10:50:00Z",
     "service": {"id": "PPAY001", "summary": "Payment API"}},
    {"id": "Q2", "title": "slow", "urgency": "low", "status": "triggered", "priority": {"summary": "P1"},
     "created_at": "2024-05-01T12:00:00Z", "service": {"id": "POTHER", "summary": "other-thing"}},
    {"id": "Q3", "title": "third", "urgency": "low", "status": "acknowledged",
     "created_at": "2024-05-01T13:00:00Z", "service": {"id": "PPAY001", "summary": "Payment API"}},
]


class FakeIncidents:
    """GET /incidents with since/until and limit/offset paging, over TLS, like PagerDuty REST v2."""

    def __init__(self, directory: str, api_key: str) -> None:
        from tls_fake import make_certificate
        import ssl

        self.cert, key = make_certificate(directory)
        self.queries: list[dict[str, list[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                fake.queries.append(query)
                if self.headers.get("Authorization") != f"Token token={api_key}":
                    status, body = 401, {"error": {"message": "Authentication failed"}}
                elif parts.path != "/incidents":
                    status, body = 404, {"error": {"message": "Not Found"}}
                else:
                    since, until = query["since"][0], query["until"][0]
                    rows = [i for i in PD_INCIDENTS if since <= i["created_at"] < until]
                    limit, offset = int(query.get("limit", ["25"])[0]), int(query.get("offset", ["0"])[0])
                    status, body = 200, {"incidents": rows[offset:offset + limit], "limit": limit,
                                         "offset": offset, "more": offset + limit < len(rows)}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()


@pytest.fixture
def pagerduty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeIncidents]:
    fake = FakeIncidents(str(tmp_path), "pd-key-xyz")
    monkeypatch.setenv("PAGERDUTY_API_KEY", "pd-key-xyz")
    monkeypatch.setenv("SSL_CERT_FILE", fake.cert)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_pagerduty_import_maps_services_and_is_idempotent(run_cli, pagerduty: FakeIncidents, specs: Path,
                                                          tmp_path: Path) -> None:
    db = str(tmp_path / "s.duckdb")
    args = ("import-events", "--pagerduty", "--since", "2024-05-01T00:00:00Z", "--until", "2024-05-02T00:00:00Z",
            "--api-url", pagerduty.url, "--services", str(specs), "--state", db)
    assert run_cli(*args)[:2] == (0, "pagerduty: 3 incidents read, 3 new\n")
    assert run_cli(*args)[:2] == (0, "pagerduty: 3 incidents read, 0 new\n")
    assert pagerduty.queries[0]["since"] == ["2024-05-01T00:00:00Z"]
    with connect(db) as con:
        rows = con.execute("SELECT incident_key, service, severity, started_at, resolved_at FROM incidents "
                           "ORDER BY incident_key").fetchall()
    from datetime import datetime
    assert rows == [
        ("pagerduty:Q1", "payment-api", "high", datetime(2024, 5, 1, 10, 20), datetime(2024, 5, 1, 10, 50)),
        ("pagerduty:Q2", "other-thing", "critical", datetime(2024, 5, 1, 12, 0), None),
        ("pagerduty:Q3", "payment-api", "low", datetime(2024, 5, 1, 13, 0), None),
    ]


def test_pagerduty_bad_key_is_explained_without_the_key(run_cli, pagerduty: FakeIncidents, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGERDUTY_API_KEY", "wrong-key-123")
    code, out, err = run_cli("import-events", "--pagerduty", "--since", "2024-05-01T00:00:00Z", "--until",
                             "2024-05-02T00:00:00Z", "--api-url", pagerduty.url, "--services", "/nonexistent",
                             "--state", str(tmp_path / "s.duckdb"))
    assert code == 1 and "HTTP 401" in err and "wrong-key-123" not in err + out


def test_report_without_a_state_database_is_the_empty_report_and_creates_nothing(tmp_path) -> None:
    from nthlayer.buildsys.reports import write_correlation_reports
    from nthlayer.state.db import connect

    missing = tmp_path / "none.duckdb"
    write_correlation_reports(str(missing), str(tmp_path / "no-services"), str(tmp_path / "a"), edges=[])
    assert not missing.exists()
    empty = tmp_path / "empty.duckdb"
    with connect(str(empty)):
        pass
    write_correlation_reports(str(empty), str(tmp_path / "no-services"), str(tmp_path / "b"), edges=[])
    for name in ("correlations.json", "correlations.md"):
        assert (tmp_path / "a" / "reports" / name).read_bytes() == (tmp_path / "b" / "reports" / name).read_bytes()
