"""Importers of SLO definitions from other tools into service specs: one pure module per source format
(``sloth``, ``openslo``), sharing ``common``. The ``nthlayer import`` command does the reading and writing."""
