"""Service specs as files in the services folder: ``POST/PUT/DELETE /api/v1/services`` (building them,
``POST /api/v1/slos/generate``, is nthlayer.ops.build).

The files stay the source of truth (git and doit read them): a write is validated first, with the
same errors ``nthlayer validate`` prints, then replaces the file atomically. Each version of a file
has an entity tag (a hash of its bytes); a writer that names the tag it read (If-Match) is refused
when someone changed the file since.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import Any

from generators.errors import SpecError, SpecErrors, UserError
from generators.model import Service
from generators.render import to_yaml, write_if_changed
from generators.spec import expand_paths, load_spec
from generators.yamlload import MAX_FILE_BYTES, Located, read_bounded

class NotFound(UserError):
    """No spec declares that service."""


class Conflict(UserError):
    """The write would clash with what is there: a service that already exists, a file changed since read."""


class PreconditionFailed(Conflict):
    """If-Match named a version of the file that is no longer the current one."""


class PreconditionRequired(UserError):
    """An update or delete without If-Match: it could silently undo someone else's edit."""


@dataclass(frozen=True)
class SpecFile:
    name: str
    path: str
    raw: bytes

    @property
    def etag(self) -> str:
        return f'"{hashlib.sha256(self.raw).hexdigest()[:32]}"'


# One writer at a time per process: compare-then-replace must not interleave between two requests.
_WRITE_LOCK = threading.Lock()


def _declared_name(path: str) -> str | None:
    """The ``service:`` of a spec file, read leniently (a broken file simply has no name)."""
    try:
        located = load_spec_data(path)
    except SpecErrors:
        return None
    name = located.get("service") if isinstance(located, dict) else None
    return name if isinstance(name, str) else None


def load_spec_data(path: str, raw: bytes | None = None) -> Any:
    from generators.yamlload import load_yaml

    return load_yaml(path, raw).data


def spec_index(services_dir: str) -> dict[str, str]:
    """Service name → spec file, for every spec in the folder that declares a name."""
    index: dict[str, str] = {}
    for path in expand_paths([services_dir]) if os.path.isdir(services_dir) else []:
        name = _declared_name(path)
        if name is not None and name not in index:
            index[name] = path
    return index


def read_service(services_dir: str, name: str) -> SpecFile:
    path = spec_index(services_dir).get(name)
    if path is None:
        raise NotFound(f"no spec for service '{name}' in {services_dir}")
    return SpecFile(name, path, read_bounded(path))


def load_service(services_dir: str, name: str) -> Service:
    """The validated model of one service (its spec's errors raise SpecErrors)."""
    spec = read_service(services_dir, name)
    return load_spec(spec.path, spec.raw).service


def spec_bytes(document: Any) -> bytes:
    """The spec file a JSON document becomes."""
    return to_yaml(document).encode()


def check_json_spec(located: Located, raw: bytes) -> None:
    """Validate a spec sent as JSON (``located``) through the YAML file it becomes (``raw``), the same
    checks as every spec file; each error is then placed at its pointer in the JSON that was sent."""
    try:
        load_spec(located.path, raw)
    except SpecErrors as exc:
        from generators.yamlload import load_yaml

        written = load_yaml(located.path, raw)

        def moved(e: SpecError) -> SpecError:
            # An error placed at a key (unknown key) in the YAML is placed at that key in the JSON.
            line, col = located.where(e.pointer, key=written.key_marks.get(e.pointer) == (e.line, e.col))
            return e._replace(line=line, col=col)

        raise SpecErrors([moved(e) for e in exc.errors]) from None


def _checked(path: str, raw: bytes, name: str | None) -> Service:
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(f"spec is {len(raw)} bytes; at most {MAX_FILE_BYTES} are accepted")
    service = load_spec(path, raw).service  # SpecErrors: the validator's lines, for this file
    if name is not None and service.name != name:
        raise UserError(f"the spec declares service '{service.name}', the URL names '{name}'")
    return service


def create_service(services_dir: str, raw: bytes) -> SpecFile:
    """Validate and write a new spec as services/<name>.yaml; 409 (Conflict) when the service exists."""
    with _WRITE_LOCK:
        # Validated under its eventual name, so error lines name the file it would become.
        probe = load_spec_data(os.path.join(services_dir, "new.yaml"), raw)
        declared = probe.get("service") if isinstance(probe, dict) else None
        path = os.path.join(services_dir, f"{declared}.yaml") if isinstance(declared, str) else \
            os.path.join(services_dir, "new.yaml")
        service = _checked(path, raw, None)
        if service.name in spec_index(services_dir) or os.path.exists(path):
            raise Conflict(f"service '{service.name}' already exists; update it with PUT")
        os.makedirs(services_dir, exist_ok=True)
        write_if_changed(path, raw)
        return SpecFile(service.name, path, raw)


def _current(services_dir: str, name: str, if_match: str | None) -> SpecFile:
    current = read_service(services_dir, name)
    if if_match is None:
        raise PreconditionRequired("send If-Match with the ETag of the version you read (GET), so a "
                                   "concurrent edit is not silently overwritten")
    if if_match.strip() not in ("*", current.etag):
        raise PreconditionFailed(f"service '{name}' changed since it was read (ETag {current.etag}); "
                                 "read it again and reapply your change")
    return current


def update_service(services_dir: str, name: str, raw: bytes, if_match: str | None) -> SpecFile:
    """Validate and replace a service's spec, if it is still the version ``if_match`` names."""
    with _WRITE_LOCK:
        current = _current(services_dir, name, if_match)
        _checked(current.path, raw, name)
        write_if_changed(current.path, raw)
        return SpecFile(name, current.path, raw)


def delete_service(services_dir: str, name: str, if_match: str | None) -> SpecFile:
    """Remove a service's spec (the next build prunes its outputs)."""
    with _WRITE_LOCK:
        current = _current(services_dir, name, if_match)
        os.remove(current.path)
        return current


def slo_documents(service: Service) -> list[dict[str, Any]]:
    """A service's SLOs as the API shows them: objective, window, budget, latency threshold."""
    return [{"slo": slo.name, "objective": str(slo.objective), "window": slo.window,
             "budget_minutes": format(slo.budget_minutes.normalize(), "f"),
             "threshold_ms": None if slo.threshold_ms is None else str(slo.threshold_ms)}
            for slo in service.slos]
