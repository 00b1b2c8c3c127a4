"""A local Prometheus over backfilled data: OpenMetrics text → TSDB blocks (``promtool tsdb
create-blocks-from openmetrics``) → ``prometheus`` on a free 127.0.0.1 port with no scrape jobs.

Shared by the demo (demo/prometheus.py), the test fixtures (tests/prom_fixture.py) and the benchmarks.
Needs Debian's ``prometheus`` package (server and promtool); no pytest, no network beyond loopback.
"""
from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests


def build_tsdb(directory: Path, text: str | None = None) -> Path:
    """Backfill ``text`` (OpenMetrics; default: the file ``directory``/data.om) into ``directory``/data."""
    source = directory / "data.om"
    if text is not None:
        source.write_text(text, encoding="utf-8")
    data = directory / "data"
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=744h",
                    str(source), str(data)], check=True, capture_output=True, timeout=600)
    return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]
    data: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def start_prometheus(data: Path, port: int | None = None, rule_files: list[Path] | None = None,
                     evaluation_interval: str = "1m") -> PrometheusServer:
    """Serve the TSDB at ``data`` (no scrape jobs) on 127.0.0.1 and wait until /-/ready answers; with
    ``rule_files``, Prometheus evaluates them every ``evaluation_interval`` from start-up."""
    config = data.parent / "prometheus.yml"
    rules = "".join(f"  - {json.dumps(str(path))}\n" for path in rule_files or [])
    config.write_text(f"global:\n  evaluation_interval: {evaluation_interval}\n"
                      + (f"rule_files:\n{rules}" if rules else ""), encoding="utf-8")
    port = port or free_port()
    log = open(data.parent / f"prometheus-{port}.log", "wb")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
         "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    server = PrometheusServer(url, process, data)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}; see {data.parent}")
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError("prometheus did not become ready within 30 s")
