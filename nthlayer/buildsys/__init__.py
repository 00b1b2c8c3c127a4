"""The doit build (docs/build.md): the plan (plan), the artifact-kind registry (kinds), the tasks (tasks),
the correlation reports' task (correlation, reports), doit's backend and file checker (backend), the
reporter (reporter), the prefetching parallel runner (runner), out/ housekeeping (outputs), project
settings (project), and the packaged build definition (dodo: ``doit -f DODO_FILE``)."""
from __future__ import annotations
