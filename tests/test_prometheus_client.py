"""The Prometheus HTTP API client against a scripted local server: retries, errors, auth, long queries."""
from __future__ import annotations

import base64
import json
import threading
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from generators.errors import UserError
from nthlayer.integrations.prometheus import PrometheusClient, PrometheusError, PrometheusUnavailable, redact_url

VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"job": "a"}, "value": [1714564800, "0.0005"]}]}}


class Scripted:
    """Answers each request with the next (status, body) in ``answers``; records what it received."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any]] = []
        self.seen: list[dict[str, Any]] = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                parts = urlsplit(self.path)
                fake.seen.append({"method": method, "path": parts.path,
                                  "params": parse_qs(body if method == "POST" else parts.query),
                                  "auth": self.headers.get("Authorization")})
                status, answer = fake.answers.pop(0) if fake.answers else (200, VECTOR)
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if isinstance(answer, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def fake() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.server.shutdown()
    server.server.server_close()


AT = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def client(url: str, **kwargs: Any) -> PrometheusClient:
    return PrometheusClient(url, retries=kwargs.pop("retries", 2), backoff=0.001, environ=kwargs.pop("environ", {}),
                            **kwargs)


def test_instant_query_under_a_path_prefix(fake: Scripted) -> None:
    samples = client(fake.url + "/prometheus/").query("up", at=AT)
    assert samples[0].labels == {"job": "a"} and samples[0].value == Decimal("0.0005")
    assert fake.seen == [{"method": "GET", "path": "/prometheus/api/v1/query",
                          "params": {"query": ["up"], "time": ["1714564800"]}, "auth": None}]


def test_range_query(fake: Scripted) -> None:
    fake.answers = [(200, {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"job": "a"}, "values": [[1714564500, "1"], [1714564800, "2"]]}]}})]
    series = client(fake.url).query_range("up", AT.replace(minute=0), AT, "5m")
    assert series[0].values == [(Decimal(1714564500), Decimal(1)), (Decimal(1714564800), Decimal(2))]
    assert fake.seen[0]["path"] == "/api/v1/query_range" and fake.seen[0]["params"]["step"] == ["5m"]


def test_long_queries_are_sent_as_a_form_post(fake: Scripted) -> None:
    query = "sum(up{job=~\"" + "|".join(f"service-{n}" for n in range(300)) + "\"})"
    client(fake.url).query(query, at=AT)
    assert fake.seen[0]["method"] == "POST" and fake.seen[0]["params"]["query"] == [query]


def test_5xx_is_retried_then_succeeds(fake: Scripted) -> None:
    fake.answers = [(503, "Service Unavailable"), (502, "bad gateway")]
    c = client(fake.url)
    assert c.query("up", at=AT)[0].value == Decimal("0.0005")
    assert c.requests_sent == 3


def test_5xx_exhausts_bounded_retries(fake: Scripted) -> None:
    fake.answers = [(503, {"status": "error", "errorType": "unavailable", "error": "not ready"})] * 3
    with pytest.raises(PrometheusUnavailable, match=r"unavailable: HTTP 503: unavailable: not ready \(3 attempts\)"):
        client(fake.url).query("up", at=AT)


def test_unreachable_server() -> None:
    with pytest.raises(PrometheusUnavailable, match=r"http://127.0.0.1:9 is unavailable: connection failed \(2 attempts\)"):
        client("http://127.0.0.1:9", retries=1).query("up")


def test_status_error_is_reported_not_retried(fake: Scripted) -> None:
    fake.answers = [(400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"})]
    c = client(fake.url)
    with pytest.raises(PrometheusError, match=r"rejected the query \(HTTP 400\): bad_data: parse error at char 3"):
        c.query("up{", at=AT)
    assert c.requests_sent == 1


def test_non_json_body(fake: Scripted) -> None:
    fake.answers = [(200, "<html>login</html>")]
    with pytest.raises(PrometheusError, match=r"non-JSON body \(text/html\); is the URL right\?"):
        client(fake.url).query("up")


def test_bearer_token_from_file_is_sent_and_never_shown(fake: Scripted, tmp_path: Any) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-123\n")
    fake.answers = [(401, {"status": "error", "error": "unauthorized"})]
    with pytest.raises(PrometheusError) as info:
        client(fake.url, environ={"PROMETHEUS_TOKEN_FILE": str(token_file)}).query("up")
    assert fake.seen[0]["auth"] == "Bearer tok-123"
    assert "tok-123" not in str(info.value) and "HTTP 401" in str(info.value)


def test_basic_auth_and_credentials_in_url_are_redacted(fake: Scripted) -> None:
    client(fake.url, environ={"PROMETHEUS_USERNAME": "u", "PROMETHEUS_PASSWORD": "pw"}).query("up")
    assert fake.seen[0]["auth"] == "Basic " + base64.b64encode(b"u:pw").decode()
    assert redact_url("https://u:pw@mimir.example.com:8443/prometheus") == "https://mimir.example.com:8443/prometheus"


def test_conflicting_credentials_are_a_user_error() -> None:
    with pytest.raises(UserError, match="not both"):
        PrometheusClient("http://127.0.0.1:9", environ={"PROMETHEUS_TOKEN": "t", "PROMETHEUS_USERNAME": "u",
                                                        "PROMETHEUS_PASSWORD": "p"})
