"""Spec templates for ``nthlayer init``: Jinja2 files shipped in nthlayer/templates/."""
from __future__ import annotations

import re
from importlib import resources
from typing import NamedTuple

_DESCRIPTION = re.compile(r"^\{#-?\s*description:\s*(?P<text>.*?)\s*-?#\}")


class Template(NamedTuple):
    name: str
    description: str
    source: str


def templates() -> dict[str, Template]:
    found: dict[str, Template] = {}
    folder = resources.files("nthlayer").joinpath("templates")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml.j2"):
            continue
        source = entry.read_text(encoding="utf-8")
        match = _DESCRIPTION.match(source)
        name = entry.name[: -len(".yaml.j2")]
        found[name] = Template(name, match.group("text") if match else "", source)
    return found


def render(template: Template, name: str, team: str) -> str:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    return env.from_string(template.source).render(
        name=name, team=team, metric_prefix=name.replace("-", "_"))
