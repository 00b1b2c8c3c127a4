"""generate-slo and generate-alerts: one service's files from its spec, written and audited.

The build (doit) writes the same files for every service; these write one service's on demand, with the
SLO generator plugins applied as the build applies them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from generators.catalog import Technology, default_catalog_dir, load_technologies
from generators.model import Service
from generators.render import write_all
from generators.spec import load_spec, spec_warnings
from generators.tech_alerts import alert_counts, service_alert_files
from nthlayer.state.db import record_audit


def slo_files(spec_path: str, fmt: str, output: str | None, plugins: Sequence[str] = (),
              warn: Callable[[str], None] = print) -> dict[str, bytes]:
    """The files ``generate-slo`` writes for one spec (``fmt``: openslo or prometheus), with the SLO
    generator plugins applied as the build applies them (SpecErrors for a bad spec, PluginError for a
    failing plugin); the spec's warnings go to ``warn``."""
    from nthlayer.buildsys.plugin_calls import apply_slo_generators
    from nthlayer.buildsys.plugins import load_plugins, plugin_files

    spec = load_spec(spec_path)
    for warning in spec_warnings(spec):
        warn(warning.format())
    spec, _ = apply_slo_generators(spec, load_plugins(plugin_files(list(plugins))).slo_generators)
    service = spec.service
    if fmt == "openslo":
        from generators.openslo import openslo_files

        return openslo_files(service, output or os.path.join("out", service.name))  # out/<service>/openslo.yaml
    from generators.slo_rules import slo_rule_files

    return slo_rule_files(service, output or os.path.join("out", service.name, "prometheus"))


@dataclass(frozen=True)
class ServiceAlerts:
    """A service's technology alerts from the rules catalog: the file(s) and how many alerts."""
    service: Service
    catalog: dict[str, Technology]
    files: dict[str, bytes]
    total: int


def alert_files(spec_path: str, catalog_dir: str | None, output: str | None, runbook_url: str | None
                ) -> ServiceAlerts:
    """The technology alerts ``generate-alerts`` writes for one spec (``output`` None: the build's folder)."""
    service = load_spec(spec_path).service
    catalog = load_technologies(catalog_dir or default_catalog_dir(), service.technology_types)
    files = service_alert_files(service, catalog, output or os.path.join("out", service.name, "prometheus"),
                                runbook_url)
    return ServiceAlerts(service, catalog, files, sum(alert_counts(service, catalog).values()))


def write_generated(action: str, service: str, files: dict[str, bytes], details: dict[str, Any],
                    state: str | None, report: Callable[[set[str]], None]) -> set[str]:
    """Write ``files`` (only those whose bytes change, atomically), hand the changed paths to ``report``,
    then audit it (``details`` plus the files and the changed ones) in the state database ``state``."""
    changed = set(write_all(files))
    report(changed)
    record_audit(action, service, "written", {**details, "files": sorted(files), "changed": sorted(changed)},
                 path=state)
    return changed
