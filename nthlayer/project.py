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
