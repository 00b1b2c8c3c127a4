"""Hostile input that used to validate and then break a build or Prometheus (issue 14, items 7, 9, 10, 16)."""
from __future__ import annotations

from pathlib import Path

import pytest

from generators.spec import validate_specs

KNOWN = ["postgres", "redis", "kafka", "mysql"]


def _lines(paths: list[str]) -> list[str]:
    result = validate_specs(paths, KNOWN)
    return [e.format() for e in result.errors]


@pytest.mark.parametrize("argv", [("init", "evil\n", "--team", "t"), ("init", "good", "--team", "t\n")])
def test_init_refuses_names_with_a_trailing_newline(run_cli, tmp_path: Path, argv: tuple[str, ...]) -> None:
    code, _out, err = run_cli(*argv, "--services-dir", str(tmp_path))
    assert code == 1
    assert "is not a valid" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
