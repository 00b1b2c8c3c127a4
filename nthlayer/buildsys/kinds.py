"""The artifact-kind registry: every kind of file the build writes, in one table.

A *per-service kind* (:class:`ServiceKind`, in :data:`SERVICE_KINDS`) is written under out/<service>/ by
each service's doit task. One entry says everything the build needs:

- ``name``: how tasks, code stamps (state/code/<name>.sha256) and titles (``service:a (alerts)``) call it;
- ``code``: the generator files (under generators/) its output depends on besides :data:`CORE_CODE`; their
  hash is the kind's code stamp, so editing one regenerates that kind only, for every service;
- ``files``: the files it writes for a service with the default SLOs (availability, latency), relative to
  out/<service>/; ``files_for_slos`` gives them for a spec's declared SLOs (None: the same whatever the SLOs);
- ``generate(service, ctx)``: the files for one validated :class:`~generators.model.Service`, as
  {path under ``ctx.base``: bytes} (the build checks the paths are exactly its ``files``);
- ``former``: what earlier layouts of the kind wrote under out/<service>/ (files, or folders it alone
  filled), removed when the kind is regenerated, so the first build after an upgrade leaves exactly the new
  layout (its code changed with the layout, so every service regenerates it); files of ``files`` no longer
  written (``slos: []``) are removed too;
- ``reads_catalog``: its output depends on the rules catalog files of the service's technologies (an edit
  of one regenerates this kind for the services using that technology);
- ``optional``: it writes its files only for the services whose spec turns it on (the spec summary's
  ``extras``, generators.spec.extra_kinds: datadog.json for a spec with a ``datadog:`` block), nothing else;
- ``config``: the tables of nthlayer.toml its output depends on; their content is part of its code stamp, so
  editing one regenerates this kind only, for every service;
- ``shaped``: it generates through generators.shapes (one template per shape, names substituted), so a
  first build's parent can make its templates before doit forks the workers (:func:`prepare_shapes`).

Adding a kind is adding one entry to :data:`SERVICE_KINDS` (and its code to generators/): the service tasks,
the stale-kind detection, ``nthlayer build --check``, ``doit clean`` and the no-op fast path follow.

A *shared kind* (:class:`SharedKind`, in :data:`SHARED_KINDS`) is written once for all services, under
out/<folder>/, by a doit task of its own named after it (alertmanager.yml today): ``inputs(plan, settings)``
is the JSON-able digest of what it reads from the plan (the task is up to date while it and the code stamp
are unchanged) and ``generate(plan, settings)`` makes its files. The correlation reports read the state
database, not the specs: they stay a task of their own (nthlayer/buildsys/correlation.py).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from generators.model import Service

if TYPE_CHECKING:
    from nthlayer.buildsys.plan import BuildPlan

GENERATORS_DIR = Path(__file__).resolve().parent.parent.parent / "generators"

# What every kind depends on: the spec-loading core.
CORE_CODE = ("errors.py", "yamlload.py", "spec.py", "spec_values.py", "schema_messages.py", "model.py", "tiers.py",
             "render.py", "promql.py", "slo_maths.py", "paging.py", "slo_spec.py", "promql_scope.py",
             "schemas/service.schema.json")


@dataclass(frozen=True)
class GenerateContext:
    """What a generator gets besides the service: where its files go and the rules catalog."""
    out_dir: str
    catalog_dir: str
    catalog_cache: str | None = None  # validated catalog files kept between runs (state/catalog)

    def base(self, service: Service) -> str:
        """The service's folder: out/<service>."""
        return f"{self.out_dir}/{service.name}"


@dataclass(frozen=True)
class ServiceKind:
    name: str
    code: tuple[str, ...]
    files: tuple[str, ...]
    generate: Callable[[Service, GenerateContext], dict[str, bytes]]
    files_for_slos: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None
    former: tuple[str, ...] = ()  # earlier layouts' files and folders under out/<service>/, removed
    reads_catalog: bool = False  # regenerated when a catalog file of the service's technologies changes
    optional: bool = False  # written only for the services whose spec summary lists it in ``extras``
    # Distributions whose version is part of the code stamp (an upgrade of the library that writes the
    # files regenerates them, like an edit of the kind's code).
    packages: tuple[str, ...] = ()
    config: tuple[str, ...] = ()  # nthlayer.toml tables it reads (in its stamp)
    shaped: bool = False  # generated through generators.shapes.shaped_files


