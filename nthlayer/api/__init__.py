"""The HTTP API (``nthlayer serve``): HTTP → :mod:`nthlayer.ops` → JSON. See docs/api.md."""
from __future__ import annotations
