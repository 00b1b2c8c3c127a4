"""Bounded waits (issue 14 item 9): a server that trickles bytes cannot keep a command running, and
an answer that is not HTTP is reported as such. A tiny TCP server on 127.0.0.1 plays the bad server."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from prom_fixture import fixture_specs  # noqa: F401
from nthlayer.integrations.prometheus import PrometheusClient, PrometheusError, PrometheusUnavailable

AT = "2024-05-01T12:00:00Z"
TRICKLE_BODY = [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n", b"{"]
TRICKLE_HEADERS = [b"HTTP/1.1 200 OK\r\n"]


class BadServer:
    """Accepts connections; for each, sends ``opening`` then, if ``trickle``, one byte every ``every`` s
    (at most ``limit`` bytes: every loop here is bounded) until the client goes away."""

    def __init__(self, opening: list[bytes], trickle: bytes | None, every: float = 0.1, limit: int = 300) -> None:
        self.opening, self.trickle, self.every, self.limit = opening, trickle, every, limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(65536)  # the request
                for chunk in self.opening:
                    conn.sendall(chunk)
                for _ in range(self.limit if self.trickle else 0):
                    if self.stopping.wait(self.every):
                        return
                    conn.sendall(self.trickle)  # type: ignore[arg-type]
            except OSError:
                return  # the client gave up: what we want

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def bad_server() -> Iterator[Callable[..., BadServer]]:
    servers: list[BadServer] = []

    def start(*args: object, **kwargs: object) -> BadServer:
        servers.append(BadServer(*args, **kwargs))  # type: ignore[arg-type]
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("opening,what", [(TRICKLE_BODY, "body"), (TRICKLE_HEADERS, "headers")])
def test_a_trickling_answer_is_cut_at_the_request_timeout(bad_server, opening: list[bytes], what: str) -> None:
    server = bad_server(opening, b" " if what == "body" else b"X", every=0.1)
    client = PrometheusClient(server.url, timeout=0.5, retries=1, backoff=0)
    started = time.monotonic()
    with pytest.raises(PrometheusUnavailable) as caught:
        client.query("up")
    assert str(caught.value) == (f"Prometheus at {server.url} is unavailable: no complete answer within 0.5 s "
                                 "(2 attempts)")
    assert time.monotonic() - started < 30  # a generous bound: without the fix this runs for 30 s of trickle
    assert server.connections == 2


def test_the_command_deadline_stops_the_retries(bad_server) -> None:
    server = bad_server(TRICKLE_BODY, b" ", every=0.1)
    client = PrometheusClient(server.url, timeout=0.6, retries=50, backoff=0, deadline=1.0)
    with pytest.raises(PrometheusUnavailable) as caught:
        client.query("up")
    assert str(caught.value).startswith(f"Prometheus at {server.url} is unavailable: no complete answer within the "
                                        "1 s deadline of this command (")
    assert 1 <= server.connections <= 3


def test_an_answer_that_is_not_http_says_so(bad_server) -> None:
    server = bad_server([b"SSH-2.0-OpenSSH_9.2\r\n"], None)
    client = PrometheusClient(server.url, timeout=2, retries=3, backoff=0)
    with pytest.raises(PrometheusError) as caught:
        client.query("up")
    assert str(caught.value) == (f"Prometheus at {server.url} answered with something that is not HTTP; "
                                 "is the URL (host and port) right?")
    assert server.connections == 1  # not retried: the same port will say the same thing


def test_check_deploy_and_track_budget_end_within_their_deadline(run_cli, bad_server,
                                                                  fixture_specs: Path, tmp_path: Path) -> None:  # noqa: F811
    server = bad_server(TRICKLE_BODY, b" ", every=0.1)
    common = ("--services", str(fixture_specs), "--prometheus", server.url, "--at", AT,
              "--prometheus-timeout", "0.4", "--prometheus-retries", "1", "--state", str(tmp_path / "s.duckdb"))
    code, out, err = run_cli("check-deploy", "--service", "alpha", *common)
    assert code == 3 and (f"cannot read error budgets: Prometheus at {server.url} is unavailable: no complete "
                          "answer within 0.4 s (2 attempts)") in out, out + err
    code, out, err = run_cli("track-budget", "--service", "alpha", *common)
    assert (code, out) == (1, "")
    assert err == (f"nthlayer track-budget: error: Prometheus at {server.url} is unavailable: no complete answer "
                   "within 0.4 s (2 attempts)\n")
    code, out, err = run_cli("track-budget", "--service", "alpha", *common[:-2], "--prometheus-retries", "9",
                             "--prometheus-deadline", "1", "--state", str(tmp_path / "s.duckdb"))
    assert code == 1 and "no complete answer within the 1 s deadline of this command" in err, err
