"""The project configuration file (nthlayer.toml): parsing, error lines, unknown tables."""
from __future__ import annotations

import pytest

from nthlayer.config import ConfigError, load_config, locate


def write(tmp_path, text: str) -> str:
    path = tmp_path / "nthlayer.toml"
    path.write_text(text)
    return str(path)


def test_missing_file_is_an_empty_configuration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NTHLAYER_CONFIG", raising=False)
    config = load_config()
    assert config.tables == {} and config.section("build") == {}


def test_missing_file_named_by_the_environment_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NTHLAYER_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert str(caught.value) == f"{tmp_path / 'nope.toml'}:1:1: no such file (named by $NTHLAYER_CONFIG)"


def test_tables_are_read(tmp_path):
    path = write(tmp_path, '[kubernetes]\nnamespace = "monitoring"\nlabels = { release = "prom" }\n')
    config = load_config(path)
    assert config.section("kubernetes") == {"namespace": "monitoring", "labels": {"release": "prom"}}
    assert config.section("policy") == {}


def test_bad_toml_gives_its_line_and_column(tmp_path):
    path = write(tmp_path, '[build]\nplugins = ["a.py",\n  oops]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:3:3: ")


def test_unknown_table_names_the_close_one(tmp_path):
    path = write(tmp_path, '[build]\nplugins = []\n\n[kubernets]\nnamespace = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:4:1: /kubernets: unknown table [kubernets]: did you mean [kubernetes]?"


def test_a_value_error_points_at_its_key(tmp_path):
    path = write(tmp_path, '[build]\nx = 1\n\n[kubernetes]\n  namespace = 7\n')
    config = load_config(path)
    assert str(config.error("/kubernetes/namespace", "must be a string")) == (
        f"{path}:5:3: /kubernetes/namespace: must be a string")


def test_locate_falls_back_to_the_table_then_the_top():
    text = "[policy]\npaths = []\n"
    assert locate(text, "/policy/missing") == (1, 1)
    assert locate(text, "/build/plugins") == (1, 1)
    assert locate(text, "/policy/paths") == (2, 1)
