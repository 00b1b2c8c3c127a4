"""The one credential resolver and the [credentials] references `nthlayer config` keeps in nthlayer.toml."""
from __future__ import annotations

from pathlib import Path

import pytest

from generators.errors import UserError
from nthlayer.config import ConfigError, load_config
from nthlayer.integrations.credentials import CredentialError, CredentialResolver, masked, missing_message
from nthlayer.ops.credential_refs import reference_for, set_reference, status, unset_reference

SECRET = "s3cr3t-token-value-0123456789"


def config_at(tmp_path: Path, text: str):
    path = tmp_path / "nthlayer.toml"
    path.write_text(text)
    return load_config(str(path))


def test_order_command_line_file_then_variable_then_file_variable_then_reference(tmp_path: Path) -> None:
    (tmp_path / "cli.key").write_text("from-cli-file\n")
    (tmp_path / "env.key").write_text("from-env-file\n")
    (tmp_path / "ref.key").write_text("from-reference\n")
    config = config_at(tmp_path, f'[credentials]\npagerduty.api_key = "file:{tmp_path}/ref.key"\n')
    env = {"PAGERDUTY_API_KEY": "from-variable", "PAGERDUTY_API_KEY_FILE": str(tmp_path / "env.key")}
    resolver = CredentialResolver(env, config)
    assert resolver.get("pagerduty.api_key", str(tmp_path / "cli.key")).value == "from-cli-file"
    assert resolver.get("pagerduty.api_key").source == "$PAGERDUTY_API_KEY"  # the variable wins over _FILE, as before
    env.pop("PAGERDUTY_API_KEY")
    assert resolver.get("pagerduty.api_key").value == "from-env-file"
    env.pop("PAGERDUTY_API_KEY_FILE")
    found = resolver.get("pagerduty.api_key")
    assert (found.value, found.source) == ("from-reference", f"file:{tmp_path}/ref.key")
    assert CredentialResolver({}, config_at(tmp_path, "")).get("pagerduty.api_key") is None


def test_prometheus_keeps_refusing_token_and_token_file_together(tmp_path: Path) -> None:
    resolver = CredentialResolver({"PROMETHEUS_TOKEN": "a", "PROMETHEUS_TOKEN_FILE": "/x"}, config_at(tmp_path, ""))
    with pytest.raises(CredentialError, match="^set PROMETHEUS_TOKEN or PROMETHEUS_TOKEN_FILE, not both$"):
        resolver.get("prometheus.token")


def test_env_reference_and_errors_name_the_reference(tmp_path: Path) -> None:
    config = config_at(tmp_path, '[credentials]\nargocd.token = "env:ARGO_PROD"\n'
                                 f'pagerduty.api_key = "file:{tmp_path}/missing.key"\n')
    assert CredentialResolver({"ARGO_PROD": SECRET}, config).require("argocd.token").value == SECRET
    with pytest.raises(CredentialError) as failure:
        CredentialResolver({}, config).require("argocd.token")
    assert str(failure.value) == "argocd.token = env:ARGO_PROD: $ARGO_PROD is not set"
    with pytest.raises(CredentialError) as failure:
        CredentialResolver({}, config).require("pagerduty.api_key")
    assert str(failure.value) == (f"pagerduty.api_key = file:{tmp_path}/missing.key: cannot read file "
                                  f"{tmp_path}/missing.key: No such file or directory")
    with pytest.raises(CredentialError) as failure:
        CredentialResolver({}, config_at(tmp_path, "")).require("argocd.token")
    assert str(failure.value) == missing_message("argocd.token") == (
        "no ArgoCD API token: set $ARGOCD_AUTH_TOKEN or $ARGOCD_AUTH_TOKEN_FILE, or store a reference with "
        "'nthlayer config set argocd.token --from-vault vault://PATH#field' (docs/secrets.md)")


