"""The operations: plain functions that the CLI commands, dodo.py's actions and the API handlers share.

Each takes what it needs (a state connection or opener, services, a Prometheus client) and returns
data; printing, HTTP and exit codes stay with the caller. Arrows point down: cli/api → ops →
state/integrations/generators, never back up.
"""
from __future__ import annotations
