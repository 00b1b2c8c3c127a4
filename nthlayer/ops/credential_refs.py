"""``nthlayer config``'s operations: keep credential *references* in the project file's ``[credentials]``
table, and say whether each resolves — never storing or showing a secret.

The file is rewritten with tomlkit, which keeps the user's comments, layout and other tables; the write is
atomic (temporary file, then rename) and happens only when the table changes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from generators.errors import UserError
from nthlayer.config import ConfigError, ProjectConfig, config_path, load_config
from nthlayer.integrations.credentials import (
    CREDENTIALS,
    REFERENCE_FORMS,
    TABLE,
    CredentialError,
    CredentialResolver,
    credential,
    masked,
    parse_reference,
    references,
)


@dataclass(frozen=True)
class Change:
    """What ``set``/``unset`` did: ``changed`` is False when the file already said so (nothing written)."""

    name: str
    reference: str | None
    changed: bool
    path: str


@dataclass(frozen=True)
class Status:
    """How a credential is provided now: the file's reference, an environment variable that wins over it,
    and whether the one in use resolves (with the value masked) or why not."""

    name: str
    reference: str | None
    in_use: str | None  # the source that wins: "$PAGERDUTY_API_KEY", the reference, or None
    resolves: bool | None  # None: not checked
    detail: str  # "pd…ef" when it resolves, else the reason (naming the source, never a value)

    def lines(self) -> list[str]:
        head = f"{self.name} = {self.reference}" if self.reference else f"{self.name}: no reference in the file"
        if self.in_use is None:
            return [head, "  not provided: " + self.detail]
        if self.resolves is None:
            return [head, f"  in use: {self.in_use}"]
        state = f"resolves ({self.detail})" if self.resolves else f"does not resolve: {self.detail}"
        return [head, f"  in use: {self.in_use}: {state}"]


def reference_for(name: str, *, value: str | None = None, vault: str | None = None, env: str | None = None,
                  file: str | None = None) -> str:
    """The reference text ``config set`` stores for exactly one of its sources. A literal ``value`` is
    refused for a secret: the file holds references only."""
    spec = credential(name)
    given = [(kind, text) for kind, text in (("value", value), ("vault", vault), ("env", env), ("file", file))
             if text is not None]
    if len(given) != 1:
        raise UserError("give exactly one of VALUE, --from-vault, --from-env, --from-file")
    kind, text = given[0]
    if kind == "value":
        if spec.secret:
            raise UserError(f"{name} is a secret: nthlayer.toml holds a reference to it, never the secret itself "
                            f"(its value is not shown); use --from-vault vault://PATH#field, --from-env VAR or "
                            f"--from-file PATH")
        reference = text
    else:
        reference = {"vault": text, "env": f"env:{text}", "file": f"file:{text}"}[kind]
    try:
        parsed, _ = parse_reference(reference)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if kind == "value" and parsed != "literal":
        raise UserError(f"{text!r} is a reference: give it with --from-{parsed}")
    if kind == "vault" and parsed != "vault":
        raise UserError(f"--from-vault needs a vault:// reference ({REFERENCE_FORMS})")
    return reference


def _document(path: str) -> tuple[Any, ProjectConfig]:
    import tomlkit

    config = load_config(path)  # a file that does not parse, or has unknown tables, is fixed first
    references(config)
    return tomlkit.parse(config.text), config


def _write(path: str, document: Any) -> None:
    import tomlkit

    text = tomlkit.dumps(document)
    mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def set_reference(name: str, reference: str, path: str | None = None) -> Change:
    """Store ``name = reference`` in ``[credentials]`` (a dotted key: ``pagerduty.api_key = "…"``)."""
    import tomlkit

    path = path or config_path()
    document, config = _document(path)
    if references(config).get(name) == reference:
        return Change(name, reference, False, path)
    table = document.get(TABLE)
    if table is None:
        table = tomlkit.table()
        document.add(TABLE, table)
    group, key = name.split(".")  # every credential is GROUP.KEY (credentials.CREDENTIALS)
    if group in table:  # a dotted key already there, or a [credentials.GROUP] table the user wrote
        table[group][key] = reference
    else:
        table.append(tomlkit.key([group, key]), reference)
    _write(path, document)
    return Change(name, reference, True, path)


def unset_reference(name: str, path: str | None = None) -> Change:
    """Remove ``name`` from ``[credentials]`` (and tables left empty by it)."""
    credential(name)
    path = path or config_path()
    document, config = _document(path)
    if name not in references(config):
        return Change(name, None, False, path)
    group, key = name.split(".")
    table = document[TABLE]
    del table[group][key]
    if len(table[group]) == 0:
        del table[group]
    _write(path, document)
    return Change(name, None, True, path)


def status(name: str, resolver: CredentialResolver | None = None, check: bool = True) -> Status:
    """How credential ``name`` is provided now; with ``check``, resolve it (Vault is read, in memory)."""
    spec = credential(name)
    resolver = resolver or CredentialResolver()
    reference = resolver.reference(name)
    env = resolver.environ
    winner = next((f"${var}" for var in (spec.env, spec.file_env) if var and env.get(var, "").strip()), None)
    in_use = winner or reference
    if in_use is None:
        return Status(name, None, None, False, "set $" + spec.env + (f" or ${spec.file_env}" if spec.file_env
                                                                      else "") + ", or 'nthlayer config set'")
    if not check:
        return Status(name, reference, in_use, None, "")
    try:
        secret = resolver.get(name)
    except (CredentialError, ConfigError) as exc:
        return Status(name, reference, in_use, False, str(exc))
    assert secret is not None
    return Status(name, reference, in_use, True, masked(secret.value) if spec.secret else secret.value)


def configured(path: str | None = None) -> dict[str, str]:
    """The file's references, by credential name."""
    return references(load_config(path or config_path()))


KNOWN = sorted(CREDENTIALS)