@dataclass(frozen=True)
class SharedKind:
    name: str
    doc: str  # what `doit list` says of its task
    code: tuple[str, ...]
    folder: str  # under out/; "" for out/ itself
    files: tuple[str, ...]  # under out/<folder>/
    inputs: Callable[[BuildPlan, dict[str, str]], dict[str, Any]]
    generate: Callable[[BuildPlan, dict[str, str]], dict[str, bytes]]
    packages: tuple[str, ...] = ()  # as ServiceKind.packages


def _openslo(service: Service, ctx: GenerateContext) -> dict[str, bytes]:
    from generators import openslo
    from generators.shapes import shaped_files

    return shaped_files("openslo", openslo.openslo_documents, openslo.READS, service, ctx.base(service))


def _slo_rules(service: Service, ctx: GenerateContext) -> dict[str, bytes]:
    from generators import slo_rules
    from generators.shapes import shaped_files

    return shaped_files("slo_rules", slo_rules.slo_rule_documents, slo_rules.READS, service,
                        f"{ctx.base(service)}/prometheus")


def _alerts(service: Service, ctx: GenerateContext) -> dict[str, bytes]:
    from generators import tech_alerts
    from generators.catalog import load_technologies
    from generators.shapes import shaped_files

    catalog = load_technologies(ctx.catalog_dir, service.technology_types, ctx.catalog_cache)
    tech_alerts.check_dependencies(service, catalog)  # the real service's own errors, template or not
    context = tuple((name, id(tech)) for name, tech in sorted(catalog.items()))  # kept alive by the cache
    return shaped_files("alerts", lambda s: tech_alerts.alert_documents(s, catalog), tech_alerts.READS, service,
                        f"{ctx.base(service)}/prometheus", context, lambda s: tech_alerts.check_standin(s, catalog))


def _pagerduty(service: Service, ctx: GenerateContext) -> dict[str, bytes]:
    from generators.pagerduty import pagerduty_files

    return pagerduty_files(service, ctx.base(service))


def _datadog(service: Service, ctx: GenerateContext) -> dict[str, bytes]:
    from generators.datadog import datadog_files

    return datadog_files(service, ctx.base(service))


def _grafana(service: Service, ctx: GenerateContext) -> dict[str, bytes]:
    from generators import grafana, tech_alerts
    from generators.catalog import load_technologies
    from generators.shapes import shaped_files

    catalog = load_technologies(ctx.catalog_dir, service.technology_types, ctx.catalog_cache)
    tech_alerts.check_dependencies(service, catalog)
    out = f"{ctx.base(service)}/grafana"
    if len(service.name) > grafana.UID_MAX:  # its uid is a hash of its name: no stand-in's text can stand for it
        return grafana.dashboard_files(service, catalog, out)
    context = tuple((name, id(tech)) for name, tech in sorted(catalog.items()))  # kept alive by the cache
    return shaped_files("grafana", lambda s: grafana.dashboard_documents(s, catalog), grafana.READS, service, out,
                        context, lambda s: grafana.check_standin(s, catalog), grafana.render_dashboards)
def _kubernetes(service: Service, ctx: GenerateContext) -> dict[str, bytes]:
    """out/<service>/k8s.yaml: PrometheusRule and AlertmanagerConfig (docs/kubernetes.md), the rule files'
    groups and the routing, templated per shape like the rule files themselves."""
    from generators import kubernetes, tech_alerts
    from generators.catalog import load_technologies
    from generators.shapes import shaped_files
    from nthlayer.buildsys.project import kubernetes_defaults

    from generators.paging import uses_pagerduty

    defaults = kubernetes_defaults()
    paged = uses_pagerduty(service)  # in the shape's context: the PagerDuty block itself is not
    catalog = load_technologies(ctx.catalog_dir, service.technology_types, ctx.catalog_cache)
    tech_alerts.check_dependencies(service, catalog)
    context = (defaults, paged, *((name, id(tech)) for name, tech in sorted(catalog.items())))
    return shaped_files("kubernetes", lambda s: kubernetes.kubernetes_documents(s, catalog, defaults, paged),
                        kubernetes.READS, service, ctx.base(service), context,
                        lambda s: tech_alerts.check_standin(s, catalog))


# The promtool tests stay two files: promtool has one `evaluation_interval` per test file, and the burst
# scenario needs rules evaluated every minute (it proves a page within 10 minutes) while the 3-4 hour
# scenarios are evaluated every 5 (generators/slo_tests.py). One file at 1m cost 2.7x the promtool CPU of
# the pair (payment-api: 2.9 s against 1.0 s), in every CI run, to save one file a service in the build.
_SLO_RULE_FILES = ("prometheus/slo.rules.yaml", "prometheus/slo-rules.test.yaml", "prometheus/slo-burst.test.yaml",
                   "prometheus/scrape.yaml")

