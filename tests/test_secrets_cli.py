"""`nthlayer config` and a real command (setup-pagerduty) taking its key from Vault, end to end: the TLS
Vault fake, the TLS PagerDuty fake, the state file — and no secret in anything printed or written."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from pagerduty_fake import FakePagerDuty
from vault_fake import FakeVault

PD_KEY = "u+PagerDuty-key-from-Vault-0123"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeVault, FakePagerDuty, dict]]:
    with FakeVault(str(tmp_path / "tls-vault")) as vault, FakePagerDuty(PD_KEY, str(tmp_path / "tls-pd")) as pd:
        vault.put("secret", "pagerduty", {"api_key": PD_KEY})
        role_id, secret_id = vault.add_role(["secret/data/pagerduty"])
        pd.add_schedule("Payments primary")
        for name in ("PAGERDUTY_API_KEY", "PAGERDUTY_API_KEY_FILE", "PAGERDUTY_API_URL", "SSL_CERT_DIR",
                     "VAULT_TOKEN", "VAULT_NAMESPACE", "NTHLAYER_CONFIG"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("VAULT_ADDR", vault.url)
        monkeypatch.setenv("VAULT_CACERT", vault.ca_file)
        monkeypatch.setenv("VAULT_ROLE_ID", role_id)
        monkeypatch.setenv("VAULT_SECRET_ID", secret_id)
        monkeypatch.setenv("SSL_CERT_FILE", pd.ca_file)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("NTHLAYER_PD_BACKOFF", "0.001")
        monkeypatch.chdir(tmp_path)
        (tmp_path / "services").mkdir()
        (tmp_path / "services" / "checkout.yaml").write_text(
            "service: checkout\ntier: 1\nteam: payments\npagerduty:\n  schedule_ids: [PS00001]\n")
        (tmp_path / "nthlayer.toml").write_text("# project settings\n[build]\nplugins = []\n")
        yield vault, pd, {"secret_id": secret_id, "role_id": role_id}


def everything_written(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".pem"))


def test_config_set_get_list_unset(run_cli, project, tmp_path: Path) -> None:
    vault, _, _ = project
    assert run_cli("config", "set", "pagerduty.api_key", "--from-vault", "vault://secret/pagerduty#api_key") == (
        0, "pagerduty.api_key = vault://secret/pagerduty#api_key in nthlayer.toml\n", "")
    assert (tmp_path / "nthlayer.toml").read_text() == (
        '# project settings\n[build]\nplugins = []\n\n[credentials]\npagerduty.api_key = '
        '"vault://secret/pagerduty#api_key"\n')
    assert run_cli("config", "set", "pagerduty.api_key", "--from-vault", "vault://secret/pagerduty#api_key")[1] == (
        "pagerduty.api_key = vault://secret/pagerduty#api_key (unchanged) in nthlayer.toml\n")
    code, out, err = run_cli("config", "get", "pagerduty.api_key")
    assert (code, out, err) == (0, "pagerduty.api_key = vault://secret/pagerduty#api_key\n"
                                   "  in use: vault://secret/pagerduty#api_key: resolves (u+…23)\n", "")
    code, out, _ = run_cli("config", "list")
    assert (code, out) == (0, "pagerduty.api_key = vault://secret/pagerduty#api_key\n"
                              "  in use: vault://secret/pagerduty#api_key\n")
    assert vault.logins == 1  # list without --check does not contact Vault
    vault.roles.clear()
    code, out, err = run_cli("config", "list", "--check")
    assert code == 1 and out.endswith("does not resolve: vault://secret/pagerduty#api_key: AppRole login: Vault "
                                      "answered an error (InvalidRequest: invalid role or secret ID)\n")
    assert run_cli("config", "unset", "pagerduty.api_key")[:2] == (0, "removed pagerduty.api_key from nthlayer.toml\n")
    assert (tmp_path / "nthlayer.toml").read_text() == "# project settings\n[build]\nplugins = []\n\n[credentials]\n"
    code, out, _ = run_cli("config", "get", "pagerduty.api_key")
    assert (code, out) == (1, "pagerduty.api_key: no reference in the file\n  not provided: set $PAGERDUTY_API_KEY "
                              "or $PAGERDUTY_API_KEY_FILE, or 'nthlayer config set'\n")


def test_config_set_refuses_a_secret_and_unknown_keys(run_cli, project, tmp_path: Path) -> None:
    before = (tmp_path / "nthlayer.toml").read_text()
    code, out, err = run_cli("config", "set", "pagerduty.api_key", PD_KEY)
    assert (code, out) == (1, "")
    assert err == ("nthlayer config: error: pagerduty.api_key is a secret: nthlayer.toml holds a reference to it, "
                   "never the secret itself (its value is not shown); use --from-vault vault://PATH#field, "
                   "--from-env VAR or --from-file PATH\n")
    code, _, err = run_cli("config", "set", "pagerduty.apikey", "--from-env", "X")
    assert code == 1 and err.startswith("nthlayer config: error: unknown credential 'pagerduty.apikey'; known: ")
    code, _, err = run_cli("config", "set", "argocd.token")
    assert code == 64 and err.endswith("nthlayer config: error: give VALUE, --from-vault, --from-env or --from-file\n")
    assert (tmp_path / "nthlayer.toml").read_text() == before


def test_setup_pagerduty_with_its_key_in_vault(run_cli, project, tmp_path: Path) -> None:
    vault, pd, ids = project
    assert run_cli("config", "set", "pagerduty.api_key", "--from-vault", "vault://secret/pagerduty")[0] == 0
    code, out, err = run_cli("setup-pagerduty", "services", "--api-url", pd.url)
    assert (code, err) == (0, "") and "Apply complete: 4 created" in out
    writes = pd.writes
    code, out, _ = run_cli("setup-pagerduty", "services", "--api-url", pd.url)
    assert code == 0 and pd.writes == writes and "Plan: 0 to create, 0 to update, 4 unchanged." in out
    assert vault.logins == 2  # one AppRole login per command run
    written = everything_written(tmp_path)
    for secret in (PD_KEY, ids["secret_id"]):
        assert secret.encode() not in written and secret not in out
    tokens = list(vault.tokens)
    assert tokens and not any(token.encode() in written for token in tokens)


def test_bad_vault_credentials_stop_before_pagerduty_is_asked(run_cli, project, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, pd, _ = project
    run_cli("config", "set", "pagerduty.api_key", "--from-vault", "vault://secret/pagerduty#api_key")
    monkeypatch.setenv("VAULT_SECRET_ID", "wrong-secret-id-0123456789")
    code, out, err = run_cli("setup-pagerduty", "services", "--api-url", pd.url)
    assert (code, out) == (1, "")
    assert err == ("nthlayer setup-pagerduty: error: vault://secret/pagerduty#api_key: AppRole login: Vault "
                   "answered an error (InvalidRequest: invalid role or secret ID)\n")
    assert pd.requests == []
    monkeypatch.setenv("PAGERDUTY_API_KEY", PD_KEY)  # the environment comes first: Vault is not asked
    assert run_cli("setup-pagerduty", "services", "--api-url", pd.url, "--dry-run")[0] == 0
