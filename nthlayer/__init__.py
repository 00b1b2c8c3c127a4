"""NthLayer: reliability as code. The CLI and the run-time operations (Prometheus, PagerDuty, DuckDB)."""
__version__ = "0.1.0"