SERVICE_KINDS: tuple[ServiceKind, ...] = (
    ServiceKind("openslo", ("openslo.py", "shapes.py", "slo_rules.py", "sli_queries.py"),
                ("openslo.yaml",), _openslo, shaped=True,
                former=("openslo",)),  # a file per SLO in openslo/ before issue 22
    ServiceKind("slo_rules", ("slo_rules.py", "slo_tests.py", "slo_test_inputs.py", "sli_queries.py", "shapes.py"),
                _SLO_RULE_FILES, _slo_rules, shaped=True,
                # no SLO rules or tests without SLOs; the scrape config always
                files_for_slos=lambda slos: _SLO_RULE_FILES if slos else ("prometheus/scrape.yaml",)),
    ServiceKind("alerts",
                ("tech_alerts.py", "promql_scope.py", "catalog.py", "schemas/catalog.schema.json", "shapes.py"),
                ("prometheus/alerts.rules.yaml",), _alerts, reads_catalog=True, shaped=True),
    ServiceKind("pagerduty", ("pagerduty.py",), ("pagerduty.json",), _pagerduty),
    # Grafana dashboards (docs/dashboards.md): a row per SLO and per technology dependency (catalog signals).
    ServiceKind("grafana", ("grafana.py", "grafana_signals.py", "grafana_check.py", "tech_alerts.py", "catalog.py",
                            "slo_rules.py", "sli_queries.py", "shapes.py", "schemas/catalog.schema.json"),
                ("grafana/dashboard.json",), _grafana, reads_catalog=True, shaped=True, packages=("grafana-foundation-sdk",)),
    ServiceKind("kubernetes", ("kubernetes.py", "k8s_names.py", "alertmanager.py", "slo_rules.py", "sli_queries.py",
                               "tech_alerts.py", "promql_scope.py", "catalog.py", "schemas/catalog.schema.json",
                               "shapes.py"),
                ("k8s.yaml",), _kubernetes, reads_catalog=True, shaped=True, config=("kubernetes",),
                former=("k8s",)),  # k8s/{prometheusrule,alertmanagerconfig,kustomization}.yaml before issue 22
    ServiceKind("datadog", ("datadog.py", "slo_rules.py"), ("datadog.json",), _datadog, optional=True),
)
KINDS: dict[str, ServiceKind] = {kind.name: kind for kind in SERVICE_KINDS}
PER_SERVICE: tuple[str, ...] = tuple(KINDS)
# every kind but the optional ones, default SLOs
SERVICE_FILES = tuple(name for kind in SERVICE_KINDS if not kind.optional for name in kind.files)


