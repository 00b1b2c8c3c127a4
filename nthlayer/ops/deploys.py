"""Record deploys and correlate them with incidents: what ``record-deploy``, ``correlate-deploy``
and ``POST /api/v1/deploys[/correlate]`` do."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from generators.errors import UserError
from generators.slo_maths import duration_seconds
from nthlayer.buildsys.project import load_services
from nthlayer.state.correlation import BLOCK_ABOVE, Correlation, correlations_of, dependency_edges, deploys_of, score
from nthlayer.state.events import Deploy, insert_deploys
from nthlayer.ops.gate import EXIT_APPROVE, EXIT_BLOCK
from nthlayer.state.db import Opener, format_time, insert_audit, to_db

if TYPE_CHECKING:
    import duckdb

DURATION = re.compile(r"^[1-9][0-9]*[smhdw]$")


def deploy_text(deploy: Deploy, added: bool) -> str:
    """The line ``record-deploy`` prints."""
    return f"{'recorded' if added else 'already recorded'}: {deploy.service} {deploy.version} at " \
           f"{format_time(deploy.deployed_at)}"


def record_deploys(con: duckdb.DuckDBPyConnection, deploys: Sequence[Deploy], actor: str | None = None
                   ) -> list[bool]:
    """Insert deploys (one statement however many) with an audit row each; per deploy, whether it was new.

    A deploy already stored (same service, version and time), or repeated earlier in ``deploys``, is
    "already recorded". Batching is what lets one server absorb many pipelines: one commit for all."""
    if not deploys:
        return []
    keys = [(d.service, d.version, to_db(d.deployed_at)) for d in deploys]
    stored = {tuple(row) for row in con.execute(
        "SELECT d.service, d.version, d.deployed_at FROM deploys d JOIN "
        "(SELECT unnest($s) AS s, unnest($v) AS v, unnest($t) AS t) k "
        "ON d.service = k.s AND d.version = k.v AND d.deployed_at = k.t",
        {"s": [k[0] for k in keys], "v": [k[1] for k in keys], "t": [k[2] for k in keys]}).fetchall()}
    added: list[bool] = []
    for key in keys:
        added.append(key not in stored)
        stored.add(key)
    insert_deploys(con, deploys)
    for deploy, new in zip(deploys, added):
        insert_audit(con, "record-deploy", deploy.service, "recorded" if new else "already recorded",
                     {"version": deploy.version, "commit": deploy.commit_sha,
                      "deployed_at": format_time(deploy.deployed_at)}, actor=actor)
    return added


def record_deploy(opener: Opener, deploy: Deploy, actor: str | None = None) -> bool:
    """:func:`record_deploys` for one deploy, in its own short connection: whether it was new."""
    with opener() as con:
        return record_deploys(con, [deploy], actor)[0]


@dataclass(frozen=True)
class CorrelationOutcome:
    service: str
    version: str
    time_window: str
    found: list[Correlation]
    blocked: bool

    @property
    def action(self) -> str:
        if self.blocked:
            return "BLOCK"
        return "INVESTIGATE" if any(c.action == "INVESTIGATE" for c in self.found) else "NONE"

    @property
    def exit_code(self) -> int:
        return EXIT_BLOCK if self.blocked else EXIT_APPROVE

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service, "version": self.version, "time_window": self.time_window,
            "action": self.action,
            "incidents": [{"id": c.incident_key, "service": c.incident_service, "severity": c.severity,
                           "title": c.title, "started_at": format_time(c.started_at),
                           "deployed_at": format_time(c.deployed_at), "confidence": c.confidence,
                           "factors": c.factors, "action": c.action} for c in self.found],
        }

    def text(self) -> str:
        n = len(self.found)
        lines = [f"{self.service} {self.version}: {n} correlated incident{'s' if n != 1 else ''} "
                 f"within {self.time_window}; action: {self.action}"]
        for c in self.found:
            f = c.factors
            lines.append(f"  {c.incident_key}  {c.incident_service}  {c.severity}  started "
                         f"{format_time(c.started_at)}  confidence {c.confidence * 100:.0f}%  (time {f['time']}, "
                         f"dependency {f['dependency']}, history {f['history']})  {c.action}")
        return "\n".join(lines)


def window_seconds(time_window: str) -> int:
    if not DURATION.fullmatch(time_window):
        raise UserError(f"--time-window {time_window!r} is not a duration such as 30m, 1h or 2d")
    return duration_seconds(time_window)


def correlate(con: duckdb.DuckDBPyConnection, service: str, version: str, time_window: str,
              edges: Iterable[tuple[str, str]], actor: str | None = None) -> CorrelationOutcome:
    """Score a recorded deploy against the incidents after it, record the verdict in the audit trail."""
    window = window_seconds(time_window)
    ids = deploys_of(con, service, version)
    if not ids:
        raise UserError(f"no recorded deploy of {service} version {version}; "
                        "record it with 'nthlayer record-deploy' or 'nthlayer import-events'")
    score(con, edges, window, ids)
    found = [c for c in correlations_of(con, ids) if c.confidence > 0]
    blocked = any(c.confidence > BLOCK_ABOVE for c in found)
    insert_audit(con, "correlate-deploy", service, "block" if blocked else "ok",
                 {"version": version, "time_window": time_window,
                  "top_confidence": str(found[0].confidence) if found else None}, actor=actor)
    return CorrelationOutcome(service, version, time_window, found, blocked)


def correlate_deploy(opener: Opener, services_dir: str, service: str, version: str, time_window: str,
                     actor: str | None = None) -> CorrelationOutcome:
    """:func:`correlate` with the dependency graph of the specs in ``services_dir`` (none: no graph)."""
    window_seconds(time_window)  # a bad duration is refused before any spec is read
    edges = dependency_edges(load_services(services_dir)) if os.path.isdir(services_dir) else []
    with opener() as con:
        return correlate(con, service, version, time_window, edges, actor=actor)
