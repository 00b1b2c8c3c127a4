"""Property-based fuzz of the served API (schemathesis over /api/v1/openapi.json): for generated requests,
no 5xx, every response matches the documented status codes, content types and schemas, and a request
that breaks the schema is refused with a 4xx."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from api_fixture import ApiServer, start_api
from prom_fixture import (PrometheusServer, fixture_specs, prometheus, prometheus_blocks,  # noqa: F401
                          requires_prometheus)
from nthlayer.api.openapi import document

EXAMPLES = 20  # per operation and mode: ~700 requests in all, bounded so the suite stays quick
pytestmark = requires_prometheus
# Valid requests for every operation; invalid ones (negative_data_rejection: they must get a 4xx) where
# there is something to get wrong.
CASES = [(method.upper(), path, mode) for path, item in document()["paths"].items() for method, op in item.items()
         for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
         if mode == schemathesis.GenerationMode.POSITIVE or op.get("parameters") or op.get("requestBody")]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, prometheus: PrometheusServer,  # noqa: F811
        fixture_specs: Path) -> Iterator[ApiServer]:  # noqa: F811
    root = tmp_path_factory.mktemp("fuzz")
    services = root / "services"
    shutil.copytree(fixture_specs, services)  # the fuzz adds and deletes specs: a copy of its own
    server = start_api(root, services, "--rate-limit", "1000000", "--prometheus", prometheus.url,
                       "--prometheus-retries", "0")
    yield server
    assert server.stop() == 0
    assert not (root / "crash.log").exists(), (root / "crash.log").read_text()


@pytest.fixture(scope="module")
def served(api: ApiServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(api.url + "/api/v1/openapi.json")


@pytest.mark.parametrize("method, path, mode", CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_fuzz(api: ApiServer, served: schemathesis.BaseSchema, method: str, path: str,
              mode: schemathesis.GenerationMode) -> None:
    operation = served[path][method].ok() if hasattr(served[path][method], "ok") else served[path][method]
    statuses: list[int] = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        # Not positive_data_acceptance: a body the JSON Schema accepts can still be refused (422) by the
        # checks beyond it (a spec's latency threshold off its buckets, an "at" that is no time).
        response = case.call_and_validate(base_url=api.url, headers=api.headers("admin"),
                                          excluded_checks=[schemathesis.checks.positive_data_acceptance])
        statuses.append(response.status_code)
        assert response.status_code < 500

    check()
    assert statuses
