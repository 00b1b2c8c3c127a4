"""``nthlayer serve`` over real HTTP (uvicorn on 127.0.0.1): every endpoint, auth, limits, spec files,
concurrent writers, and the CLI's --api client mode."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import duckdb
import pytest
import requests

from api_fixture import ApiServer, start_api

# The seed example without its upstream; with its PagerDuty reference, which a critical service needs to
# be built (the default policy tier1-pagerduty, docs/policies.md).
SEED = ("service: payment-api\ntier: 1\nteam: payments\ntype: api\ntech_stack:\n  metrics: prometheus\n"
        "observability:\n  slo_overrides:\n    availability: 0.9995\npagerduty:\n  service_id: PXXXXXX\n")
AT = "2024-05-01T12:00:00Z"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    root = tmp_path_factory.mktemp("api")
    services = root / "services"
    services.mkdir()
    (services / "payment-api.yaml").write_text(SEED)
    (services / "user-service.yaml").write_text("service: user-service\ntier: 2\nteam: identity\n")
    server = start_api(root, services)
    yield server
    server.stop()


def problem_of(response: requests.Response) -> dict:
    assert response.headers["content-type"] == "application/problem+json", response.text
    body = response.json()
    assert body["status"] == response.status_code
    return body


# --- health, auth ------------------------------------------------------------------------------

def test_health_is_open_and_ready_reports_its_checks(api: ApiServer) -> None:
    assert api.get("/healthz", key=None).json() == {"status": "ok"}
    ready = api.get("/readyz", key=None)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"state": "ok", "prometheus": "not configured"}}


def _operations(api: ApiServer) -> list[tuple[str, str]]:
    document = api.get("/api/v1/openapi.json", key=None).json()
    return [(method.upper(), path.replace("{name}", "payment-api").replace("{service}", "payment-api")
             .replace("{slo}", "payment-api-availability").replace("{id}", "0123456789ab"))
            for path, item in document["paths"].items() for method in item if path not in ("/healthz", "/readyz")]


def test_every_endpoint_but_health_needs_a_key(api: ApiServer) -> None:
    operations = _operations(api)
    assert len(operations) == 15  # the nine of the design, list, query, check, three for keys
    for method, path in operations:
        answer = api.send(method, path, key=None, json={})
        assert answer.status_code == 401, (method, path)
        assert problem_of(answer)["detail"] == ("an API key is required: Authorization: Bearer KEY "
                                                "(or X-API-Key: KEY)")
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="nthlayer"'


def test_a_key_without_the_scope_is_forbidden_and_a_revoked_key_is_refused(api: ApiServer) -> None:
    answer = api.get("/api/v1/services", key="ci")
    assert answer.status_code == 403
    assert problem_of(answer)["detail"] == "this key lacks the scope services:read"
    answer = api.get("/api/v1/services", key="revoked")
    assert answer.status_code == 401
    assert problem_of(answer)["detail"] == "the API key or token is not valid (unknown, revoked or expired)"
    wrong = api.keys["admin"][:-4] + "AAAA"
    assert requests.get(api.url + "/api/v1/services", headers={"X-API-Key": wrong}, timeout=10).status_code == 401
    assert requests.get(api.url + "/api/v1/services", headers={"X-API-Key": api.keys["admin"]},
                        timeout=10).status_code == 200


def test_keys_created_and_revoked_through_the_api(api: ApiServer) -> None:
    created = api.send("POST", "/api/v1/api-keys", json={"name": "deployer", "scopes": ["deploys:write"]})
    assert created.status_code == 201
    body = created.json()
    assert body["key"]["scopes"] == ["deploys:write"] and body["key"]["last_used_at"] is None
    api.keys["deployer"] = body["secret"]
    deploy = {"service": "payment-api", "version": "k1", "at": AT}
    assert api.send("POST", "/api/v1/deploys", key="deployer", json=deploy).status_code == 201
    listed = {k["name"]: k for k in api.get("/api/v1/api-keys").json()["keys"]}
    assert listed["deployer"]["last_used_at"] is not None
    assert body["secret"] not in json.dumps(listed)
    revoked = api.send("DELETE", f"/api/v1/api-keys/{body['key']['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert api.send("POST", "/api/v1/deploys", key="deployer", json=deploy).status_code == 401
    assert api.send("DELETE", "/api/v1/api-keys/0123456789ab").status_code == 404


# --- services as spec files --------------------------------------------------------------------

def test_list_and_get_services_with_etags(api: ApiServer) -> None:
    listed = api.get("/api/v1/services").json()["services"]
    assert {"name": "payment-api", "path": "services/payment-api.yaml"} in listed
    answer = api.get("/api/v1/services/payment-api")
    assert answer.status_code == 200
    assert answer.json()["spec"]["observability"] == {"slo_overrides": {"availability": 0.9995}}
    assert answer.headers["ETag"] == answer.json()["etag"]
    missing = api.get("/api/v1/services/nope")
    assert missing.status_code == 404
    assert problem_of(missing)["detail"] == f"no spec for service 'nope' in {api.services}"


def test_create_update_delete_a_spec_file(api: ApiServer) -> None:
    spec = {"service": "cart-api", "tier": 2, "team": "shop", "dependencies": {"upstream": ["user-service"]}}
    created = api.send("POST", "/api/v1/services", json=spec)
    assert created.status_code == 201, created.text
    path = api.services / "cart-api.yaml"
    assert path.read_text() == "service: cart-api\ntier: 2\nteam: shop\ndependencies:\n  upstream:\n  - user-service\n"
    assert created.headers["Location"] == "/api/v1/services/cart-api"
    again = api.send("POST", "/api/v1/services", json=spec)
    assert again.status_code == 409
    assert problem_of(again)["detail"] == "service 'cart-api' already exists; update it with PUT"

    etag = created.headers["ETag"]
    changed = {**spec, "tier": 1}
    no_tag = api.send("PUT", "/api/v1/services/cart-api", json=changed)
    assert no_tag.status_code == 428
    updated = api.send("PUT", "/api/v1/services/cart-api", json=changed, headers={"If-Match": etag})
    assert updated.status_code == 200 and updated.headers["ETag"] != etag
    assert "tier: 1\n" in path.read_text()
    # A second writer still holding the first version is refused, and the file keeps the first write.
    stale = api.send("PUT", "/api/v1/services/cart-api", json={**spec, "tier": "standard"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert problem_of(stale)["detail"].startswith("service 'cart-api' changed since it was read")
    assert "tier: 1\n" in path.read_text()
    renamed = api.send("PUT", "/api/v1/services/cart-api", json={**spec, "service": "other"},
                       headers={"If-Match": updated.headers["ETag"]})
    assert renamed.status_code == 422
    assert problem_of(renamed)["detail"] == "the spec declares service 'other', the URL names 'cart-api'"

    assert api.send("DELETE", "/api/v1/services/cart-api", headers={"If-Match": etag}).status_code == 412
    deleted = api.send("DELETE", "/api/v1/services/cart-api", headers={"If-Match": updated.headers["ETag"]})
    assert deleted.json() == {"name": "cart-api", "path": "services/cart-api.yaml", "deleted": True}
    assert not path.exists()


def test_a_yaml_body_is_written_as_sent(api: ApiServer) -> None:
    text = "# owned by search\nservice: search-api\ntier: 2   # not critical\nteam: search\n"
    created = api.send("POST", "/api/v1/services", data=text.encode(), headers={"Content-Type": "application/yaml"})
    assert created.status_code == 201, created.text
    assert (api.services / "search-api.yaml").read_text() == text


def test_an_invalid_spec_answers_the_validator_lines_and_writes_nothing(api: ApiServer) -> None:
    body = '{\n  "service": "bad-api",\n  "tier": 7,\n  "team": "x",\n  "colour": "red"\n}'
    answer = api.send("POST", "/api/v1/services", data=body.encode(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert problem_of(answer)["errors"] == [
        "request:3:11: /tier: 7 is not a tier: use 1, 2, 3 or critical, standard, low",
        "request:5:3: /colour: unknown key 'colour' (allowed keys: datadog, dependencies, deploy, description, kubernetes, labels, "
        "observability, pagerduty, runbook_url, service, slos, team, tech_stack, tier, type)",
    ]
    yaml_body = b"service: bad-api\ntier: 1\nteam: x\nobservability:\n  slo_overrides:\n    availability: 1.5\n"
    answer = api.send("POST", "/api/v1/services", data=yaml_body, headers={"Content-Type": "application/yaml"})
    assert problem_of(answer)["errors"] == [
        f"{api.services}/bad-api.yaml:6:19: /observability/slo_overrides/availability: 1.5 is not a valid "
        "objective: it must be greater than 0 and less than 1 (e.g. 0.999)"]
    assert not (api.services / "bad-api.yaml").exists()
    broken = api.send("POST", "/api/v1/services", data=b'{"service": ', headers={"Content-Type": "application/json"})
    assert problem_of(broken)["errors"] == ["request:1:13: /: invalid JSON: Expecting value"]


def test_slos_and_generate_run_the_doit_build(api: ApiServer) -> None:
    slos = api.get("/api/v1/slos/payment-api").json()
    assert slos["slos"][0] == {"slo": "availability", "objective": "0.9995", "window": "30d",
                               "budget_minutes": "21.6", "threshold_ms": None}
    built = api.send("POST", "/api/v1/slos/generate", json={"services": ["payment-api"]})
    assert built.status_code == 200, built.text
    assert built.json()["exit_code"] == 0
    rules = api.root / "out" / "payment-api" / "prometheus" / "slo.rules.yaml"
    assert rules.is_file() and "payment-api" in rules.read_text()
    assert not (api.root / "out" / "user-service").exists()  # only the named services
    unknown = api.send("POST", "/api/v1/slos/generate", json={"services": ["ghost"]})
    assert unknown.status_code == 404


def test_invalid_bodies_answer_problem_lines_with_pointers(api: ApiServer) -> None:
    cases = [
        ("/api/v1/deploys", b'{"service": "payment-api", "version": 3}',
         ["request:1:39: /version: expected a string, found a int (3)"]),
        ("/api/v1/deploys", b'{"service": "Payment", "version": "1"}',
         ["request:1:13: /service: 'Payment' is not a valid service name: use lowercase letters, digits and "
          "hyphens, start and end with a letter or digit, at most 63 characters"]),
        ("/api/v1/deploys", b'{"service": "payment-api", "version": "1", "at": "yesterday"}',
         ["request:1:50: /at: at 'yesterday' is neither RFC 3339 (2024-05-01T12:00:00Z) nor unix seconds"]),
        ("/api/v1/deploys/correlate", b'{"service": "payment-api", "version": "1", "time_window": "1y"}',
         ["request:1:59: /time_window: '1y' is not a duration such as 30m, 1h or 2d"]),
        ("/api/v1/deploys/check", b'[]', ["request:1:1: /: expected a JSON object"]),
    ]
    for path, body, errors in cases:
        answer = api.send("POST", path, data=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, (path, answer.text)
        assert problem_of(answer)["errors"] == errors
    form = api.send("POST", "/api/v1/deploys", data=b"a=b", headers={"Content-Type": "text/plain"})
    assert form.status_code == 415


def test_a_body_over_the_limit_is_refused(tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.mkdir()
    server = start_api(tmp_path, services, "--max-body", "100")
    try:
        answer = server.send("POST", "/api/v1/deploys", json={"service": "a", "version": "x" * 200})
        assert answer.status_code == 413
        assert problem_of(answer)["detail"] == "the body is 231 bytes; at most 100 are accepted"
    finally:
        server.stop()


# --- deploys, gate, correlation ----------------------------------------------------------------

def test_record_check_and_correlate_a_deploy(api: ApiServer) -> None:
    deploy = {"service": "payment-api", "version": "v7", "commit": "abc123", "at": AT}
    first = api.send("POST", "/api/v1/deploys", key="ci", json=deploy)
    assert first.status_code == 201
    assert first.json() == {"service": "payment-api", "version": "v7", "kind": "deploy", "commit": "abc123",
                            "deployed_at": AT,
                            "recorded": True, "text": f"recorded: payment-api v7 at {AT}"}
    again = api.send("POST", "/api/v1/deploys", key="ci", json=deploy)
    assert again.status_code == 200 and again.json()["recorded"] is False
    correlated = api.send("POST", "/api/v1/deploys/correlate", key="ci",
                          json={"service": "payment-api", "version": "v7"})
    assert correlated.json()["text"] == ("payment-api v7: 0 correlated incidents within 1h; action: NONE\n"
                                         "  metrics: unavailable: no Prometheus URL given")
    assert correlated.json()["exit_code"] == 0
    unknown = api.send("POST", "/api/v1/deploys/correlate", key="ci", json={"service": "payment-api", "version": "v8"})
    assert unknown.status_code == 422
    # No Prometheus configured: the gate cannot decide (exit 3), unless told what to do then.
    verdict = api.send("POST", "/api/v1/deploys/check", key="ci", json={"service": "payment-api", "at": AT}).json()
    assert (verdict["decision"], verdict["exit_code"], verdict["recorded"]) == ("unknown", 3, True)
    told = api.send("POST", "/api/v1/deploys/check", key="ci",
                    json={"service": "payment-api", "at": AT, "on_unknown": "approve"}).json()
    assert (told["decision"], told["exit_code"]) == ("approve", 0)
    assert api.get("/api/v1/error-budgets", key="ci").status_code == 503


def test_rate_limit_answers_429_then_recovers(tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.mkdir()
    server = start_api(tmp_path, services, "--rate-limit", "5", "--rate-window", "2")
    try:
        seen = [server.get("/api/v1/api-keys") for _ in range(6)]
        assert [r.status_code for r in seen] == [200] * 5 + [429]
        assert [r.headers["RateLimit-Remaining"] for r in seen] == ["4", "3", "2", "1", "0", "0"]
        assert seen[0].headers["RateLimit-Limit"] == "5"
        retry = int(seen[-1].headers["Retry-After"])
        assert 1 <= retry <= 2
        assert problem_of(seen[-1])["detail"] == f"more than 5 requests in 2 s; retry after {retry} s"
        assert server.get("/api/v1/api-keys", key="ci").status_code == 403  # another key has its own budget
        time.sleep(retry + 0.2)
        assert server.get("/api/v1/api-keys").status_code == 200
    finally:
        server.stop()


def test_requests_without_a_valid_key_are_throttled_per_address(tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.mkdir()
    server = start_api(tmp_path, services, "--auth-failure-limit", "3", "--rate-window", "2")
    wrong = {"Authorization": "Bearer nthl_0000000000000000_guess"}
    try:
        seen = [server.send("GET", "/api/v1/api-keys", key=None, headers=wrong),
                server.get("/api/v1/api-keys", key=None),  # no key at all counts too
                server.send("GET", "/api/v1/api-keys", key=None, headers=wrong)]
        assert [r.status_code for r in seen] == [401, 401, 401]
        refused = server.get("/api/v1/api-keys")  # a valid key from this address: refused too (no oracle)
        assert refused.status_code == 429
        retry = int(refused.headers["Retry-After"])
        assert 1 <= retry <= 2
        assert problem_of(refused)["detail"] == ("more than 3 requests without a valid API key from this address "
                                                 f"in 2 s; retry after {retry} s")
        assert server.get("/healthz", key=None).status_code == 200  # health stays open
        time.sleep(retry + 0.2)
        assert server.get("/api/v1/api-keys").status_code == 200
    finally:
        server.stop()


def test_a_local_command_finds_the_state_held_by_the_server_and_names_it(tmp_path: Path, run_cli,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    services = tmp_path / "services"
    services.mkdir()
    server = start_api(tmp_path, services)
    try:
        started = time.monotonic()
        code, _, err = run_cli("record-deploy", "--service", "web", "--version", "1", "--state", str(server.state))
        assert time.monotonic() - started < 10  # at once, not after the 30 s lock timeout
        pid = server.process.pid
        assert (code, err) == (1, f"nthlayer record-deploy: error: state database {server.state} is held by "
                                  f"'nthlayer serve' (pid {pid}) at {server.url}: send the command there with "
                                  f"--api {server.url} (record-deploy, check-deploy, correlate-deploy), or stop "
                                  "the server to use the file directly\n")
        monkeypatch.setenv("NTHLAYER_API_KEY", server.keys["admin"])
        assert run_cli("record-deploy", "--service", "web", "--version", "1", "--api", server.url)[0] == 0
    finally:
        assert server.stop() == 0
    assert not Path(f"{server.state}.serve").exists()  # the mark goes with the server
    assert run_cli("record-deploy", "--service", "web", "--version", "2", "--state", str(server.state))[0] == 0


def test_concurrent_writers_lose_no_deploy(tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.mkdir()
    server = start_api(tmp_path, services, "--rate-limit", "100000")

    def pipeline(n: int) -> list[int]:
        session = requests.Session()
        session.headers.update(server.headers("ci"))
        return [session.post(server.url + "/api/v1/deploys", timeout=60,
                             json={"service": f"svc-{n}", "version": f"v{i}", "at": AT}).status_code
                for i in range(500)]

    try:
        with ThreadPoolExecutor(8) as pool:
            codes = [c for result in pool.map(pipeline, range(8)) for c in result]
    finally:
        assert server.stop() == 0
    assert codes == [201] * 4000
    con = duckdb.connect(str(server.state), read_only=True)
    try:
        assert con.execute("SELECT count(*), count(DISTINCT (service, version)) FROM deploys").fetchall() == \
            [(4000, 4000)]
        assert con.execute("SELECT count(*) FROM audit WHERE action = 'record-deploy' "
                           "AND actor = 'api-key:ci'").fetchall() == [(4000,)]
    finally:
        con.close()
    assert "lock" not in server.log.read_text().lower()


def test_last_used_time_is_kept_after_shutdown(run_cli, tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.mkdir()
    server = start_api(tmp_path, services)
    assert server.get("/api/v1/api-keys").status_code == 200
    assert server.stop() == 0
    code, out, _ = run_cli("api-key", "list", "--state", str(server.state), "--json")
    assert code == 0
    used = {k["name"]: k["last_used_at"] for k in json.loads(out)}
    assert used["admin"] is not None and used["ci"] is None
