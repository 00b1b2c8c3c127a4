"""Where a command runs: a project is a folder with a services/ directory of specs."""
from __future__ import annotations

import os

from generators.errors import UserError


def require_services_dir(services: str, hint: str) -> None:
    """Refuse to run outside a project (before anything is created): raise a UserError naming the missing
    folder and ``hint`` (how to point the command at one)."""
    if not os.path.isdir(services):
        raise UserError(f"no '{services}' folder here ({os.getcwd()}): run it in a folder with services/*.yaml "
                        f"or {hint}")


def build_setting(given: dict[str, str], name: str, env: str, default: str = "") -> str:
    """A build setting as doit's task definitions read it: the doit variable ``name=value``, else the
    environment variable ``env``, else ``default`` (one rule for ``doit``, ``nthlayer build`` and --check)."""
    return given.get(name, os.environ.get(env, default))


def is_on(value: str) -> bool:
    """A yes/no setting's text (strict=1, NTHLAYER_STRICT=true …)."""
    return value.strip().lower() in {"1", "true", "yes", "on"}
