"""Kubernetes' own rules for names, namespaces, label keys and label values (apimachinery's validation).

Pure. Used to derive object names from service names, to check the ``kubernetes`` settings of a spec and
of nthlayer.toml, and (generators/crd_schema.py) to check a manifest's ``metadata`` the way the API
server does before any CRD schema is applied.
"""
from __future__ import annotations

import hashlib
import re

# Labels nthlayer sets on every object it generates (generators/kubernetes.py); a spec or nthlayer.toml
# may not set them: the operator and `kubectl get -l` find nthlayer's objects by them.
MANAGED_BY = "app.kubernetes.io/managed-by"
OWN_PREFIX = "nthlayer.dev/"

LABEL_MAX = 63  # a DNS-1123 label, a label name, a label value
SUBDOMAIN_MAX = 253

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = re.compile(_LABEL + r"\Z")
DNS1123_SUBDOMAIN = re.compile(_LABEL + r"(\." + _LABEL + r")*\Z")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")


def dns1123_label_problem(text: str) -> str | None:
    """Why ``text`` is not a DNS-1123 label (a namespace, most object names), or None."""
    if not text:
        return "must not be empty"
    if len(text) > LABEL_MAX:
        return f"must be at most {LABEL_MAX} characters"
    if not DNS1123_LABEL.match(text):
        return "must be lowercase letters, digits and '-', starting and ending with a letter or digit"
    return None


def dns1123_subdomain_problem(text: str) -> str | None:
    """Why ``text`` is not a DNS-1123 subdomain (the name of a custom resource), or None."""
    if not text:
        return "must not be empty"
    if len(text) > SUBDOMAIN_MAX:
        return f"must be at most {SUBDOMAIN_MAX} characters"
    if not DNS1123_SUBDOMAIN.match(text):
        return "must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
    return None


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes label (or annotation) key — ``[prefix/]name`` — or None."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "its prefix before '/' must not be empty"
        problem = dns1123_subdomain_problem(prefix)
        if problem:
            return f"its prefix {prefix!r} {problem}"
    if not name:
        return "its name must not be empty"
    if len(name) > LABEL_MAX:
        return f"its name must be at most {LABEL_MAX} characters"
    if not _QUALIFIED_NAME.match(name):
        return "its name must be letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a Kubernetes label value, or None (the empty value is valid)."""
    if len(value) > LABEL_MAX:
        return f"must be at most {LABEL_MAX} characters"
    if not _LABEL_VALUE.match(value):
        return "must be letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    return None


def reserved_label(key: str) -> bool:
    """Whether label ``key`` is one nthlayer sets itself."""
    return key == MANAGED_BY or key.startswith(OWN_PREFIX)


def object_name(text: str, limit: int = LABEL_MAX) -> str:
    """A valid DNS-1123 label made from ``text``: itself when it is one; else lowercased, every other
    character a '-', ends trimmed, and cut to ``limit`` with a hash of the whole text appended, so two
    long names sharing a prefix stay apart. Service names already are labels (the spec's schema), so a
    build keeps them; the operator meets names it did not choose."""
    if len(text) <= limit and DNS1123_LABEL.match(text):
        return text
    # Changed, so a hash of the original keeps apart texts that clean alike (A_b and a-b, long prefixes).
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower())[:limit - 9].strip("-")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned or 'x'}-{digest}"


__all__ = ["dns1123_label_problem", "dns1123_subdomain_problem", "label_key_problem", "label_value_problem",
           "object_name", "reserved_label", "LABEL_MAX", "MANAGED_BY", "OWN_PREFIX"]
