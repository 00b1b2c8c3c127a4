"""A small client of the Kubernetes API: the namespaced custom-object calls the operator makes.

Only what nthlayer needs (get, list by label, create, replace, delete, patch status) over ``requests``,
rather than the ``kubernetes`` package (a large generated client) — kopf, which runs the watch loop,
does not ship one. Credentials come from kopf's own login functions (in-cluster service account, else
kubeconfig), so the operator's watches and its writes authenticate alike.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from generators.errors import UserError


class KubernetesError(Exception):
    """A refused API call: the HTTP status and the API server's ``Status`` reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}: {message}")


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate (a bearer token and/or a client certificate)."""

    server: str
    token: str | None = None
    ca_file: str | None = None  # None: the system's trust store
    client_cert: tuple[str, str] | None = None  # (certificate file, key file)
    insecure: bool = False


def _as_file(data: bytes | str | None, suffix: str) -> str | None:
    """kubeconfig's inline (``*-data``) certificates as a file requests can open, readable by us only."""
    if data is None:
        return None
    raw = data.encode() if isinstance(data, str) else data
    handle = tempfile.NamedTemporaryFile(prefix="nthlayer-k8s-", suffix=suffix, delete=False)  # noqa: SIM115
    with handle:
        os.chmod(handle.name, 0o600)
        handle.write(raw)
    return handle.name


def connection_from_kopf(info: Any) -> Connection:
    """A :class:`Connection` from kopf's ``ConnectionInfo`` (what ``kopf.login_with_service_account`` or
    ``kopf.login_with_kubeconfig`` returns)."""
    cert = info.certificate_path or _as_file(info.certificate_data, ".crt")
    key = info.private_key_path or _as_file(info.private_key_data, ".key")
    return Connection(server=info.server.rstrip("/"), token=info.token,
                      ca_file=info.ca_path or _as_file(info.ca_data, ".crt"),
                      client_cert=(cert, key) if cert and key else None, insecure=bool(info.insecure))


def login() -> Connection:
    """The in-cluster service account, else the kubeconfig ($KUBECONFIG, ~/.kube/config); UserError if
    neither is there (this is what ``nthlayer operator`` says outside a cluster)."""
    import kopf

    settings = kopf.OperatorSettings()
    try:
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    except OSError as exc:
        raise UserError(f"cannot read Kubernetes credentials: {exc.filename}: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - a kubeconfig that does not parse: kopf raises what YAML raised
        raise UserError(f"cannot read the kubeconfig: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if info is None:
        raise UserError("no Kubernetes credentials: not in a cluster (no service account) and no kubeconfig "
                        "($KUBECONFIG or ~/.kube/config)")
    return connection_from_kopf(info)


def plural_of(kind: str) -> str:
    """The resource name of the kinds nthlayer writes (their CRDs name them so)."""
    return kind.lower() + "s" if not kind.endswith("y") else kind[:-1].lower() + "ies"


class KubernetesApi:
    """Namespaced custom objects: ``api_version`` is ``group/version``; objects are plain dicts."""

    def __init__(self, connection: Connection, timeout: float = 10.0) -> None:
        self.connection = connection
        self.timeout = timeout
        self.session = requests.Session()
        if connection.token:
            self.session.headers["Authorization"] = f"Bearer {connection.token}"
        # Given with each request: requests lets $REQUESTS_CA_BUNDLE override a session's own setting.
        self.verify: bool | str = False if connection.insecure else (connection.ca_file or True)
        if connection.client_cert:
            self.session.cert = connection.client_cert

    def _url(self, api_version: str, kind: str, namespace: str, name: str | None = None, sub: str = "") -> str:
        url = f"{self.connection.server}/apis/{api_version}/namespaces/{quote(namespace)}/{plural_of(kind)}"
        if name is not None:
            url += "/" + quote(name)
        return url + (f"/{sub}" if sub else "")

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self.session.request(method, url, timeout=self.timeout, verify=self.verify, **kwargs)
        if response.status_code >= 400:
            try:
                status = response.json()
                reason, message = status.get("reason", ""), status.get("message", "")
            except ValueError:
                reason, message = "", response.text[:200]
            raise KubernetesError(response.status_code, reason or response.reason, message)
        return response.json() if response.content else None

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when there is none."""
        try:
            return self._call("GET", self._url(api_version, kind, namespace, name))
        except KubernetesError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str, labels: dict[str, str] | None = None
             ) -> list[dict[str, Any]]:
        params = {"labelSelector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))} if labels else None
        return list(self._call("GET", self._url(api_version, kind, namespace), params=params).get("items", []))

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return self._call("POST", self._url(body["apiVersion"], body["kind"], meta["namespace"]), json=body)

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT; ``metadata.resourceVersion`` must be the one read (the server refuses a lost update: 409)."""
        meta = body["metadata"]
        return self._call("PUT", self._url(body["apiVersion"], body["kind"], meta["namespace"], meta["name"]),
                          json=body)

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete; False when it was already gone."""
        try:
            self._call("DELETE", self._url(api_version, kind, namespace, name))
        except KubernetesError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch_status(self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
                     ) -> dict[str, Any]:
        """Merge-patch the status subresource."""
        return self._call("PATCH", self._url(api_version, kind, namespace, name, "status"), json={"status": status},
                          headers={"Content-Type": "application/merge-patch+json"})


__all__ = ["Connection", "KubernetesApi", "KubernetesError", "connection_from_kopf", "login", "plural_of"]
