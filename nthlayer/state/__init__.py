"""The DuckDB state database (docs/state.md): connection and locking (db), schema migrations (schema),
backup and restore (backup), the deploy and incident records (events), correlation scoring in SQL
(correlation), and PagerDuty's applied objects (pagerduty)."""
from __future__ import annotations
