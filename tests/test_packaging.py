"""What a user installing NthLayer gets: a distribution name of our own (PyPI's `nthlayer` is another
project), the Apache-2.0 license it claims, with its text and a NOTICE, and install snippets that work."""
from __future__ import annotations

import hashlib
import importlib.metadata
import re
import tomllib

import yaml

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
README = (ROOT / "README.md").read_text()
# /usr/share/common-licenses/Apache-2.0 on Debian, https://www.apache.org/licenses/LICENSE-2.0.txt
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_the_distribution_has_its_own_name_and_keeps_the_command() -> None:
    assert PYPROJECT["name"] == "nthlayer-slo"
    assert PYPROJECT["scripts"] == {"nthlayer": "nthlayer.cli:main"}
    installed = importlib.metadata.distribution("nthlayer-slo")
    assert [e.value for e in installed.entry_points if e.group == "console_scripts"] == ["nthlayer.cli:main"]


def test_license_is_apache_2_0_with_its_text_and_a_notice() -> None:
    assert PYPROJECT["license"] == "Apache-2.0"
    assert PYPROJECT["license-files"] == ["LICENSE", "NOTICE"]
    assert hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2_0_SHA256
    notice = (ROOT / "NOTICE").read_text()
    assert "https://github.com/samber/awesome-prometheus-alerts" in notice and "MIT License" in notice
    metadata = importlib.metadata.metadata("nthlayer-slo")
    assert metadata["License-Expression"] == "Apache-2.0"
    assert sorted(metadata.get_all("License-File") or []) == ["LICENSE", "NOTICE"]
    assert not [c for c in PYPROJECT["classifiers"] if c.startswith("License ::")]  # the expression says it
    assert set(PYPROJECT["urls"]) == {"Homepage", "Documentation", "Source", "Issues"}


def test_readme_never_installs_the_unrelated_pypi_package() -> None:
    commands = re.findall(r"^\s*(?:- )?(pip install .*)$", README, re.MULTILINE)  # the command lines
    assert commands, "the README shows how to install"
    for command in commands:
        assert not re.match(r"pip install (-e )?nthlayer\b", command), command
    assert '- pip install "git+https://<your-git-host>/<your-org>/nthlayer.git@v0.1.0"' in README


def test_readme_pre_commit_example_is_a_marked_placeholder_for_this_repository() -> None:
    block = README.split("**Pre-commit hook**")[1].split("```yaml\n")[1].split("```")[0]
    repo = yaml.safe_load(block)["repos"][0]
    assert repo["repo"] == "https://<your-git-host>/<your-org>/nthlayer"
    assert "# placeholder" in block.splitlines()[1]
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert [h["id"] for h in repo["hooks"]] == [hooks[0]["id"]]


def test_every_python_package_of_the_checkout_is_in_the_wheel_list() -> None:
    # The wheel test (tests/test_wheel.py) finds a forgotten package only through a command that imports
    # it; this names it at once (generators.importers was left out of the list once).
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for top in ("generators", "nthlayer") for init in (ROOT / top).rglob("__init__.py")}
    assert found - listed == set()
