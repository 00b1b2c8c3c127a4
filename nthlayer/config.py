"""The project configuration file, ``nthlayer.toml``: settings a project keeps beside its ``services/``.

One file, one reader, one error format, for every feature that has a project-level setting. Each feature
owns one top-level table and validates its own keys; this module only finds the file, parses it, refuses
tables nobody owns, and locates a key for error messages (``nthlayer.toml:LINE:COL: /table/key: message``).

Where: ``$NTHLAYER_CONFIG`` if set, else ``nthlayer.toml`` in the working directory (the project root,
where ``doit`` runs). A missing file is an empty configuration, not an error.
"""
from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from generators.errors import UserError

CONFIG_FILE = "nthlayer.toml"
CONFIG_ENV = "NTHLAYER_CONFIG"

# The top-level tables and the feature that owns each (documented in docs/config.md).
SECTIONS: dict[str, str] = {
    "build": "build settings: plugins (docs/plugins.md)",
    "cost": "what an incident minute costs per tier, for nthlayer cost (docs/cost.md)",
    "credentials": "references to secrets, never secrets (docs/secrets.md)",
    "kubernetes": "defaults for Kubernetes manifests (docs/kubernetes.md)",
    "policy": "project Rego policies (docs/policies.md)",
}


class ConfigError(UserError):
    """A configuration file that cannot be used; the message starts with ``file:line:col:``."""


@dataclass(frozen=True)
class ProjectConfig:
    """The parsed file: ``tables`` maps a top-level table name to its contents (plain TOML values)."""

    path: str
    tables: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    def section(self, name: str) -> dict[str, Any]:
        """Table ``name`` (empty when the file or the table is absent)."""
        if name not in SECTIONS:
            raise KeyError(f"{name!r} is not a configuration table (add it to nthlayer.config.SECTIONS)")
        value = self.tables.get(name, {})
        return value if isinstance(value, dict) else {}

    def error(self, pointer: str, message: str) -> ConfigError:
        """A :class:`ConfigError` for the value at JSON pointer ``pointer`` (``/table/key``), located at the
        line of its key when the file shows it (else line 1)."""
        line, col = locate(self.text, pointer)
        return ConfigError(f"{self.path}:{line}:{col}: {pointer}: {message}")


def config_path() -> str:
    """Where the project's configuration file is (it may not exist)."""
    return os.environ.get(CONFIG_ENV) or CONFIG_FILE


def load_config(path: str | None = None) -> ProjectConfig:
    """Read and parse the configuration file (``path``, else :func:`config_path`); raise :class:`ConfigError`
    for TOML that does not parse or a top-level table nobody owns."""
    path = path or config_path()
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        if os.environ.get(CONFIG_ENV) == path:  # named explicitly: its absence is a mistake
            raise ConfigError(f"{path}:1:1: no such file (named by ${CONFIG_ENV})") from None
        return ProjectConfig(path=path)
    except OSError as exc:
        raise ConfigError(f"{path}:1:1: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
        tables = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}:1:1: not UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_message(path, str(exc))) from None
    config = ProjectConfig(path=path, tables=tables, text=text)
    for name, value in tables.items():
        if name not in SECTIONS:
            close = difflib.get_close_matches(name, list(SECTIONS), n=1)
            hint = f"did you mean [{close[0]}]?" if close else "known tables: " + ", ".join(sorted(SECTIONS))
            raise config.error(f"/{name}", f"unknown table [{name}]: {hint}")
        if not isinstance(value, dict):
            raise config.error(f"/{name}", f"{name} must be a table ([{name}]), not a single value")
    return config


def _toml_message(path: str, message: str) -> str:
    """tomllib's "Invalid value (at line 3, column 7)" as ``path:3:7: Invalid value``."""
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match:
        return f"{path}:{match[1]}:{match[2]}: {message[:match.start()]}"
    return f"{path}:1:1: {message}"


def locate(text: str, pointer: str) -> tuple[int, int]:
    """Line and column (1-based) of the key that ``pointer`` (``/table/key/...``) names: the deepest table
    header the pointer spells (``[credentials.argocd]`` for /credentials/argocd/token), then the longest dotted
    key under it (``token =``, or ``argocd.token =`` under ``[credentials]``); as far down the pointer as the
    text shows, else (1, 1)."""
    parts = [part for part in pointer.split("/") if part]
    if not parts:
        return 1, 1
    lines = text.splitlines()
    dot = r"\s*\.\s*"
    for depth in range(len(parts), 0, -1):
        header = re.compile(r"^\s*\[+\s*" + dot.join(re.escape(p) for p in parts[:depth]) + r"\s*\]")
        start = next((n for n, line in enumerate(lines) if header.match(line)), None)
        if start is None:
            continue
        rest = parts[depth:]
        for size in range(len(rest), 0, -1):
            key = re.compile(r"^(\s*)" + dot.join(re.escape(p) for p in rest[:size]) + r"\s*[=.]")
            for number in range(start + 1, len(lines)):
                if re.match(r"^\s*\[", lines[number]):
                    break
                match = key.match(lines[number])
                if match:
                    return number + 1, len(match[1]) + 1
        return start + 1, lines[start].index("[") + 1
    return 1, 1
