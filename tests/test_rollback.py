"""`nthlayer rollback` and `check-deploy --on-block rollback` against a stateful TLS ArgoCD fake, a real
DuckDB state file and (for the gate) the real Prometheus fixture: dry run without a token, apply, an
idempotent second run, refusals as one line, and no token anywhere in what was written or printed."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from argocd_fake import FakeArgoCD
from nthlayer.state.db import connect
from prom_fixture import (PrometheusServer, fixture_specs, private_prometheus, prometheus,  # noqa: F401
                          prometheus_blocks, requires_prometheus)

APP = "checkout-prod"


@pytest.fixture
def argocd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArgoCD]:
    with FakeArgoCD(str(tmp_path / "argocd-tls")) as fake:
        fake.add_app(APP, ["aaa111", "bbb222", "ccc333"])
        token = fake.add_token({APP, "delta-prod"})
        for name in ("ARGOCD_AUTH_TOKEN_FILE", "NTHLAYER_CONFIG"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("ARGOCD_AUTH_TOKEN", token)
        monkeypatch.setenv("ARGOCD_URL", fake.url)
        monkeypatch.setenv("SSL_CERT_FILE", fake.ca_file)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("NTHLAYER_STATE", str(tmp_path / "state" / "nthlayer.duckdb"))
        services = tmp_path / "services"
        services.mkdir()
        (services / "checkout.yaml").write_text(f"service: checkout\ntier: 2\nteam: shop\ndeploy:\n  argocd_app: {APP}\n")
        (services / "plain.yaml").write_text("service: plain\ntier: 2\nteam: shop\n")
        monkeypatch.chdir(tmp_path)
        yield fake


def record(run_cli, version: str, commit: str, at: str) -> None:
    code, _, err = run_cli("record-deploy", "--service", "checkout", "--version", version, "--commit", commit,
                           "--at", at)
    assert code == 0, err


def written_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and "argocd-tls" not in p.parts)


def test_dry_run_without_a_token_contacts_nobody(run_cli, argocd: FakeArgoCD, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARGOCD_AUTH_TOKEN")
    record(run_cli, "v3", "ccc333", "2026-01-03T09:00:00Z")
    code, out, err = run_cli("rollback", "--service", "checkout", "--dry-run")
    assert (code, err) == (0, "")
    assert out == ("checkout: would roll back ArgoCD application checkout-prod (deploy v3, commit ccc333 at "
                   "2026-01-03T09:00:00Z) to its previous healthy revision (ArgoCD not read: no token; the "
                   "history id is chosen when it runs)\n")
    assert argocd.requests == []
    code, out, err = run_cli("rollback", "--service", "checkout")
    assert code == 1 and err == ("nthlayer rollback: error: no ArgoCD API token: set $ARGOCD_AUTH_TOKEN or "
                                 "$ARGOCD_AUTH_TOKEN_FILE, or store a reference with 'nthlayer config set "
                                 "argocd.token --from-vault vault://PATH#field' (docs/secrets.md)\n")


def test_apply_then_rerun_writes_nothing(run_cli, argocd: FakeArgoCD, tmp_path: Path) -> None:
    record(run_cli, "v3", "ccc333", "2026-01-03T09:00:00Z")
    code, out, err = run_cli("rollback", "--service", "checkout", "--dry-run")
    assert (code, err, argocd.writes) == (0, "", 0)
    assert out.splitlines() == [
        "checkout: would roll back ArgoCD application checkout-prod from revision ccc333 to history id 2 "
        "(revision bbb222, deployed 2026-01-02T10:00:00Z); deploy v3, commit ccc333 at 2026-01-03T09:00:00Z",
        "Dry run: nothing was changed."]
    code, out, err = run_cli("rollback", "--service", "checkout")
    assert (code, err) == (0, "")
    assert out.splitlines()[1] == ("Rollback #1 accepted by ArgoCD (1 write request); ArgoCD now syncs the "
                                   "application to that revision.")
    assert argocd.rollbacks == [{"name": APP, "id": 2, "prune": False, "dryRun": False}]
    assert argocd.apps[APP]["status"]["sync"]["revision"] == "bbb222"
    code, out, err = run_cli("rollback", "--service", "checkout")
    assert (code, argocd.writes) == (0, 1)
    assert out.startswith("checkout: deploy v3, commit ccc333 at 2026-01-03T09:00:00Z was already rolled back "
                          "(rollback #1 to revision bbb222, ")
    with connect() as con:
        assert con.execute("SELECT version, rolled_back_by FROM deploys").fetchall() == [("v3", 1)]
        assert con.execute("SELECT argocd_app, from_revision, to_revision, history_id, result FROM rollbacks"
                           ).fetchall() == [(APP, "ccc333", "bbb222", 2, "accepted")]
        audit = con.execute("SELECT result, details FROM audit WHERE action = 'rollback'").fetchall()
    assert [(r, json.loads(d)["to_revision"]) for r, d in audit] == [("rolled back", "bbb222")]
    token = next(iter(argocd.tokens))
    assert token.encode() not in written_bytes(tmp_path)


def test_a_new_bad_deploy_never_goes_back_to_a_revision_rolled_back_from(run_cli, argocd: FakeArgoCD) -> None:
    record(run_cli, "v3", "ccc333", "2026-01-03T09:00:00Z")
    assert run_cli("rollback", "--service", "checkout")[0] == 0  # ccc333 → bbb222
    argocd.start_sync(APP, "ddd444")
    argocd.finish(APP)
    record(run_cli, "v4", "ddd444", "2026-01-04T09:00:00Z")
    code, out, _ = run_cli("rollback", "--service", "checkout")
    assert code == 0 and "from revision ddd444 to history id 4 (revision bbb222" in out


@pytest.mark.parametrize("setup, message", [
    ("sync", "nthlayer rollback: error: ArgoCD application checkout-prod: a sync is in progress (to revision "
             "ddd444); run the rollback again when it has finished\n"),
    ("single", "nthlayer rollback: error: ArgoCD application checkout-prod: no previous revision to roll back to "
               "(its history holds ccc333; revisions rolled back from are never targets)\n"),
    ("token", "nthlayer rollback: error: ArgoCD rejected the token from $ARGOCD_AUTH_TOKEN for reading application "
              "checkout-prod (HTTP 401: invalid session: token signature is invalid)\n"),
    ("auto", "nthlayer rollback: error: ArgoCD refused the rollback of checkout-prod to history id 2: auto-sync is "
             "enabled on the application, and it would sync straight back to the bad revision; turn automated "
             "sync off first\n"),
])
def test_refusals_are_one_line_and_leave_the_deploy_unlinked(run_cli, argocd: FakeArgoCD, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, setup: str,
                                                             message: str) -> None:
    record(run_cli, "v3", "ccc333", "2026-01-03T09:00:00Z")
    if setup == "sync":
        argocd.start_sync(APP, "ddd444")
    elif setup == "single":
        argocd.add_app(APP, ["ccc333"])
    elif setup == "token":
        monkeypatch.setenv("ARGOCD_AUTH_TOKEN", "argocd.wrong-token-value")
    else:
        argocd.add_app(APP, ["aaa111", "bbb222", "ccc333"], auto_sync=True)
    code, out, err = run_cli("rollback", "--service", "checkout")
    assert (code, out, err) == (1, "", message)
    assert "Traceback" not in err and "wrong-token-value" not in err
    with connect() as con:
        assert con.execute("SELECT rolled_back_by FROM deploys").fetchall() == [(None,)]
        failed = con.execute("SELECT result FROM rollbacks").fetchall()
    assert failed == ([("failed",)] if setup == "auto" else [])
    assert b"wrong-token-value" not in written_bytes(tmp_path)


def test_no_application_named_is_a_usage_error(run_cli, argocd: FakeArgoCD) -> None:
    code, _, err = run_cli("rollback", "--service", "plain")
    assert code == 64 and err.endswith("nthlayer rollback: error: no ArgoCD application for plain: add "
                                       "'deploy: {argocd_app: NAME}' to its spec or pass --argocd-app\n")


@requires_prometheus
def test_check_deploy_rolls_back_when_the_gate_blocks(run_cli, argocd: FakeArgoCD, tmp_path: Path,  # noqa: F811
                                                      prometheus: PrometheusServer, fixture_specs: Path) -> None:
    argocd.add_app("delta-prod", ["d1", "d2"])
    argocd.add_app("alpha-prod", ["a1", "a2"])
    argocd.tokens[next(iter(argocd.tokens))].add("alpha-prod")
    args = ("--services", str(fixture_specs), "--prometheus", prometheus.url, "--at", "2024-05-01T12:00:00Z",
            "--on-block", "rollback")
    code, out, err = run_cli("check-deploy", "--service", "alpha", *args, "--argocd-app", "alpha-prod")
    assert (code, argocd.writes) == (0, 0)  # approved: nothing rolled back
    code, out, err = run_cli("check-deploy", "--service", "delta", *args, "--argocd-app", "delta-prod")
    assert code == 2 and err == ""
    assert out.splitlines()[-2:] == [
        "delta: rolling back ArgoCD application delta-prod from revision d2 to history id 1 (revision d1, "
        "deployed 2026-01-01T10:00:00Z); no deploy of it is recorded",
        "Rollback #1 accepted by ArgoCD (1 write request); ArgoCD now syncs the application to that revision."]
    with connect() as con:
        reason = con.execute("SELECT reason FROM rollbacks").fetchall()[0][0]
    assert reason.startswith("check-deploy blocked: availability SLO (99.9% over 30d) has -100.00% of its error "
                             "budget left")
    code, out, _ = run_cli("check-deploy", "--service", "delta", *args, "--argocd-app", "delta-prod")
    assert (code, argocd.writes) == (2, 1)
    assert out.splitlines()[-1].startswith("delta: already rolled back (rollback #1 to revision d1, ")