def artifact_files(kind: str, slos: tuple[str, ...] | None, extras: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The files of ``kind`` under out/<service>/, for a spec declaring SLOs ``slos`` (None: the default
    availability and latency SLOs) and turning on the optional kinds ``extras``."""
    entry = KINDS[kind]
    if entry.optional and kind not in extras:
        return ()
    if slos is None or entry.files_for_slos is None:
        return entry.files
    return entry.files_for_slos(slos)


def targets(out_dir: str, service: str, kind: str, slos: tuple[str, ...] | None = None,
            extras: tuple[str, ...] = ()) -> list[str]:
    return [f"{out_dir}/{service}/{name}" for name in artifact_files(kind, slos, extras)]


def generate(kind: str, service: Service, out_dir: str, catalog_dir: str,
             catalog_cache: str | None = None) -> dict[str, bytes]:
    """The files of one kind for one service: {path under out_dir/<service>: bytes}."""
    return KINDS[kind].generate(service, GenerateContext(out_dir, catalog_dir, catalog_cache))


def prepare_shapes(service: Service, catalog_dir: str, catalog_cache: str | None = None) -> int:
    """Count ``service``'s shape of each shaped kind as seen and make the templates that are due, writing
    nothing (generators.shapes.preparing); how many templates that made. A first build's parent does it
    while the Rego engines judge the specs (nthlayer.buildsys.plan); the workers doit forks then inherit
    the templates instead of each making them all."""
    from generators.shapes import preparing, templates_made

    context = GenerateContext("", catalog_dir, catalog_cache)
    before = templates_made()
    with preparing():
        for kind in SERVICE_KINDS:
            if kind.shaped:
                kind.generate(service, context)
    return templates_made() - before


def import_generators() -> None:
    """Import every kind's generator modules (the parent does it once before doit forks its workers)."""
    import importlib

    for kind in (*SERVICE_KINDS, *SHARED_KINDS):
        for name in kind.code:
            if name.endswith(".py"):
                importlib.import_module(f"generators.{name[:-3]}")


# --- shared kinds --------------------------------------------------------------------------------------

def _alertmanager_inputs(plan: BuildPlan, settings: dict[str, str]) -> dict[str, Any]:
    from nthlayer.buildsys.tasks import alertmanager_routes, routes_digest

    # the routing facts of every spec, from the plan
    return {"routes": routes_digest(alertmanager_routes(plan)), "secrets_dir": settings["secrets_dir"]}


ALERTMANAGER_LAYOUT = "alertmanager-layout.json"  # in state/: where each service's text is in alertmanager.yml
_LAYOUT_FORMAT = "1"


def _alertmanager(plan: BuildPlan, settings: dict[str, str]) -> dict[str, bytes]:
    """alertmanager.yml; its receivers read routing keys from ``secrets_dir``/<service>.key.

    A build (``settings["state_dir"]``) keeps the file's layout in state/ and, the next time, copies each
    service whose routing facts did not change from the file as it is (generators.alertmanager.Layout):
    after a one-spec edit at 10,000 services, the task takes 0.13-0.15 s instead of 0.21-0.28 s. The layout is used only for the
    file it was made with (its digest), by the same code and for the same secrets folder."""
    import os

    from generators.alertmanager import alertmanager_text
    from generators.render import write_if_changed
    from nthlayer.buildsys.backend import compact_json
    from nthlayer.buildsys.tasks import alertmanager_routes

    from nthlayer.buildsys.settled import fast_path

    folder, secrets = f"{plan.out_dir}/alertmanager", settings["secrets_dir"]
    state = settings.get("state_dir")
    kept = os.path.join(state, ALERTMANAGER_LAYOUT) if state and fast_path() else None
    key = f"{_LAYOUT_FORMAT}:{code_fingerprint('alertmanager')}:{secrets}"
    previous = _kept_layout(kept, key, f"{folder}/alertmanager.yml") if kept else None
    files, layout = alertmanager_text(alertmanager_routes(plan), folder, secrets, previous)
    if kept is not None:
        if layout is not None:  # before the file: a layout whose file was not written does not match it
            write_if_changed(kept, compact_json({"key": key, "layout": layout}))
        elif os.path.exists(kept):
            os.remove(kept)
    return files


def _kept_layout(path: str, key: str, config: str) -> Any:
    """The bytes of ``config`` and the layout kept with it (None: none kept, made otherwise, or of other
    bytes than the file's now)."""
    from generators.alertmanager import Layout, file_digest
    from nthlayer.buildsys.backend import read_json

    try:
        kept = read_json(path)
        if kept["key"] != key:
            return None
        digest, routes_at, receivers_at, services = kept["layout"]
        with open(config, "rb") as handle:
            data = handle.read()
        if file_digest(data) != digest:
            return None
        layout = Layout(digest, routes_at, receivers_at,
                        [(name, team, tier, paged, route, receivers) for name, team, tier, paged, route, receivers in services])
        return data, layout
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _dashboard_names(plan: BuildPlan) -> list[str]:
    """The services the Grafana overview lists: those alertmanager.yml routes (a broken spec keeps its own)."""
    from nthlayer.buildsys.tasks import alertmanager_routes

    return sorted(routing.name for routing in alertmanager_routes(plan))


def _grafana_overview(plan: BuildPlan, settings: dict[str, str]) -> dict[str, bytes]:
    """The overview of every service and the provisioning file; they name the services, nothing else."""
    import os

    from generators.grafana_overview import overview_files

    folders = sorted({os.path.dirname(entry.path) or "." for entry in plan.entries})
    sources = ", ".join(os.path.join(folder, "*.yaml") for folder in folders) or "no services"
    return overview_files(_dashboard_names(plan), plan.out_dir, sources)
def _kustomization_inputs(plan: BuildPlan, settings: dict[str, str]) -> dict[str, Any]:
    from nthlayer.buildsys.tasks import alertmanager_routes

    # The services whose out/<name>/k8s.yaml exists: the valid ones, and broken specs' last valid names.
    return {"services": sorted(route.name for route in alertmanager_routes(plan))}


def _kustomization(plan: BuildPlan, settings: dict[str, str]) -> dict[str, bytes]:
    """out/kustomization.yaml: every service's k8s.yaml, in name order."""
    from generators.kubernetes import project_kustomization
    from generators.render import yaml_bytes

    names = _kustomization_inputs(plan, settings)["services"]
    document = project_kustomization(names)
    return {f"{plan.out_dir}/kustomization.yaml": yaml_bytes(document, f"{plan.services_dir}/*.yaml")}


SHARED_KINDS: tuple[SharedKind, ...] = (
    SharedKind("alertmanager", "Alertmanager routing tree and receivers for every valid service.",
               ("alertmanager.py",), "alertmanager", ("alertmanager.yml",),
               _alertmanager_inputs, _alertmanager),
    # Rebuilt when a service is added, removed or renamed: the files name the services and nothing else.
    SharedKind("grafana-overview", "Grafana overview of every service and the provisioning file of the dashboards.",
               ("grafana_overview.py", "grafana.py"), "grafana", ("overview.json", "provisioning/dashboards.yaml"),
               lambda plan, settings: {"services": _dashboard_names(plan)}, _grafana_overview,
               packages=("grafana-foundation-sdk",)),
    # At the root of out/ (folder ""): kustomize reads only files inside its kustomization's folder.
    SharedKind("k8s", "The kustomization of every service's Kubernetes manifests (kubectl apply -k out).",
               ("kubernetes.py",), "", ("kustomization.yaml",), _kustomization_inputs, _kustomization),
)
SHARED: dict[str, SharedKind] = {kind.name: kind for kind in SHARED_KINDS}


def shared_targets(kind: str, out_dir: str) -> list[str]:
    entry = SHARED[kind]
    return [shared_folder(kind, out_dir) + "/" + name for name in entry.files]


def shared_folder(kind: str, out_dir: str) -> str:
    """Where a shared kind writes: out/<folder>, or out/ itself."""
    folder = SHARED[kind].folder
    return f"{out_dir}/{folder}" if folder else out_dir


# out/ folders not of one service: the shared kinds', the reports and setup-prometheus's
# (composites: out/composites/<name>/, one task per composite, nthlayer/buildsys/composites.py)
SHARED_DIRS = frozenset({*(kind.folder for kind in SHARED_KINDS if kind.folder), "reports", "prometheus", "composites"})
# Shared folders of earlier layouts, which the prune removes (out/k8s/kustomization.yaml is now out/kustomization.yaml)
FORMER_SHARED_DIRS = frozenset({"k8s"})


# --- code stamps ---------------------------------------------------------------------------------------

_CODE_DEPS: dict[str, tuple[str, ...]] = {}


def code_deps(kind: str) -> list[str]:
    """The generator files of a kind (per-service or shared), as paths."""
    if kind not in _CODE_DEPS:  # built once: dodo asks for every task
        extra = KINDS[kind].code if kind in KINDS else SHARED[kind].code
        _CODE_DEPS[kind] = tuple(str(GENERATORS_DIR / name) for name in (*CORE_CODE, *extra))
    return list(_CODE_DEPS[kind])


_CODE_HASH: dict[str, str] = {}


def code_fingerprint(kind: str) -> str:
    """One hash of the generator code an artifact kind depends on, computed once per run, and of the
    nthlayer.toml tables it reads (``ServiceKind.config``), read each time.

    Tasks depend on it through doit's ``uptodate`` instead of listing each code file as a
    ``file_dep``: one comparison per task instead of a dozen file checks, same rebuild semantics.
    """
    if kind not in _CODE_HASH:
        digest = hashlib.sha256()
        for path in code_deps(kind):
            with open(path, "rb") as handle:
                digest.update(path.rsplit("/", 1)[-1].encode() + b"\0" + handle.read() + b"\0")
        for package in (KINDS[kind] if kind in KINDS else SHARED[kind]).packages:
            import importlib.metadata

            digest.update(f"{package}={importlib.metadata.version(package)}\0".encode())
        _CODE_HASH[kind] = digest.hexdigest()
    tables = KINDS[kind].config if kind in KINDS else ()
    if not tables:
        return _CODE_HASH[kind]
    from nthlayer.buildsys.project import config_table_digest

    # Read each time: the file may change between two builds of one process (the code may not).
    digest = hashlib.sha256(_CODE_HASH[kind].encode())
    for table in tables:
        digest.update(f"\0config:{table}\0{config_table_digest(table)}".encode())
    return digest.hexdigest()
