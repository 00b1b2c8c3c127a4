"""NthLayer's build-time layer: pure functions from a validated service spec to artifact documents.

Nothing in this package touches the network, the clock, randomness or DuckDB;
only :mod:`generators.render` writes files.
"""
