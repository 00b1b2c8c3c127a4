#!/usr/bin/env bash
# The one test command (README quick start, .ci/run): installs what the tests need, then runs pytest.
#   bash tests/run.sh [pytest args]
# A skipped test fails the run (tests/fail_on_skip.py): the tests that need promtool, amtool or a
# Prometheus server must run in CI, not skip because a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# Debian's prometheus package has both the server (the budget and gate tests run one) and promtool.
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
# The HTML report is tested in a real headless browser (tests/browser.py drives Debian's chromium).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=python3
# PEP 668 (stock Debian 12 and later): pip refuses to install into the system's Python; use a virtual
# environment in .venv (git-ignored) instead, created once. NTHLAYER_TEST_STDLIB is for run.sh's own test.
if "$python" tests/externally_managed.py ${NTHLAYER_TEST_STDLIB:+--stdlib "$NTHLAYER_TEST_STDLIB"}; then
    if [ ! -x .venv/bin/python ]; then
        echo "$python is externally managed (PEP 668): creating a virtual environment in .venv"
        "$python" -m venv .venv
    fi
    python=.venv/bin/python
fi
echo "testing with $("$python" -c 'import sys; print(sys.executable)')"

# Until issue 14 the distribution was called "nthlayer" (PyPI's nthlayer is another project): drop an
# install of this checkout under that name, or two distributions would claim the nthlayer command.
if "$python" -m pip show nthlayer 2>/dev/null | grep -qxF "Editable project location: $PWD"; then
    "$python" -m pip uninstall -y -q nthlayer
fi
"$python" -m pip install -q --disable-pip-version-check -e '.[test]'

set +e
"$python" -m pytest -q -p no:cacheprovider -ra -p tests.fail_on_skip "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: treating that as a failure" >&2
    exit 1
fi
exit "$status"
