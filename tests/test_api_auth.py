"""API keys from the command line, and OIDC bearer tokens checked against a JWKS file (a key pair made here)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from api_fixture import start_api


def test_api_key_create_list_revoke(run_cli, tmp_path: Path) -> None:
    state = str(tmp_path / "s.duckdb")
    code, out, _ = run_cli("api-key", "create", "--name", "ci", "--scope", "deploys:write,budgets:read",
                           "--state", state)
    assert code == 0
    first, secret = out.splitlines()
    key_id = secret.split("_")[1]
    assert first == f"created API key {key_id} (ci; scopes budgets:read,deploys:write). It is shown only this once:"
    code, out, _ = run_cli("api-key", "list", "--state", state)
    assert out.startswith(f"{key_id}  ci  budgets:read,deploys:write  created ")
    assert out.endswith("  last used never\n")
    assert secret.split("_", 2)[2] not in out
    code, out, _ = run_cli("api-key", "revoke", "ci", "--state", state)
    assert code == 0 and out.startswith(f"revoked API key {key_id} (ci) at ")
    assert " REVOKED " in run_cli("api-key", "list", "--state", state)[1]
    # Only the hash is stored: the secret appears nowhere in the database file.
    assert secret.split("_", 2)[2].encode() not in Path(state).read_bytes()


def test_api_key_errors(run_cli, tmp_path: Path) -> None:
    state = str(tmp_path / "s.duckdb")
    code, _, err = run_cli("api-key", "create", "--name", "ci", "--scope", "deploys:write,root", "--state", state)
    assert (code, err) == (1, "nthlayer api-key: error: unknown scope 'root'; choose from services:read, "
                              "services:write, budgets:read, deploys:write, keys:admin\n")
    code, _, err = run_cli("api-key", "revoke", "nope", "--state", state)
    assert (code, err) == (1, "nthlayer api-key: error: no API key 'nope'; 'nthlayer api-key list' shows them\n")


def _jwks(tmp_path: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    return private, path


def test_oidc_tokens(tmp_path: Path) -> None:
    private, jwks = _jwks(tmp_path)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    services = tmp_path / "services"
    services.mkdir()
    server = start_api(tmp_path, services, "--oidc-jwks", str(jwks), "--oidc-issuer", "https://idp.example",
                       "--oidc-audience", "nthlayer")

    def token(key: object = private, **claims: object) -> str:
        body = {"sub": "pipeline-7", "iss": "https://idp.example", "aud": "nthlayer", "exp": int(time.time()) + 300,
                "scope": "deploys:write openid", **claims}
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})

    def post(bearer: str) -> int:
        return server.send("POST", "/api/v1/deploys", key=None, headers={"Authorization": f"Bearer {bearer}"},
                           json={"service": "web", "version": "1", "at": "2024-05-01T12:00:00Z"}).status_code

    try:
        assert post(token()) == 201
        assert post(token(exp=int(time.time()) - 10)) == 401
        assert post(token(aud="someone-else")) == 401
        assert post(token(iss="https://evil.example")) == 401
        assert post(token(key=stranger)) == 401
        assert post(token(scope="budgets:read")) == 403
        assert server.send("GET", "/api/v1/api-keys", key=None,
                           headers={"Authorization": f"Bearer {token()}"}).status_code == 403
    finally:
        server.stop()


class _JwksServer:
    """An identity provider's JWKS endpoint on 127.0.0.1: serves ``document``, counts the fetches."""

    def __init__(self, document: dict) -> None:
        import http.server
        import threading

        self.document = document
        self.fetches = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.fetches += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _jwk(private: rsa.RSAPrivateKey, kid: str) -> dict:
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key())), "kid": kid, "use": "sig",
            "alg": "RS256"}


def test_oidc_keys_from_a_url_follow_a_key_rotation(tmp_path: Path) -> None:
    first = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    second = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    provider = _JwksServer({"keys": [_jwk(first, "k1")]})
    services = tmp_path / "services"
    services.mkdir()
    server = start_api(tmp_path, services, "--oidc-jwks", provider.url)

    def post(key: rsa.RSAPrivateKey, kid: str) -> int:
        token = jwt.encode({"sub": "ci", "exp": int(time.time()) + 300, "scope": "deploys:write"}, key,
                           algorithm="RS256", headers={"kid": kid})
        return server.send("POST", "/api/v1/deploys", key=None, headers={"Authorization": f"Bearer {token}"},
                           json={"service": "web", "version": kid, "at": "2024-05-01T12:00:00Z"}).status_code

    try:
        assert provider.fetches == 1  # at start
        assert post(first, "k1") == 201
        assert provider.fetches == 1  # cached
        provider.document = {"keys": [_jwk(first, "k1"), _jwk(second, "k2")]}  # the provider rotates
        assert post(second, "k2") == 201  # an unknown kid: fetched again, then accepted
        assert provider.fetches == 2
        assert post(second, "k3") == 401  # another unknown kid soon after: refused without a fetch
        assert post(first, "k2") == 401  # signed by the wrong key
        assert provider.fetches == 2
    finally:
        server.stop()
        provider.close()


def test_oidc_jwks_url_that_cannot_be_used_stops_the_server_with_its_url(run_cli, tmp_path: Path) -> None:
    provider = _JwksServer({"keys": []})
    closed = provider.url  # nothing listens there once closed
    provider.close()
    state = str(tmp_path / "s.duckdb")
    code, _, err = run_cli("serve", "--oidc-jwks", closed, "--state", state, "--services", str(tmp_path))
    assert (code, err) == (1, f"nthlayer serve: error: cannot use the JWKS URL {closed}: cannot connect\n")
    provider = _JwksServer({"not": "a key set"})
    try:
        code, _, err = run_cli("serve", "--oidc-jwks", provider.url, "--state", state, "--services", str(tmp_path))
        assert code == 1 and err.startswith(f"nthlayer serve: error: cannot use the JWKS URL {provider.url}: ")
    finally:
        provider.close()
    code, _, err = run_cli("serve", "--oidc-jwks", "http://idp.example.com/jwks.json", "--state", state)
    assert (code, err) == (1, "nthlayer serve: error: --oidc-jwks http://idp.example.com/jwks.json: use an https "
                              "URL (plain http only to 127.0.0.1), or a file\n")
