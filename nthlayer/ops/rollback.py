"""Roll a service's ArgoCD application back to its previous healthy revision: what ``nthlayer rollback`` and
``check-deploy --on-block rollback`` do.

"Previous healthy" is the newest entry of the application's sync history whose revision is neither the
one running now nor one nthlayer already rolled back from (a revision once rolled back as bad is never
a target). The service's latest recorded deploy gets a ``rolled_back_by`` link to the rollback row, so a
second run finds it done and changes nothing (no ArgoCD write). The rollback is recorded *before* ArgoCD is
asked — a locked state database stops it while nothing has changed — and marked failed (the link
removed) when ArgoCD refuses.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from generators.errors import UserError
from nthlayer.integrations.argocd import DEFAULT_TIMEOUT, ArgoCDClient, ArgoCDError, HistoryEntry
from nthlayer.integrations.credentials import CredentialResolver
from nthlayer.state.db import format_time, from_db, insert_audit, to_db, utc_now

if TYPE_CHECKING:
    import duckdb

Opener = Callable[[], AbstractContextManager["duckdb.DuckDBPyConnection"]]
ARGOCD_URL_ENV = "ARGOCD_URL"


@dataclass(frozen=True)
class DeployRow:
    id: int
    version: str
    commit_sha: str | None
    deployed_at: datetime
    rolled_back_by: int | None


@dataclass(frozen=True)
class RollbackRow:
    id: int
    to_revision: str
    history_id: int
    requested_at: datetime


@dataclass(frozen=True)
class RollbackOutcome:
    """What happened, as the lines the command prints; ``writes`` counts ArgoCD write requests."""

    lines: list[str]
    rolled_back: bool
    writes: int


def latest_deploy(con: duckdb.DuckDBPyConnection, service: str) -> DeployRow | None:
    rows = con.execute("SELECT id, version, commit_sha, deployed_at, rolled_back_by FROM deploys "
                       "WHERE service = ? AND coalesce(kind, 'deploy') = 'deploy' "  # not a config/flag/infra change
                       "ORDER BY deployed_at DESC, id DESC LIMIT 1", [service]).fetchall()
    if not rows:
        return None
    row = rows[0]
    return DeployRow(row[0], row[1], row[2], from_db(row[3]), row[4])  # type: ignore[arg-type]


def _rollback_row(con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> RollbackRow | None:
    rows = con.execute(f"SELECT id, to_revision, history_id, requested_at FROM rollbacks WHERE {where} "
                       "ORDER BY requested_at DESC, id DESC LIMIT 1", params).fetchall()
    return RollbackRow(rows[0][0], rows[0][1], rows[0][2], from_db(rows[0][3])) if rows else None  # type: ignore[arg-type]


def bad_revisions(con: duckdb.DuckDBPyConnection, app: str) -> set[str]:
    """Revisions this application was rolled back *from*: never a rollback target."""
    return {row[0] for row in con.execute(
        "SELECT from_revision FROM rollbacks WHERE argocd_app = ? AND result <> 'failed' AND from_revision IS NOT NULL",
        [app]).fetchall()}


def _deploy_words(deploy: DeployRow | None) -> str:
    if deploy is None:
        return "no deploy of it is recorded"
    commit = f", commit {deploy.commit_sha}" if deploy.commit_sha else ""
    return f"deploy {deploy.version}{commit} at {format_time(deploy.deployed_at)}"


def _history_words(entry: HistoryEntry) -> str:
    when = f", deployed {entry.deployed_at}" if entry.deployed_at else ""
    return f"history id {entry.id} (revision {entry.revision}{when})"


def rollback_service(service: str, app: str, opener: Opener, client: ArgoCDClient | None, *, dry_run: bool,
                     reason: str, argocd_url: str) -> RollbackOutcome:
    """Plan, and unless ``dry_run`` apply, the rollback of ``service``'s ArgoCD application ``app``.

    Without a client (a dry run with no ArgoCD token) the plan says what would be done without reading
    ArgoCD. ArgoCD refusals raise :class:`ArgoCDError`; the state database's errors its own UserErrors.
    """
    with opener() as con:
        deploy = latest_deploy(con, service)
        done = None
        if deploy is not None and deploy.rolled_back_by is not None:
            done = _rollback_row(con, "id = ?", [deploy.rolled_back_by])
        elif deploy is None:
            done = _rollback_row(con, "service = ? AND result <> 'failed'", [service])
        avoid = bad_revisions(con, app)
    if done is not None:
        what = f"{_deploy_words(deploy)} was already rolled back" if deploy else "already rolled back"
        since = "" if deploy else ", and no deploy of it is recorded"
        return RollbackOutcome([f"{service}: {what} (rollback #{done.id} to revision {done.to_revision}, "
                                f"{format_time(done.requested_at)}){since}; nothing to do."], False, 0)
    verb = "would roll back" if dry_run else "rolling back"
    if client is None:
        return RollbackOutcome([f"{service}: {verb} ArgoCD application {app} ({_deploy_words(deploy)}) to its "
                                "previous healthy revision (ArgoCD not read: no token; the history id is chosen "
                                "when it runs)"], False, 0)
    state = client.application(app)
    if state.operation_running:
        raise ArgoCDError(f"ArgoCD application {app}: a sync is in progress (to revision "
                          f"{state.operation_revision or 'unknown'}); run the rollback again when it has finished")
    if deploy is not None and deploy.commit_sha:
        avoid = avoid | {deploy.commit_sha}
    target = state.previous(avoid)
    if target is None:
        revisions = sorted({h.revision for h in state.history})
        raise ArgoCDError(f"ArgoCD application {app}: no previous revision to roll back to (its history holds "
                          f"{', '.join(revisions) or 'nothing'}; revisions rolled back from are never targets)")
    plan = (f"{service}: {verb} ArgoCD application {app} from revision {state.revision or 'unknown'} to "
            f"{_history_words(target)}; {_deploy_words(deploy)}")
    if dry_run:
        return RollbackOutcome([plan, "Dry run: nothing was changed."], False, 0)
    details = {"argocd_app": app, "argocd_url": argocd_url, "from_revision": state.revision,
               "to_revision": target.revision, "history_id": target.id, "reason": reason,
               "deploy_id": deploy.id if deploy else None, "version": deploy.version if deploy else None}
    with opener() as con:
        rollback_id = con.execute(
            "INSERT INTO rollbacks (service, deploy_id, argocd_app, argocd_url, from_revision, to_revision, "
            "history_id, reason, result, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'requested', ?) RETURNING id",
            [service, deploy.id if deploy else None, app, argocd_url, state.revision, target.revision, target.id,
             reason, to_db(utc_now())]).fetchall()[0][0]
        if deploy is not None:
            con.execute("UPDATE deploys SET rolled_back_by = ? WHERE id = ?", [rollback_id, deploy.id])
    try:
        client.rollback(app, target.id)
    except ArgoCDError as exc:
        with opener() as con:
            con.execute("UPDATE rollbacks SET result = 'failed' WHERE id = ?", [rollback_id])
            if deploy is not None:
                con.execute("UPDATE deploys SET rolled_back_by = NULL WHERE id = ?", [deploy.id])
            insert_audit(con, "rollback", service, "failed", {**details, "error": str(exc)})
        raise
    with opener() as con:
        con.execute("UPDATE rollbacks SET result = 'accepted' WHERE id = ?", [rollback_id])
        insert_audit(con, "rollback", service, "rolled back", {**details, "rollback_id": rollback_id})
    return RollbackOutcome([plan, f"Rollback #{rollback_id} accepted by ArgoCD ({client.writes} write request); "
                                  "ArgoCD now syncs the application to that revision."], True, client.writes)


def roll_back(service: str, app: str, url: str | None, opener: Opener, *, reason: str, dry_run: bool,
              timeout: float = DEFAULT_TIMEOUT) -> RollbackOutcome:
    """:func:`rollback_service` with the ArgoCD token from the credential resolver (``argocd.token``). A dry
    run without a token or URL plans without reading ArgoCD; a real one needs both."""
    resolver = CredentialResolver()
    token = resolver.get("argocd.token")
    if token is None and not dry_run:
        resolver.require("argocd.token")  # raises, saying every way to provide it
    if not url and not (dry_run and token is None):
        raise UserError(f"no ArgoCD URL: pass --argocd-url or set ${ARGOCD_URL_ENV}")
    client = ArgoCDClient(url, token.value, timeout=timeout, read_only=dry_run, token_source=token.source) \
        if token is not None and url else None
    try:
        return rollback_service(service, app, opener, client, dry_run=dry_run, reason=reason,
                                argocd_url=url or "not contacted")
    finally:
        if client is not None:
            client.close()
