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
