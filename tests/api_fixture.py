"""A real ``nthlayer serve`` (uvicorn) on a free 127.0.0.1 port, in its own process, for the API tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from prom_fixture import free_port
from nthlayer.ops.api_keys import SCOPES, create_key, revoke_key
from nthlayer.state.db import connect

START_SECONDS = 60.0
STOP_SECONDS = 20.0


@dataclass
class ApiServer:
    url: str
    process: subprocess.Popen
    root: Path
    services: Path
    state: Path
    log: Path
    keys: dict[str, str] = field(default_factory=dict)  # name → full key text

    def headers(self, key: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}"}

    def get(self, path: str, key: str | None = "admin", **kwargs) -> requests.Response:
        return requests.get(self.url + path, headers=self.headers(key) if key else {}, timeout=60, **kwargs)

    def send(self, method: str, path: str, key: str | None = "admin", headers: dict[str, str] | None = None,
             **kwargs) -> requests.Response:
        merged = {**(self.headers(key) if key else {}), **(headers or {})}
        return requests.request(method, self.url + path, headers=merged, timeout=120, **kwargs)

    def stop(self) -> int:
        """Stop the server with SIGTERM (it flushes and closes the state database): 0 when it shut down
        cleanly (uvicorn re-raises the signal once it has, so the process ends by SIGTERM)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_SECONDS)
        clean = self.process.returncode in (0, -signal.SIGTERM) and \
            "Application shutdown complete" in self.log.read_text()
        return 0 if clean else self.process.returncode or 1


def make_keys(state: Path) -> dict[str, str]:
    """An admin key (every scope), a CD key (deploys:write, budgets:read), a revoked key."""
    with connect(str(state)) as con:
        keys = {"admin": create_key(con, "admin", list(SCOPES))[1],
                "ci": create_key(con, "ci", ["deploys:write", "budgets:read"])[1]}
        revoked, keys["revoked"] = create_key(con, "old", list(SCOPES))
        revoke_key(con, revoked.id)
    return keys


def start_api(root: Path, services: Path, *args: str, keys: bool = True) -> ApiServer:
    state = root / "state" / "nthlayer.duckdb"
    made = make_keys(state) if keys else {}
    port = free_port()
    log = root / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "NTHLAYER_STATE"))}
    env["NTHLAYER_CRASH_LOG"] = str(root / "crash.log")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "nthlayer", "serve", "--port", str(port), "--services", str(services),
             "--out", str(root / "out"), "--state", str(state), *args],
            cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = ApiServer(f"http://127.0.0.1:{port}", process, root, services, state, log, made)
    ends = time.monotonic() + START_SECONDS
    while time.monotonic() < ends:
        if process.poll() is not None:
            raise RuntimeError(f"nthlayer serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if requests.get(server.url + "/healthz", timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"nthlayer serve did not answer within {START_SECONDS:g} s:\n{log.read_text()}")
