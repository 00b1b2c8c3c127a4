"""The ArgoCD client against a stateful TLS fake checked against ArgoCD's published swagger."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from argocd_fake import FakeArgoCD
from nthlayer.integrations.argocd import ArgoCDClient, ArgoCDError, ReadOnlyViolation


@pytest.fixture
def argocd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArgoCD]:
    with FakeArgoCD(str(tmp_path / "argocd-tls")) as fake:
        monkeypatch.setenv("SSL_CERT_FILE", fake.ca_file)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        fake.add_app("checkout", ["aaa111", "bbb222", "ccc333"])
        yield fake


def test_reads_history_and_rolls_back_to_the_previous_revision(argocd: FakeArgoCD) -> None:
    token = argocd.add_token({"checkout"})
    client = ArgoCDClient(argocd.url, token)
    app = client.application("checkout")
    assert app.revision == "ccc333" and [h.id for h in app.history] == [1, 2, 3] and not app.operation_running
    target = app.previous(set())
    assert (target.id, target.revision) == (2, "bbb222")
    assert app.previous({"bbb222"}).revision == "aaa111"
    after = client.rollback("checkout", target.id)
    assert after.operation_running and after.operation_revision == "bbb222"
    assert argocd.rollbacks == [{"name": "checkout", "id": 2, "prune": False, "dryRun": False}]
    now = client.application("checkout")
    assert now.revision == "bbb222" and now.history[-1].revision == "bbb222" and client.writes == 1


def test_argocd_errors_are_one_line_without_the_token(argocd: FakeArgoCD) -> None:
    token = argocd.add_token({"checkout", "ghost"})
    client = ArgoCDClient(argocd.url, token)
    cases = []
    argocd.start_sync("checkout", "ddd444")
    with pytest.raises(ArgoCDError) as failure:
        client.rollback("checkout", 2)
    cases.append(str(failure.value))
    argocd.finish("checkout")
    with pytest.raises(ArgoCDError) as failure:
        client.rollback("checkout", 99)
    cases.append(str(failure.value))
    with pytest.raises(ArgoCDError) as failure:
        client.application("ghost")
    cases.append(str(failure.value))
    with pytest.raises(ArgoCDError) as failure:
        ArgoCDClient(argocd.url, "argocd.not-a-real-token").application("checkout")
    cases.append(str(failure.value))
    argocd.add_app("auto", ["a1", "a2"], auto_sync=True)
    with pytest.raises(ArgoCDError) as failure:
        ArgoCDClient(argocd.url, argocd.add_token({"auto"})).rollback("auto", 1)
    cases.append(str(failure.value))
    assert cases == [
        "ArgoCD refused the rollback of checkout to history id 2: a sync is already in progress; run the rollback "
        "again when it has finished",
        "ArgoCD answered the rollback of checkout to history id 99 with HTTP 400: application checkout does not "
        "have deployment with id 99",
        "ArgoCD refused reading application ghost (HTTP 403: permission denied): the token's account needs 'get' "
        "and 'sync' on the application, or no such application exists (ArgoCD does not say which)",
        "ArgoCD rejected the token from argocd.token for reading application checkout (HTTP 401: invalid session: "
        "token signature is invalid)",
        "ArgoCD refused the rollback of auto to history id 1: auto-sync is enabled on the application, and it "
        "would sync straight back to the bad revision; turn automated sync off first",
    ]
    assert not any(token in line for line in cases)


def test_fake_rejects_bodies_the_swagger_does_not_allow(argocd: FakeArgoCD) -> None:
    token = argocd.add_token({"checkout"})
    client = ArgoCDClient(argocd.url, token)
    for body, said in (({"id": "two"}, "body does not match applicationApplicationRollbackRequest: 'two' is not "
                                       "of type 'integer'"),
                       ({"id": 2, "revision": "x"}, "unknown field 'revision'")):
        answer = client.session.post(f"{argocd.url}/api/v1/applications/checkout/rollback", json=body,
                                     verify=argocd.ca_file)
        assert (answer.status_code, answer.json()["message"]) == (400, said)
    assert argocd.rollbacks == []


def test_dry_run_client_cannot_write_and_url_must_be_https(argocd: FakeArgoCD) -> None:
    client = ArgoCDClient(argocd.url, None, read_only=True)
    with pytest.raises(ReadOnlyViolation):
        client.rollback("checkout", 1)
    with pytest.raises(ArgoCDError, match="must be an https:// URL"):
        ArgoCDClient("http://argocd.example.com", "t")
    with pytest.raises(ArgoCDError) as failure:
        ArgoCDClient("https://admin:hunter2@argocd.example.com", "t")
    assert "hunter2" not in str(failure.value)
    assert argocd.requests == []
