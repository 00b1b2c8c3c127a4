"""``nthlayer operator``: keep each ServiceReliability's PrometheusRule and AlertmanagerConfig (docs/kubernetes.md).

kopf runs the watch loop (reconnects, retries with back-off, finalizers, signals); its handlers are thin:
each calls :func:`nthlayer.ops.reconcile.reconcile` or :func:`~nthlayer.ops.reconcile.cleanup`, the tested
functions, with this process's API client and project defaults.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from generators.errors import UserError

EXAMPLES = """\
examples:
  nthlayer operator --print-crd > crd.yaml       the ServiceReliability CRD (deploy/crd.yaml)
  nthlayer operator --namespace payments         watch one namespace (repeat --namespace for more)
  nthlayer operator --all-namespaces             watch every namespace (needs a ClusterRole)
credentials: the pod's service account in a cluster, else $KUBECONFIG or ~/.kube/config.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--namespace", action="append", metavar="NS", default=None,
                       help="a namespace to watch (repeatable)")
    where.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    where.add_argument("--print-crd", action="store_true",
                       help="print the ServiceReliability CustomResourceDefinition and exit")
    parser.add_argument("--catalog", metavar="DIR", default=None,
                        help="rules catalog folder (default: $NTHLAYER_CATALOG, ./rules_catalog, the installed one)")
    parser.add_argument("--resync", type=int, default=300, metavar="SECONDS",
                        help="reconcile every resource this often, undoing hand edits of what it owns (default 300)")


def make_registry(api: Any, defaults: Any, catalog_dir: str, resync: int) -> Any:
    """A kopf registry whose handlers reconcile (on resume, create, spec change and every ``resync`` seconds)
    and clean up (on delete) through ``api``."""
    import kopf

    from generators.k8s_crd import GROUP, PLURAL, VERSION
    from nthlayer.ops.reconcile import cleanup, reconcile

    registry = kopf.OperatorRegistry()

    def login_handler(**_: Any) -> Any:  # kopf's watches use the credentials the writes use
        connection = api.connection
        cert, key = connection.client_cert or (None, None)
        return kopf.ConnectionInfo(server=connection.server, token=connection.token, ca_path=connection.ca_file,
                                   certificate_path=cert, private_key_path=key, insecure=connection.insecure)

    def reconcile_handler(body: Any, logger: Any, **_: Any) -> None:
        outcome = reconcile(api, _plain(body), defaults, catalog_dir)
        for change in outcome.changes:
            logger.info(change)

    def delete_handler(body: Any, logger: Any, **_: Any) -> None:
        for ref in cleanup(api, _plain(body)):
            logger.info(f"deleted {ref}")

    resource = (GROUP, VERSION, PLURAL)
    kopf.on.login(registry=registry)(login_handler)
    kopf.on.resume(*resource, registry=registry)(reconcile_handler)
    kopf.on.create(*resource, registry=registry)(reconcile_handler)
    kopf.on.update(*resource, field="spec", registry=registry)(reconcile_handler)
    kopf.timer(*resource, interval=resync, idle=resync, registry=registry)(reconcile_handler)
    kopf.on.delete(*resource, registry=registry)(delete_handler)
    return registry


def _plain(body: Any) -> dict[str, Any]:
    """kopf's read-only body view as the plain dict the reconcile functions take."""
    import copy

    return copy.deepcopy(dict(body))


def operator_settings() -> Any:
    """kopf's bookkeeping in annotations: the CRD's status schema holds the conditions alone, and the API
    server would prune anything else kopf wrote there."""
    import kopf

    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="nthlayer.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="nthlayer.dev")
    settings.persistence.finalizer = "nthlayer.dev/owned-objects"
    settings.posting.level = 30  # warnings and errors become Kubernetes events, not every info line
    return settings


def run(args: argparse.Namespace) -> int:
    if args.print_crd:
        from generators.k8s_crd import crd_yaml

        sys.stdout.buffer.write(crd_yaml())
        return 0
    if not args.namespace and not args.all_namespaces:
        raise UserError("name the namespaces to watch (--namespace NS, repeatable) or --all-namespaces")
    if args.resync < 10:
        raise UserError(f"--resync {args.resync}: at least 10 seconds")
    try:
        import kopf
    except ImportError:
        raise UserError("the operator needs kopf: pip install 'nthlayer-slo[k8s]'") from None
    from generators.catalog import default_catalog_dir
    from nthlayer.integrations.kubernetes import KubernetesApi, login
    from nthlayer.buildsys.project import kubernetes_defaults

    defaults = kubernetes_defaults()  # a broken [kubernetes] table stops it here, with its line
    api = KubernetesApi(login())
    catalog = args.catalog or default_catalog_dir()
    registry = make_registry(api, defaults, catalog, args.resync)
    kopf.run(registry=registry, settings=operator_settings(), standalone=True,
             clusterwide=bool(args.all_namespaces), namespaces=args.namespace or ())
    return 0
