"""Clients of the systems nthlayer talks to: Prometheus (HTTP API), PagerDuty (REST API), promtool, and
the secret files credentials are read from. No nthlayer logic above them (ops, buildsys) is imported here."""
from __future__ import annotations
