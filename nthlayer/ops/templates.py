"""Spec templates for ``nthlayer init``: Jinja2 files shipped in nthlayer/ops/templates/.

A template's header names only the kind of service it is (``{#- description: … -#}``); what it
promises — tier, objectives, which burns page — is read from the spec it renders and the tier table,
so ``list-templates`` cannot say something the build does not do.
"""
from __future__ import annotations

import re
from decimal import Decimal
from importlib import resources
from typing import Iterable, NamedTuple

_DESCRIPTION = re.compile(r"^\{#-?\s*description:\s*(?P<text>.*?)\s*-?#\}")
SAMPLE_NAME = "example"  # the name a template is rendered with to describe it


class Template(NamedTuple):
    name: str
    description: str  # the kind of service, from the template's header
    source: str


def templates() -> dict[str, Template]:
    found: dict[str, Template] = {}
    folder = resources.files("nthlayer.ops").joinpath("templates")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml.j2"):
            continue
        source = entry.read_text(encoding="utf-8")
        match = _DESCRIPTION.match(source)
        name = entry.name[: -len(".yaml.j2")]
        found[name] = Template(name, match.group("text") if match else "", source)
    return found


def pagerduty_section(escalation_emails: Iterable[str] = (), schedule_ids: Iterable[str] = ()) -> str:
    """The spec's ``pagerduty`` block; without targets, a commented one saying that pages reach nobody."""
    import yaml

    emails, schedules = list(escalation_emails), list(schedule_ids)
    if not emails and not schedules:
        return ("# No PagerDuty routing yet: this service's pages reach nobody (nthlayer validate warns)\n"
                "# until you name who is paged, e.g.:\n"
                "# pagerduty:\n"
                "#   schedule_ids: [PXXXXXX]\n"
                "#   escalation_emails: [oncall@example.com]\n")
    lines = ["pagerduty:"]
    for key, values in (("schedule_ids", schedules), ("escalation_emails", emails)):
        if values:  # the dumper quotes whatever YAML would otherwise misread
            lines.append(f"  {key}: {yaml.safe_dump(values, default_flow_style=True, width=10**6).strip()}")
    return "\n".join(lines) + "\n"


def render(template: Template, name: str, team: str, pagerduty: str | None = None) -> str:
    """The spec text of ``template`` for service ``name`` of ``team``; ``pagerduty`` is its
    :func:`pagerduty_section` (default: the unrouted one)."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    return env.from_string(template.source).render(
        name=name, team=team, metric_prefix=name.replace("-", "_"),
        pagerduty=pagerduty if pagerduty is not None else pagerduty_section())


def _percent(value: Decimal) -> str:
    return f"{format((value * 100).normalize(), 'f')} %"


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def summary(template: Template) -> str:
    """One line for ``list-templates``: the template's kind, then what the spec it renders gets from
    the model and the tier table (objectives, which burn-rate alerts page and which open tickets)."""
    from generators.slo_maths import burn_windows
    from generators.spec import load_spec

    service = load_spec(f"{SAMPLE_NAME}.yaml", render(template, SAMPLE_NAME, "team").encode("utf-8")).service
    availability, latency = service.slo("availability"), service.slo("latency")
    by_severity: dict[str, list[str]] = {}
    for window in burn_windows(availability.window_days):
        severity = service.tier.burn_alerts.get(window.name)
        if severity:
            by_severity.setdefault(severity, []).append(window.name)
    alerts = [f"{verb} on {_joined(by_severity[key])} burns"
              for key, verb in (("page", "pages"), ("ticket", "tickets")) if key in by_severity]
    percentile = format((latency.objective * 100).normalize(), "f")
    parts = [f"{_percent(availability.objective)} availability",
             f"p{percentile} under {format(latency.threshold_ms.normalize(), 'f')} ms"]
    techs = f"; depends on {_joined(list(service.technology_types))}" if service.technologies else ""
    return (f"tier {service.tier.number} ({service.tier.name}) {template.description}: {', '.join(parts)}; "
            f"{'; '.join(alerts)}{techs}")
