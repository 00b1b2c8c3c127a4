"""The state database's schema: ordered migrations, applied on open by :func:`nthlayer.state.connect`.

Never edit a released migration: append one. No foreign keys and no cascades: history rows
outlive what they point at.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Union

if TYPE_CHECKING:  # duckdb is imported where it is used: a build with no state never loads it
    import duckdb


def _routing_keys_out(con: duckdb.DuckDBPyConnection) -> bool:
    """Migration 2: PagerDuty integrations without their routing keys (nthlayer.state.pagerduty)."""
    from nthlayer.state.pagerduty import move_keys_out

    return move_keys_out(con)


# A migration is SQL, or a function of the connection that returns True when the file must be
# rewritten afterwards (it removed data whose bytes must not linger in free blocks).
Migration = Union[str, Callable[["duckdb.DuckDBPyConnection"], bool]]
MIGRATIONS: list[tuple[int, Migration]] = [
    (1, """
        CREATE TABLE slos (
            service VARCHAR NOT NULL,
            slo VARCHAR NOT NULL,
            objective DECIMAL(12, 9) NOT NULL,
            window_days INTEGER NOT NULL,
            tier INTEGER NOT NULL,
            PRIMARY KEY (service, slo)
        );
        CREATE INDEX slos_service ON slos (service);

        CREATE SEQUENCE error_budget_ids;
        CREATE TABLE error_budgets (
            id BIGINT PRIMARY KEY DEFAULT nextval('error_budget_ids'),
            service VARCHAR NOT NULL,
            slo VARCHAR NOT NULL,
            evaluated_at TIMESTAMP NOT NULL,
            objective DECIMAL(12, 9) NOT NULL,
            window_days INTEGER NOT NULL,
            budget_minutes DECIMAL(18, 6) NOT NULL,
            consumed_minutes DECIMAL(18, 6),
            remaining_minutes DECIMAL(18, 6),
            remaining_percent DECIMAL(12, 4),
            burn_rate_1h DOUBLE,
            status VARCHAR NOT NULL
        );
        CREATE INDEX error_budgets_service ON error_budgets (service);

        CREATE SEQUENCE deploy_ids;
        CREATE TABLE deploys (
            id BIGINT PRIMARY KEY DEFAULT nextval('deploy_ids'),
            service VARCHAR NOT NULL,
            version VARCHAR NOT NULL,
            commit_sha VARCHAR,
            deployed_at TIMESTAMP NOT NULL,
            source VARCHAR NOT NULL,
            UNIQUE (service, version, deployed_at)
        );
        CREATE INDEX deploys_service ON deploys (service);

        CREATE SEQUENCE incident_ids;
        CREATE TABLE incidents (
            id BIGINT PRIMARY KEY DEFAULT nextval('incident_ids'),
            incident_key VARCHAR NOT NULL UNIQUE,
            service VARCHAR NOT NULL,
            title VARCHAR,
            severity VARCHAR NOT NULL,
            started_at TIMESTAMP NOT NULL,
            resolved_at TIMESTAMP,
            source VARCHAR NOT NULL
        );
        CREATE INDEX incidents_service ON incidents (service);

        -- One row per (deploy_id, incident_id): correlation.score() deletes a deploy's rows before
        -- inserting, in one transaction. No primary key: its index doubled the benchmark's write time.
        CREATE TABLE correlations (
            deploy_id BIGINT NOT NULL,
            incident_id BIGINT NOT NULL,
            service VARCHAR NOT NULL,
            incident_service VARCHAR NOT NULL,
            window_hours DOUBLE NOT NULL,
            confidence DECIMAL(6, 4) NOT NULL,
            factors JSON NOT NULL
        );
        CREATE INDEX correlations_service ON correlations (service);

        CREATE SEQUENCE audit_ids;
        CREATE TABLE audit (
            id BIGINT PRIMARY KEY DEFAULT nextval('audit_ids'),
            recorded_at TIMESTAMP NOT NULL,
            actor VARCHAR NOT NULL,
            action VARCHAR NOT NULL,
            service VARCHAR,
            result VARCHAR NOT NULL,
            details JSON NOT NULL
        );
        CREATE INDEX audit_service ON audit (service);
    """),
    (2, _routing_keys_out),
    # API keys for `nthlayer serve` (nthlayer.ops.api_keys): only a hash of each secret is kept.
    (3, """
        CREATE TABLE api_keys (
            id VARCHAR PRIMARY KEY,
            name VARCHAR NOT NULL,
            secret_sha256 VARCHAR NOT NULL,
            scopes VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            last_used_at TIMESTAMP,
            revoked_at TIMESTAMP
        );
    """),
    # Budget history (nthlayer.ops.budget_history): per SLO and instant, the remaining error budget (percent)
    # over the SLO's window and over 1d/7d/28d/30d; one row per (service, slo, evaluated_at), so a rerun of
    # a backfill or a tick at the same instant replaces its row instead of adding one.
    (4, """
        CREATE TABLE budget_history (
            service VARCHAR NOT NULL,
            slo VARCHAR NOT NULL,
            evaluated_at TIMESTAMP NOT NULL,
            objective DECIMAL(12, 9) NOT NULL,
            window_days INTEGER NOT NULL,
            remaining_window DECIMAL(18, 2),
            remaining_1d DECIMAL(18, 2),
            remaining_7d DECIMAL(18, 2),
            remaining_28d DECIMAL(18, 2),
            remaining_30d DECIMAL(18, 2),
            source VARCHAR NOT NULL,
            PRIMARY KEY (service, slo, evaluated_at)
        );
    """),
    # ArgoCD rollbacks (nthlayer.ops.rollback, docs/rollback.md); a deploy links to the rollback that undid it.
    # Written so that applying it twice is harmless (IF NOT EXISTS): renumbering it, should another
    # migration take its number, cannot break a database that already has it.
    (5, """
        CREATE SEQUENCE IF NOT EXISTS rollback_ids;
        CREATE TABLE IF NOT EXISTS rollbacks (
            id BIGINT PRIMARY KEY DEFAULT nextval('rollback_ids'),
            service VARCHAR NOT NULL,
            deploy_id BIGINT,
            argocd_app VARCHAR NOT NULL,
            argocd_url VARCHAR NOT NULL,
            from_revision VARCHAR,
            to_revision VARCHAR NOT NULL,
            history_id BIGINT NOT NULL,
            reason VARCHAR NOT NULL,
            result VARCHAR NOT NULL,
            requested_at TIMESTAMP NOT NULL
        );
        CREATE INDEX IF NOT EXISTS rollbacks_service ON rollbacks (service);
        ALTER TABLE deploys ADD COLUMN IF NOT EXISTS rolled_back_by BIGINT;
    """),
    # Series counts that `nthlayer cost --prometheus` measured (nthlayer.state.cost, docs/cost.md), for the
    # report. Idempotent (IF NOT EXISTS), like migration 5, so a renumbering cannot break a database.
    (6, """
        CREATE TABLE IF NOT EXISTS series_counts (
            measured_at TIMESTAMP NOT NULL,
            service VARCHAR NOT NULL,
            metric VARCHAR NOT NULL,
            series BIGINT NOT NULL,
            PRIMARY KEY (measured_at, service, metric)
        );
    """),
]
