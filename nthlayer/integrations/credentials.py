"""The one credential resolver: every command that needs a PagerDuty, Prometheus, ArgoCD or Datadog secret
asks here, by the credential's name, and gets it the same way.

Order (the first that is set wins):

1. a file named on the command line (``--api-key-file``), when the command has such an option;
2. the credential's environment variable (``PAGERDUTY_API_KEY``, ``PROMETHEUS_TOKEN``, …);
3. its ``…_FILE`` environment variable (a file holding the secret);
4. the reference in the project configuration file, table ``[credentials]`` (``nthlayer config set``):
   ``vault://MOUNT/PATH[?version=N][#field]`` (HashiCorp Vault KV v2), ``env:VAR`` or ``file:PATH``.

Steps 1–3 are how nthlayer read its secrets before this module existed; they still come first, so a CI job
that exports ``PAGERDUTY_API_KEY`` keeps working whatever the project file says.

A resolved :class:`Secret` keeps the value in memory only: its ``repr`` and ``str`` show the source, never
the value, so a stray log line or traceback cannot print it. Every error names the source (the reference,
the variable, the file), never the value.

Adding a credential (the Datadog integration, say) is one entry in :data:`CREDENTIALS`; a command then
calls ``CredentialResolver().require("datadog.api_key")``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from generators.errors import UserError

if TYPE_CHECKING:
    from nthlayer.config import ProjectConfig
    from nthlayer.integrations.vault import VaultReader

TABLE = "credentials"


@dataclass(frozen=True)
class Credential:
    """A credential nthlayer knows: its name (``pagerduty.api_key``), what it is in words, its environment
    variables, and whether it is a secret (a username is not: it may be stored in the file as it is)."""

    name: str
    what: str
    env: str
    file_env: str | None = None
    secret: bool = True
    # Prometheus has always refused PROMETHEUS_TOKEN and PROMETHEUS_TOKEN_FILE together; PagerDuty has
    # always let the variable win. Both behaviours are kept.
    exclusive_file: bool = False


CREDENTIALS: dict[str, Credential] = {c.name: c for c in (
    Credential("pagerduty.api_key", "PagerDuty API key", "PAGERDUTY_API_KEY", "PAGERDUTY_API_KEY_FILE"),
    Credential("prometheus.token", "Prometheus bearer token", "PROMETHEUS_TOKEN", "PROMETHEUS_TOKEN_FILE",
               exclusive_file=True),
    Credential("prometheus.username", "Prometheus basic-auth user", "PROMETHEUS_USERNAME", secret=False),
    Credential("prometheus.password", "Prometheus basic-auth password", "PROMETHEUS_PASSWORD",
               "PROMETHEUS_PASSWORD_FILE"),
    Credential("argocd.token", "ArgoCD API token", "ARGOCD_AUTH_TOKEN", "ARGOCD_AUTH_TOKEN_FILE"),
    Credential("datadog.api_key", "Datadog API key", "DD_API_KEY", "DD_API_KEY_FILE"),
    Credential("datadog.app_key", "Datadog application key", "DD_APP_KEY", "DD_APP_KEY_FILE"),
)}

REFERENCE_FORMS = "vault://MOUNT/PATH[#field], env:VAR or file:PATH"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CredentialError(UserError):
    """A credential that is configured but cannot be had; the message names its source, never its value."""


def masked(value: str) -> str:
    """A secret as it may be shown: at most its first and last two characters, only when long enough that
    they give nothing useful away."""
    return f"{value[:2]}…{value[-2:]}" if len(value) >= 16 else "…"


@dataclass(frozen=True)
class Secret:
    """A resolved credential. ``source`` says where it came from, and is safe to print."""

    name: str
    source: str
    value: str = field(repr=False)

    def __str__(self) -> str:
        return f"{self.name} from {self.source}"


def credential(name: str) -> Credential:
    """The known credential ``name``; UserError naming the known ones otherwise."""
    try:
        return CREDENTIALS[name]
    except KeyError:
        raise UserError(f"unknown credential {name!r}; known: {', '.join(sorted(CREDENTIALS))}") from None


def parse_reference(text: str) -> tuple[str, str]:
    """``(kind, target)`` of a reference: ``("vault", "vault://…")``, ``("env", VAR)``, ``("file", PATH)``,
    or ``("literal", text)`` for anything else (allowed only for credentials that are not secrets)."""
    if text.startswith("vault://"):
        from nthlayer.integrations.vault import parse_vault_reference

        parse_vault_reference(text)  # raises ValueError with the reason
        return "vault", text
    if text.startswith("env:"):
        name = text[len("env:"):]
        if not _ENV_NAME.match(name):
            raise ValueError(f"env:{name} is not an environment variable name")
        return "env", name
    if text.startswith("file:"):
        path = text[len("file:"):]
        if not path:
            raise ValueError("file: needs a path")
        return "file", path
    if re.match(r"^[a-z][a-z0-9+.-]*://", text) or re.match(r"^(env|file|vault):", text, re.IGNORECASE):
        raise ValueError(f"{text!r} is not a reference nthlayer reads ({REFERENCE_FORMS})")
    return "literal", text


def flatten(table: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """``{"pagerduty": {"api_key": "…"}}`` → ``{"pagerduty.api_key": "…"}`` (how the file's dotted keys read)."""
    flat: dict[str, object] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def references(config: ProjectConfig) -> dict[str, str]:
    """The ``[credentials]`` table as ``{name: reference}``, checked: every name a known credential, every
    value a reference (or, for a credential that is not a secret, a plain value). ConfigError otherwise."""
    refs: dict[str, str] = {}
    for name, value in sorted(flatten(config.section(TABLE)).items()):
        pointer = "/" + TABLE + "/" + name.replace(".", "/")
        if name not in CREDENTIALS:
            raise config.error(pointer, f"unknown credential {name!r}; known: {', '.join(sorted(CREDENTIALS))}")
        if not isinstance(value, str):
            raise config.error(pointer, f"must be a string reference ({REFERENCE_FORMS})")
        try:
            kind, _ = parse_reference(value)
        except ValueError as exc:
            raise config.error(pointer, str(exc)) from None
        if kind == "literal" and CREDENTIALS[name].secret:
            raise config.error(pointer, f"{name} is a secret: the file holds a reference to it ({REFERENCE_FORMS}), "
                                        "never the secret itself")
        refs[name] = value
    return refs


class CredentialResolver:
    """Resolves credentials for one command run. Vault logins and reads are cached for the resolver's life
    (one AppRole login and one read per secret, however many credentials come from it); nothing is written."""

    def __init__(self, environ: Mapping[str, str] | None = None, config: ProjectConfig | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self._config = config
        self._vault: VaultReader | None = None

    @property
    def config(self) -> ProjectConfig:
        if self._config is None:
            from nthlayer.config import load_config

            self._config = load_config()
        return self._config

    def reference(self, name: str) -> str | None:
        """The ``[credentials]`` reference for ``name``, if the project file has one."""
        return references(self.config).get(credential(name).name)

    def get(self, name: str, file_override: str | None = None) -> Secret | None:
        """The credential ``name``, or None when nothing provides it (see the module docstring for the order)."""
        spec = credential(name)
        if file_override:
            return Secret(name, f"file {file_override}", _read_file(file_override, f"the {spec.what} file"))
        value = self.environ.get(spec.env, "").strip()
        from_file = self.environ.get(spec.file_env, "") if spec.file_env else ""
        if value and from_file and spec.exclusive_file:
            raise CredentialError(f"set {spec.env} or {spec.file_env}, not both")
        if value:
            return Secret(name, f"${spec.env}", value)
        if from_file:
            return Secret(name, f"${spec.file_env} ({from_file})", _read_file(from_file, spec.file_env or ""))
        reference = self.reference(name)
        if reference is None:
            return None
        return Secret(name, reference, self.dereference(name, reference))

    def require(self, name: str, file_override: str | None = None, hint: str = "") -> Secret:
        """Like :meth:`get`, but a missing credential is a CredentialError saying every way to provide it."""
        found = self.get(name, file_override)
        if found is None:
            raise CredentialError(missing_message(name, hint))
        return found

    def dereference(self, name: str, reference: str) -> str:
        """The value ``reference`` points at (errors name the reference, never a value)."""
        kind, target = parse_reference(reference)
        if kind == "env":
            value = self.environ.get(target, "").strip()
            if not value:
                raise CredentialError(f"{name} = {reference}: ${target} is not set")
            return value
        if kind == "file":
            try:
                return _read_file(target, "file")
            except CredentialError as exc:
                raise CredentialError(f"{name} = {reference}: {exc}") from None
        if kind == "literal":
            return target
        if self._vault is None:
            from nthlayer.integrations.vault import VaultReader

            self._vault = VaultReader(self.environ)
        return self._vault.read(reference, default_field=name.rsplit(".", 1)[-1])


def missing_message(name: str, hint: str = "") -> str:
    """What to say when credential ``name`` is provided by nothing."""
    spec = credential(name)
    ways = f"${spec.env}" + (f" or ${spec.file_env}" if spec.file_env else "")
    extra = f", {hint}" if hint else ""
    return (f"no {spec.what}: set {ways}{extra}, or store a reference with "
            f"'nthlayer config set {name} --from-vault vault://PATH#field' (docs/secrets.md)")


def _read_file(path: str, what: str) -> str:
    from nthlayer.integrations.secrets import read_secret_file

    try:
        return read_secret_file(path, what)
    except UserError as exc:
        raise CredentialError(str(exc)) from None


def resolve(name: str, file_override: str | None = None) -> Secret | None:
    """Shorthand for one credential with a fresh :class:`CredentialResolver` over the process environment."""
    return CredentialResolver().get(name, file_override)
