"""Whether a service's pages reach anyone: who is on PagerDuty, where its escalation comes from, and the
spec checks that say when pages would reach nobody.

Pure, and part of spec validation (generators/spec.py calls :func:`paging_problems`), so it is kept
apart from the PagerDuty desired state: editing that does not invalidate every spec's validation.
"""
from __future__ import annotations

from generators.errors import SpecError
from generators.model import Service
from generators.yamlload import Located


def uses_pagerduty(service: Service) -> bool:
    """A spec without any pagerduty setting keeps its service off PagerDuty (nothing to page)."""
    pd = service.pagerduty
    return bool(pd.service_id or pd.escalation_policy_id or pd.team_id or pd.schedule_ids
                or pd.escalation_emails or pd.urgency)


def escalation_source(service: Service) -> str:
    """Where the escalation policy's rules come from: ``spec`` (schedule_ids / escalation_emails, nthlayer
    builds the rules), ``referenced`` (escalation_policy_id), ``existing_service`` (service_id: keep the
    policy that service has) or ``missing`` (nothing names anyone to page)."""
    pd = service.pagerduty
    if pd.schedule_ids or pd.escalation_emails:
        return "spec"
    if pd.escalation_policy_id:
        return "referenced"
    if pd.service_id:
        return "existing_service"
    return "missing"


NO_POLICY_MESSAGE = ("no escalation policy for PagerDuty: set pagerduty.escalation_policy_id or pagerduty.service_id, "
                     "or list pagerduty.schedule_ids / escalation_emails for nthlayer to build one")


def paging_problems(located: Located, service: Service) -> list[SpecError]:
    """Why a service's pages would reach nobody, at the spec's ``/pagerduty`` (``located``: the
    loaded spec).

    Precisely: an empty ``schedule_ids`` / ``escalation_emails`` list is an error (it names nobody, and
    alone it leaves the service off PagerDuty); a spec with no PagerDuty setting (see
    :func:`uses_pagerduty`) is warned that its route ends at Alertmanager's notifier-less
    ``nthlayer-unrouted`` receiver; a spec on PagerDuty whose settings name no escalation (only
    ``team_id`` / ``urgency``) is warned that setup-pagerduty cannot create its service, so the routing
    key its receiver reads never exists.
    """
    data = located.data.get("pagerduty")
    problems: list[SpecError] = []
    if isinstance(data, dict):
        for key in ("escalation_emails", "schedule_ids"):
            if data.get(key) == []:
                what = "addresses" if key == "escalation_emails" else "schedule ids"
                problems.append(located.error(f"/pagerduty/{key}", (
                    f"an empty list pages nobody: list the {what} to escalate to, or remove the key")))
    if problems:
        return problems
    present = "pagerduty" in located.data
    if not uses_pagerduty(service):
        problems.append(located.error("/pagerduty", (
            f"no PagerDuty routing: the pages and critical alerts of '{service.name}' go to Alertmanager's "
            "nthlayer-unrouted receiver, which notifies nobody; list pagerduty.escalation_emails or schedule_ids, "
            "or reference pagerduty.escalation_policy_id or service_id"),
            key=present, warning=True))
    elif escalation_source(service) == "missing":
        problems.append(located.error("/pagerduty", (
            f"{NO_POLICY_MESSAGE}; until then setup-pagerduty cannot create the service and the pages of "
            f"'{service.name}' reach nobody"), key=True, warning=True))
    return problems
