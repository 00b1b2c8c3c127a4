"""The public plugin API: what a plugin author imports (``from nthlayer.plugin import SLOGenerator``).

Three kinds of plugin, each a class deriving from one base here:

- :class:`SLOGenerator` — SLOs for a service: new ones, or overrides of the service's own (industry
  rules, compliance floors, custom tier mappings). It returns entries of the spec's ``slos:`` list,
  which are merged into the spec and validated by the same schema and checks as a spec.
- :class:`OutputFormat` — an extra artifact kind: files under ``out/<service>/<format>/``, returned as
  ``{relative path: bytes | str | dict}`` and written by the build (atomically, only when changed).
- :class:`Integration` — a hook a ``setup-*`` command runs after its own work (``setup-pagerduty``).

Every plugin receives the *validated* service as a frozen :class:`Service` (never the raw YAML), and
may restrict itself with :meth:`Plugin.applies_to`. A plugin declares the API version it was written
for in ``api_version``; nthlayer refuses one whose version it does not support. This module is the
stable surface: names here change only with a new :data:`API_VERSION`. docs/plugins.md is the guide.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Mapping, Sequence, Union

from generators.model import SLI, SLO, Service, Technology
from generators.tiers import Tier

API_VERSION = 1
"""The version of this API. A plugin sets ``api_version`` to the version it was written against."""

SUPPORTED_API_VERSIONS: tuple[int, ...] = (1,)
"""The plugin API versions this nthlayer loads."""

SLOEntry = Mapping[str, Any]
"""One SLO as a spec's ``slos:`` list writes it, e.g. ``{"name": "availability", "objective": 0.9999,
"availability": {}}`` (see the README's "Your own SLOs")."""

FileContent = Union[bytes, str, Mapping[str, Any]]
"""What an :class:`OutputFormat` returns per file: bytes as they are, text (written as UTF-8), or a
mapping (written as YAML for ``.yaml``/``.yml`` paths, JSON for ``.json``; other suffixes need bytes or
text)."""


class Plugin(ABC):
    """What every plugin has: a name, the API version it targets, and which services it applies to."""

    kind: ClassVar[str] = ""  # set by the three kinds below; shown by `nthlayer plugins list`
    api_version: ClassVar[int] = API_VERSION
    name: ClassVar[str] = ""  # "" → the class name

    def applies_to(self, service: Service) -> bool:
        """Whether this plugin acts on ``service`` (default: every service). Keep it a cheap, pure
        function of the service: the build asks it for each service whose spec or plugin changed, and
        rebuilds exactly the services it answers True for when the plugin file is edited."""
        return True


class SLOGenerator(Plugin):
    """Adds or overrides SLOs of the services it applies to.

    :meth:`generate` returns entries of the spec's ``slos:`` list. An entry whose ``name`` is an SLO the
    service already has overrides it key by key (an entry naming an SLI kind replaces that SLO's SLI);
    a new name adds an SLO. A service without a ``slos:`` block has the two SLOs ``availability`` and
    ``latency``. The merged spec is validated like any spec, so an entry the schema or the checks reject
    fails the service with ``plugin FILE:LINE: ...`` instead of producing wrong rules. Several SLO
    generators run in load order, each seeing the service as the previous one left it.
    """

    kind = "slo-generator"

    @abstractmethod
    def generate(self, service: Service) -> Sequence[SLOEntry]:
        """The SLO entries to merge into ``service`` (an empty list changes nothing)."""


class OutputFormat(Plugin):
    """An extra artifact kind: files under ``out/<service>/<format>/`` for the services it applies to.

    :meth:`render` returns ``{relative path: content}``; the build writes them (never the plugin), in
    the format's own folder only: an absolute path or one leaving the folder fails the service. Files
    the format no longer returns are removed from its folder.
    """

    kind = "output-format"
    format: ClassVar[str] = ""  # the folder name under out/<service>/: lowercase letters, digits, '-', '_'

    @abstractmethod
    def render(self, service: Service) -> Mapping[str, FileContent]:
        """The format's files for ``service``, by path relative to ``out/<service>/<format>/``."""


@dataclass(frozen=True)
class IntegrationContext:
    """What a ``setup-*`` command hands its integration plugins, after its own work succeeded.

    ``command``: the command (``"setup-pagerduty"``). ``services``: the validated services it set up,
    each one an integration :meth:`~Plugin.applies_to`. ``dry_run``: the command only planned; change
    nothing. ``results``: per service name, what the command did, as plain data (``setup-pagerduty``:
    ``{"actions": [...], "ids": {...}}``; ids of the PagerDuty objects, never a secret).
    """

    command: str
    services: tuple[Service, ...]
    dry_run: bool
    results: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class Integration(Plugin):
    """A command-line hook: :meth:`run` is called by the ``setup-*`` commands in ``commands`` once,
    after the command's own work succeeded (in a dry run too, with ``context.dry_run`` set), with the
    services it applies to. Its printed output goes to the user; an exception fails the command with
    ``plugin FILE:LINE: message`` (exit 1) after the command's own work was done."""

    kind = "integration"
    commands: ClassVar[tuple[str, ...]] = ("setup-pagerduty",)

    @abstractmethod
    def run(self, context: IntegrationContext) -> None:
        """Do the integration's work for ``context.services``."""


def slo_queries(service: Service, slo: SLO, window: str) -> tuple[str, str]:
    """PromQL of a request-counting SLO (availability, latency, events): (bad events per second,
    events per second) over ``window``, as nthlayer's own rules compute them. For output formats that
    re-express the service's SLOs in another tool's terms."""
    from generators.sli_queries import raw_rates

    if not slo.counted:
        raise ValueError(f"a {slo.kind} SLO counts no events")
    return raw_rates(service, slo, window)


def ratio_query(service: Service, slo: SLO, window: str) -> str:
    """PromQL of any SLO's bad-event ratio over ``window`` (threshold SLOs excepted: they record time
    slices), as nthlayer's own rules compute it."""
    from generators.sli_queries import raw_ratio

    if slo.kind == "threshold":
        raise ValueError("a threshold SLO's ratio is a mean of recorded time slices, not a query")
    return raw_ratio(service, slo, window)


__all__ = ["API_VERSION", "SUPPORTED_API_VERSIONS", "Plugin", "SLOGenerator", "OutputFormat", "Integration",
           "IntegrationContext", "SLOEntry", "FileContent", "Service", "SLO", "SLI", "Technology", "Tier",
           "Decimal", "slo_queries", "ratio_query"]