@pytest.mark.parametrize("text, error", [
    ('[credentials]\n# keys\npagerduty.api_key = "u+abcdefghijklmnop"\n',
     "nthlayer.toml:3:1: /credentials/pagerduty/api_key: pagerduty.api_key is a secret: the file holds a "
     "reference to it (vault://MOUNT/PATH[#field], env:VAR or file:PATH), never the secret itself"),
    ('[credentials]\npagerduty.apikey = "env:X"\n',
     "nthlayer.toml:2:1: /credentials/pagerduty/apikey: unknown credential 'pagerduty.apikey'; known: "
     "argocd.token, datadog.api_key, datadog.app_key, pagerduty.api_key, prometheus.password, "
     "prometheus.token, prometheus.username"),
    ('[credentials.argocd]\ntoken = "vault://secret"\n',
     "nthlayer.toml:2:1: /credentials/argocd/token: vault://secret: needs a mount and a path, e.g. "
     "vault://secret/pagerduty#api_key"),
    ('[credentials]\nargocd.token = 12\n',
     "nthlayer.toml:2:1: /credentials/argocd/token: must be a string reference (vault://MOUNT/PATH[#field], "
     "env:VAR or file:PATH)"),
    ('[credentials]\nargocd.token = "https://vault.example.com/x"\n',
     "nthlayer.toml:2:1: /credentials/argocd/token: 'https://vault.example.com/x' is not a reference nthlayer "
     "reads (vault://MOUNT/PATH[#field], env:VAR or file:PATH)"),
])
def test_bad_credentials_table_errors_locate_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                                     error: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nthlayer.toml").write_text(text)
    with pytest.raises(ConfigError) as failure:
        CredentialResolver({}).get("argocd.token")
    assert str(failure.value) == error
    assert "u+abcdefghijklmnop" not in str(failure.value)


def test_set_keeps_comments_and_other_tables_and_writes_nothing_when_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "nthlayer.toml"
    original = '# project settings\n[build]\nplugins = []  # none yet\n\n[credentials]\n# PD\n' \
               'pagerduty.api_key = "env:PD"\n'
    path.write_text(original)
    change = set_reference("argocd.token", reference_for("argocd.token", vault="vault://secret/argocd#token"),
                           str(path))
    assert change.changed
    assert path.read_text() == original + 'argocd.token = "vault://secret/argocd#token"\n'
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert not set_reference("argocd.token", "vault://secret/argocd#token", str(path)).changed
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    assert unset_reference("argocd.token", str(path)).changed
    assert path.read_text() == original
    assert not unset_reference("argocd.token", str(path)).changed


def test_set_refuses_a_literal_secret_without_showing_it() -> None:
    with pytest.raises(UserError) as failure:
        reference_for("pagerduty.api_key", value=SECRET)
    assert SECRET not in str(failure.value)
    assert str(failure.value).startswith("pagerduty.api_key is a secret: nthlayer.toml holds a reference to it")
    assert reference_for("prometheus.username", value="grafana") == "grafana"
    assert reference_for("argocd.token", env="ARGO") == "env:ARGO"
    assert reference_for("argocd.token", file="/run/secrets/argo") == "file:/run/secrets/argo"
    for bad, message in (({"vault": "env:X"}, "--from-vault needs a vault:// reference"),
                         ({"env": "1BAD"}, "env:1BAD is not an environment variable name"),
                         ({"value": "vault://secret/x"}, "'vault://secret/x' is a reference: give it with --from-vault"),
                         ({"env": "A", "file": "/b"}, "give exactly one of VALUE, --from-vault, --from-env, --from-file")):
        with pytest.raises(UserError, match=message):
            reference_for("prometheus.username" if "value" in bad else "argocd.token", **bad)


def test_status_masks_and_says_what_wins(tmp_path: Path) -> None:
    config = config_at(tmp_path, '[credentials]\nargocd.token = "env:ARGO_PROD"\n')
    shown = status("argocd.token", CredentialResolver({"ARGO_PROD": SECRET}, config))
    assert shown.lines() == ["argocd.token = env:ARGO_PROD", "  in use: env:ARGO_PROD: resolves (s3…89)"]
    shown = status("argocd.token", CredentialResolver({"ARGOCD_AUTH_TOKEN": "short"}, config))
    assert shown.lines() == ["argocd.token = env:ARGO_PROD", "  in use: $ARGOCD_AUTH_TOKEN: resolves (…)"]
    shown = status("argocd.token", CredentialResolver({}, config))
    assert shown.lines() == ["argocd.token = env:ARGO_PROD",
                             "  in use: env:ARGO_PROD: does not resolve: argocd.token = env:ARGO_PROD: $ARGO_PROD is not set"]
    assert masked("0123456789abcdef") == "01…ef" and masked("0123456789abcde") == "…"
