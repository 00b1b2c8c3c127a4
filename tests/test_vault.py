"""Credentials from HashiCorp Vault (KV v2, token or AppRole) through the one resolver, against a TLS fake."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from nthlayer.config import load_config
from nthlayer.integrations.credentials import CredentialError, CredentialResolver
from nthlayer.integrations.vault import parse_vault_reference
from vault_fake import FakeVault

PD_KEY = "u+pd-secret-VALUE-0123456789"
ARGO_TOKEN = "argo-SECRET-token-abcdefghij"


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[FakeVault]:
    with FakeVault(str(tmp_path / "vault-tls")) as fake:
        fake.put("secret", "pagerduty", {"api_key": "old-key-version-1-xxxxx"})
        fake.put("secret", "pagerduty", {"api_key": PD_KEY, "routing": "not-used"})
        fake.put("secret", "argocd", {"token": ARGO_TOKEN})
        fake.put("secret", "forbidden", {"token": "never-read-value"})
        yield fake


def write_config(tmp_path: Path, text: str):
    path = tmp_path / "nthlayer.toml"
    path.write_text(text)
    return load_config(str(path))


def env_for(vault: FakeVault, **extra: str) -> dict[str, str]:
    return {"VAULT_ADDR": vault.url, "VAULT_CACERT": vault.ca_file, **extra}


def test_token_reads_latest_version_and_pinned_version(vault: FakeVault, tmp_path: Path) -> None:
    token = vault.add_token(["secret/data/pagerduty", "secret/data/argocd"])
    config = write_config(tmp_path, '[credentials]\npagerduty.api_key = "vault://secret/pagerduty"\n'
                                    'argocd.token = "vault://secret/argocd#token"\n')
    resolver = CredentialResolver(env_for(vault, VAULT_TOKEN=token), config)
    secret = resolver.require("pagerduty.api_key")
    assert secret.value == PD_KEY and secret.source == "vault://secret/pagerduty"
    assert PD_KEY not in repr(secret) and PD_KEY not in str(secret)
    assert resolver.require("argocd.token").value == ARGO_TOKEN
    pinned = CredentialResolver(env_for(vault, VAULT_TOKEN=token), write_config(
        tmp_path, '[credentials]\npagerduty.api_key = "vault://secret/pagerduty?version=1#api_key"\n'))
    assert pinned.require("pagerduty.api_key").value == "old-key-version-1-xxxxx"


def test_approle_login_once_and_cached_reads(vault: FakeVault, tmp_path: Path) -> None:
    role_id, secret_id = vault.add_role(["secret/data/*"])
    config = write_config(tmp_path, '[credentials]\npagerduty.api_key = "vault://secret/pagerduty#api_key"\n'
                                    'argocd.token = "vault://secret/argocd"\n')
    resolver = CredentialResolver(env_for(vault, VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id), config)
    assert resolver.require("pagerduty.api_key").value == PD_KEY
    assert resolver.require("argocd.token").value == ARGO_TOKEN
    assert resolver.require("pagerduty.api_key").value == PD_KEY
    assert vault.logins == 1
    assert [r for r in vault.requests if r[0] == "GET"] == [
        ("GET", "/v1/secret/data/pagerduty", 200), ("GET", "/v1/secret/data/argocd", 200)]


def test_namespace_header_scopes_tokens_and_secrets(vault: FakeVault, tmp_path: Path) -> None:
    vault.put("secret", "pagerduty", {"api_key": "team-a-key-0123456789"}, namespace="team-a")
    role_id, secret_id = vault.add_role(["secret/data/pagerduty"], namespace="team-a")
    config = write_config(tmp_path, '[credentials]\npagerduty.api_key = "vault://secret/pagerduty"\n')
    env = env_for(vault, VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id, VAULT_NAMESPACE="team-a")
    assert CredentialResolver(env, config).require("pagerduty.api_key").value == "team-a-key-0123456789"
    env.pop("VAULT_NAMESPACE")
    with pytest.raises(CredentialError) as failure:
        CredentialResolver(env, config).require("pagerduty.api_key")
    assert str(failure.value) == ("vault://secret/pagerduty: AppRole login: Vault answered an error "
                                  "(InvalidRequest: invalid role or secret ID)")


@pytest.mark.parametrize("reference, message", [
    ("vault://secret/forbidden#token",
     "vault://secret/forbidden#token: reading: permission denied: the token's policy does not allow reading "
     "it (Vault 403: 1 error occurred:\n\t* permission denied\n\n)"),
    ("vault://secret/missing#token", "vault://secret/missing#token: reading: no such secret or version (Vault 404)"),
    ("vault://secret/pagerduty?version=9#api_key",
     "vault://secret/pagerduty?version=9#api_key: reading: no such secret or version (Vault 404)"),
    ("vault://secret/pagerduty#nope",
     "vault://secret/pagerduty#nope: the secret has no field 'nope' (it has: api_key, routing)"),
])
def test_errors_name_the_reference_never_a_value(vault: FakeVault, tmp_path: Path, reference: str,
                                                 message: str) -> None:
    token = vault.add_token(["secret/data/pagerduty", "secret/data/missing"])
    config = write_config(tmp_path, f'[credentials]\nargocd.token = "{reference}"\n')
    with pytest.raises(CredentialError) as failure:
        CredentialResolver(env_for(vault, VAULT_TOKEN=token), config).require("argocd.token")
    assert str(failure.value) == message
    for value in (PD_KEY, "never-read-value", token):
        assert value not in str(failure.value)


def test_bad_vault_credentials_and_connection(vault: FakeVault, tmp_path: Path) -> None:
    config = write_config(tmp_path, '[credentials]\nargocd.token = "vault://secret/argocd#token"\n')
    cases = [
        (env_for(vault, VAULT_TOKEN="hvs.wrong-token-value"),
         "vault://secret/argocd#token: reading: permission denied: the token's policy does not allow reading it "
         "(Vault 403: permission denied)"),
        (env_for(vault, VAULT_ROLE_ID="nobody", VAULT_SECRET_ID="wrong-secret-id-value"),
         "vault://secret/argocd#token: AppRole login: Vault answered an error (InvalidRequest: invalid role or "
         "secret ID)"),
        (env_for(vault), "vault://secret/argocd#token: no Vault credentials: set VAULT_TOKEN, or VAULT_ROLE_ID "
                         "and VAULT_SECRET_ID for an AppRole login"),
        ({"VAULT_TOKEN": "t"}, "vault://secret/argocd#token: VAULT_ADDR is not set (the Vault server, "
                               "https://HOST:8200)"),
        ({"VAULT_ADDR": "http://vault.example.com:8200", "VAULT_TOKEN": "t"},
         "vault://secret/argocd#token: VAULT_ADDR must be https (a token would cross the network in clear text); "
         "plain http is accepted for a loopback address only"),
        ({"VAULT_ADDR": vault.url, "VAULT_TOKEN": "t", "VAULT_CACERT": str(Path(__file__))},
         None),  # a file that is no CA: a TLS failure, worded below
    ]
    for environ, message in cases:
        with pytest.raises(CredentialError) as failure:
            CredentialResolver(environ, config).require("argocd.token")
        if message is not None:
            assert str(failure.value) == message
        assert "wrong-secret-id-value" not in str(failure.value) and "hvs.wrong" not in str(failure.value)
    with pytest.raises(CredentialError) as failure:
        CredentialResolver({"VAULT_ADDR": vault.url, "VAULT_TOKEN": "t"}, config).require("argocd.token")
    assert str(failure.value).startswith("vault://secret/argocd#token: reading: TLS verification of https://127.0.0.1:")


@pytest.mark.parametrize("text, error", [
    ("vault://secret", "vault://secret: needs a mount and a path, e.g. vault://secret/pagerduty#api_key"),
    ("vault://secret//x", "vault://secret//x: needs a mount and a path, e.g. vault://secret/pagerduty#api_key"),
    ("vault://secret/../x", "vault://secret/../x: path segment '..' has characters Vault paths here do not use"),
    ("vault://secret/x?v=1", "vault://secret/x?v=1: the only query is ?version=N with N >= 1"),
    ("vault://secret/x?version=0", "vault://secret/x?version=0: the only query is ?version=N with N >= 1"),
    ("vault://secret/x#", "vault://secret/x#: empty #field"),
])
def test_reference_syntax(text: str, error: str) -> None:
    with pytest.raises(ValueError) as failure:
        parse_vault_reference(text)
    assert str(failure.value) == error
    ref = parse_vault_reference("vault://kv/teams/payments/pd?version=3#api_key")
    assert (ref.mount, ref.path, ref.version, ref.field) == ("kv", "teams/payments/pd", 3, "api_key")


def test_vault_environment_is_not_needed_without_vault_references(tmp_path: Path) -> None:
    os.environ.pop("VAULT_ADDR", None)
    config = write_config(tmp_path, '[credentials]\nargocd.token = "env:MY_ARGO"\n')
    assert CredentialResolver({"MY_ARGO": ARGO_TOKEN}, config).require("argocd.token").value == ARGO_TOKEN


def test_prometheus_bearer_token_from_vault_is_sent_and_never_shown(vault: FakeVault, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from nthlayer.integrations.prometheus import PrometheusClient, PrometheusError
    from test_prometheus_client import Scripted

    prom_token = "prom-VAULT-token-0123456789"
    vault.put("secret", "prometheus", {"token": prom_token})
    token = vault.add_token(["secret/data/prometheus"])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nthlayer.toml").write_text('[credentials]\nprometheus.token = "vault://secret/prometheus"\n')
    server = Scripted()
    try:
        server.answers = [(200, {"status": "success", "data": {"resultType": "vector", "result": []}}),
                          (403, {"status": "error", "error": "forbidden"})]
        client = PrometheusClient(server.url, environ=env_for(vault, VAULT_TOKEN=token), retries=0)
        assert client.query("up") == []
        with pytest.raises(PrometheusError) as failure:
            client.query("up")
        assert [seen["auth"] for seen in server.seen] == [f"Bearer {prom_token}"] * 2
        assert prom_token not in str(failure.value)
    finally:
        server.server.shutdown()
        server.server.server_close()
