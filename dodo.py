"""doit build: every services/*.yaml → out/<service>/… (run `doit`, `doit list`, `doit clean`).

The tasks are defined once, in the package (nthlayer/buildsys/dodo.py), so that `nthlayer build` runs the same
build from an installed wheel. Variables: `doit services=DIR out=DIR catalog=DIR secrets_dir=DIR strict=1`.
"""
from nthlayer.buildsys.dodo import namespace

globals().update(namespace())
