"""A real Prometheus server over backfilled data with known budget figures, for the budget and gate tests.

Thirty days of counters, one sample every 5 minutes, are written as OpenMetrics,
turned into TSDB blocks by ``promtool tsdb create-blocks-from openmetrics`` and
served by ``prometheus`` on a free 127.0.0.1 port with no scrape jobs. Every
series starts at 0 exactly 30 days before :data:`END` (the evaluation time), so
``increase(...[30d])`` needs no extrapolation and the figures below are exact.

Per 5-minute step (R = requests, E = 5xx, B = requests under the latency threshold):

=========  ====  =============  ====  =====  ==========================================
service    tier  objective      R     E      notes
=========  ====  =============  ====  =====  ==========================================
alpha      1     0.999          2000  1      the seed example: 0.05 % → 21.6 of 43.2 min left
beta       2     0.995          1000  0/100  errors only in the last hour (burn rate 20×)
gamma      3     0.99           500   —      no 5xx series at all: 0 consumed
delta      1     0.999          1000  2      0.2 %: budget overspent, −100 %
epsilon    2     0.995          1000  4      0.4 %: 20 % left (WARNING)
silent     1     0.999          —     —      a spec without metrics: no data
=========  ====  =============  ====  =====  ==========================================
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "demo"))
from promserver import PrometheusServer, build_tsdb, free_port, start_prometheus  # noqa: E402,F401

STEP = 300
WINDOW_DAYS = 30
END = 1714564800  # 2024-05-01T12:00:00Z, a multiple of STEP
START = END - WINDOW_DAYS * 86400
STEPS = (END - START) // STEP  # 8640

# service → (tier, requests per step, errors per step (None: no series), latency bucket le, good per step)
SERVICES: dict[str, tuple[int, int, int | None, str, int]] = {
    "alpha": (1, 2000, 1, "0.5", 1990),
    "beta": (2, 1000, 0, "1", 1000),
    "gamma": (3, 500, None, "2.5", 500),
    "delta": (1, 1000, 2, "0.5", 1000),
    "epsilon": (2, 1000, 4, "1", 1000),
}
BETA_INCIDENT_ERRORS = 100  # per step during the last hour (12 steps)
BETA_INCIDENT_STEPS = 12

requires_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="prometheus/promtool not installed")


def _errors_at(service: str, step: int) -> int:
    """Cumulative 5xx count of a service after ``step`` steps."""
    _, _, per_step, _, _ = SERVICES[service]
    if service == "beta":
        first_incident_step = STEPS - BETA_INCIDENT_STEPS
        return max(0, step - first_incident_step) * BETA_INCIDENT_ERRORS
    return step * (per_step or 0)


def openmetrics_text() -> str:
    """The whole data set as OpenMetrics (one family at a time, each series in time order)."""
    lines = ["# TYPE http_requests counter"]
    for name, (_, total, errors, _, _) in SERVICES.items():
        for code, per_step in (("200", None), ("500", errors)):
            if code == "500" and per_step is None:
                continue
            for step in range(STEPS + 1):
                t = START + step * STEP
                bad = _errors_at(name, step)
                value = bad if code == "500" else step * total - bad
                lines.append(f'http_requests_total{{job="{name}",code="{code}"}} {value} {t}')
    lines.append("# TYPE http_request_duration_seconds histogram")
    for name, (_, total, _, le, good) in SERVICES.items():
        for step in range(STEPS + 1):
            t = START + step * STEP
            lines.append(f'http_request_duration_seconds_bucket{{job="{name}",le="{le}"}} {step * good} {t}')
            lines.append(f'http_request_duration_seconds_bucket{{job="{name}",le="+Inf"}} {step * total} {t}')
            lines.append(f'http_request_duration_seconds_count{{job="{name}"}} {step * total} {t}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def spec_text(name: str, tier: int, extra: str = "") -> str:
    return f"service: {name}\ntier: {tier}\nteam: t-{name}\ntype: api\n{extra}"


def write_specs(directory: Path) -> Path:
    """One spec per fixture service (and `silent`, which has no metrics) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, (tier, *_rest) in SERVICES.items():
        # gamma states tier 3's default threshold (2.5 s) explicitly, as a spec may.
        extra = "observability:\n  slo_overrides:\n    latency: 2500\n" if name == "gamma" else ""
        (directory / f"{name}.yaml").write_text(spec_text(name, tier, extra), encoding="utf-8")
    (directory / "silent.yaml").write_text(spec_text("silent", 1), encoding="utf-8")
    return directory


# Built once per test process however many test modules import these fixtures (a fixture
# imported into two modules is two fixture definitions to pytest, so the cache lives here).
_SHARED: dict[str, object] = {}


def _cleanup() -> None:
    server = _SHARED.pop("server", None)
    if isinstance(server, PrometheusServer):
        server.stop()
    root = _SHARED.pop("root", None)
    if isinstance(root, str):
        shutil.rmtree(root, ignore_errors=True)


def shared_blocks() -> Path:
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.skip("prometheus/promtool not installed")
    if "blocks" not in _SHARED:
        root = tempfile.mkdtemp(prefix="nthlayer-prom-")
        _SHARED["root"] = root
        atexit.register(_cleanup)
        _SHARED["blocks"] = build_tsdb(Path(root), openmetrics_text())
    return _SHARED["blocks"]  # type: ignore[return-value]


def copy_blocks(blocks: Path, directory: Path) -> Path:
    """A private copy of pristine blocks: a running server compacts and writes its WAL in its data folder."""
    data = directory / "data"
    shutil.copytree(blocks, data)
    return data


@pytest.fixture(scope="session")
def prometheus_blocks() -> Path:
    return shared_blocks()


@pytest.fixture(scope="session")
def prometheus(prometheus_blocks: Path) -> PrometheusServer:
    """The shared server; never stop it in a test (use :func:`private_prometheus`)."""
    server = _SHARED.get("server")
    if not isinstance(server, PrometheusServer) or server.process.poll() is not None:
        server = start_prometheus(copy_blocks(prometheus_blocks, prometheus_blocks.parent / "shared"))
        _SHARED["server"] = server
    return server


@pytest.fixture
def private_prometheus(prometheus_blocks: Path, tmp_path: Path) -> Iterator[PrometheusServer]:
    """A server of its own over a copy of the blocks, for tests that kill it."""
    server = start_prometheus(copy_blocks(prometheus_blocks, tmp_path / "private"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fixture_specs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_specs(tmp_path_factory.mktemp("specs") / "services")


def environment_without_prometheus_auth() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
