"""``nthlayer list-templates``: the templates ``nthlayer init`` can start a spec from."""
from __future__ import annotations

import argparse

from nthlayer.ops.templates import summary, templates


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    found = templates()
    width = max(len(name) for name in found)
    for template in found.values():
        print(f"{template.name:<{width}}  {summary(template)}")
    return 0
