"""Exit 0 when this interpreter is externally managed (PEP 668: pip refuses to install into it), else 1.

tests/run.sh asks this of python3 and, on such a system (stock Debian 12 and later), runs the tests in a
virtual environment in .venv instead. PEP 668: the marker is a file EXTERNALLY-MANAGED in the standard
library's folder, and it does not apply inside a virtual environment. ``--stdlib DIR`` looks in DIR instead
(for the tests of this script).
"""
from __future__ import annotations

import argparse
import os
import sys
import sysconfig


def externally_managed(stdlib: str, in_virtual_environment: bool) -> bool:
    """Whether pip would refuse to install into an interpreter with this standard library folder."""
    return not in_virtual_environment and os.path.isfile(os.path.join(stdlib, "EXTERNALLY-MANAGED"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--stdlib", default=sysconfig.get_path("stdlib"), help="the standard library folder")
    args = parser.parse_args()
    return 0 if externally_managed(args.stdlib, sys.prefix != sys.base_prefix) else 1


if __name__ == "__main__":
    sys.exit(main())
