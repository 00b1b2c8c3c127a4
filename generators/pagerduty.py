"""PagerDuty desired state for one service: team, escalation policy, service, Events API v2 integration.

Pure: the document says what PagerDuty should hold, using the tier table for
urgency, auto-resolve, acknowledgement timeout and escalation delays. Ids that
only PagerDuty knows (users behind e-mail addresses, objects nthlayer creates)
stay symbolic; ``nthlayer setup-pagerduty`` resolves them when it plans.

Ownership rules (what nthlayer manages on each object):
- an object the spec names by id is *referenced*: it must exist, nthlayer never
  renames it; its policy fields are still reconciled (escalation rules only
  when the spec lists schedule_ids / escalation_emails);
- an object without an id is found by exact name and created when missing.
"""
from __future__ import annotations

import os
from typing import Any

from generators.model import Service
from generators.paging import escalation_source, uses_pagerduty
from generators.render import json_bytes

INTEGRATION_NAME = "Alertmanager (nthlayer)"
INTEGRATION_TYPE = "events_api_v2_inbound_integration"
DOCUMENT_VERSION = 1


def escalation_policy_name(service: Service) -> str:
    return f"{service.name} escalation"


def escalation_targets(service: Service) -> list[dict[str, str]]:
    """Schedules first (in spec order), then people by e-mail: the order escalation follows."""
    pd = service.pagerduty
    targets = [{"type": "schedule_reference", "id": sid} for sid in pd.schedule_ids]
    targets += [{"type": "user_reference", "email": email} for email in pd.escalation_emails]
    return targets


def escalation_rules(delays: tuple[int, ...], targets: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One rule per tier escalation delay, each target on its own level.

    Level i notifies targets[i]; the last level also takes every target left
    over, so nobody listed in the spec is dropped. With fewer targets than the
    tier has levels, the policy is shorter (PagerDuty rejects a rule without
    targets, and repeating a target would only re-notify the same person).
    """
    levels = min(len(delays), len(targets))
    rules: list[dict[str, Any]] = []
    for index in range(levels):
        chunk = targets[index:index + 1] if index < levels - 1 else targets[index:]
        rules.append({"escalation_delay_in_minutes": delays[index], "targets": [dict(t) for t in chunk]})
    return rules


def _description(service: Service) -> str:
    base = f"{service.name}: tier {service.tier.number} ({service.tier.name}), team {service.team}."
    if service.description:
        base = f"{service.description.strip()} — {base}"
    return f"{base} Managed by nthlayer."


def desired_state(service: Service) -> dict[str, Any]:
    """The PagerDuty objects one service needs, as a JSON-ready dict (no secrets, no clock)."""
    tier = service.tier
    pd = service.pagerduty
    urgency = pd.urgency or tier.pd_urgency
    targets = escalation_targets(service)
    policy_source = escalation_source(service)
    policy: dict[str, Any] = {
        "id": pd.escalation_policy_id,
        "spec_field": "/pagerduty/escalation_policy_id" if pd.escalation_policy_id else None,
        "rules_from": policy_source,
        "fields": {
            "type": "escalation_policy",
            "name": escalation_policy_name(service),
            "description": f"Escalation for {service.name} (tier {tier.number} {tier.name}). Managed by nthlayer.",
        },
    }
    if targets:
        policy["fields"]["escalation_rules"] = escalation_rules(tier.pd_escalation_delays, targets)
    return {
        "version": DOCUMENT_VERSION,
        "service_name": service.name,
        "enabled": uses_pagerduty(service),
        "tier": tier.number,
        "team": {
            "id": pd.team_id,
            "spec_field": "/pagerduty/team_id" if pd.team_id else None,
            "fields": {"type": "team", "name": service.team},
        },
        "escalation_policy": policy,
        "service": {
            "id": pd.service_id,
            "spec_field": "/pagerduty/service_id" if pd.service_id else None,
            "fields": {
                "type": "service",
                "name": service.name,
                "description": _description(service),
                "auto_resolve_timeout": tier.pd_auto_resolve_seconds,
                "acknowledgement_timeout": tier.pd_ack_timeout_seconds,
                "incident_urgency_rule": {"type": "constant", "urgency": urgency},
            },
        },
        "integration": {
            "fields": {"type": INTEGRATION_TYPE, "name": INTEGRATION_NAME},
        },
        "schedules": [{"id": sid, "spec_field": f"/pagerduty/schedule_ids/{i}"} for i, sid in enumerate(pd.schedule_ids)],
        "users": [{"email": e, "spec_field": f"/pagerduty/escalation_emails/{i}"}
                  for i, e in enumerate(pd.escalation_emails)],
    }


def pagerduty_files(service: Service, service_dir: str) -> dict[str, bytes]:
    """``{<service_dir>/pagerduty.json: bytes}``; dodo.py passes out/<service>."""
    return {os.path.join(service_dir, "pagerduty.json"): json_bytes(desired_state(service), service.source)}
