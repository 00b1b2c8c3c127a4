"""Usage errors as a user meets them: exit 64 (never check-deploy's BLOCK code 2), no abbreviated options,
and a secret typed on the command line refused without being echoed."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from nthlayer.cli.commands import COMMANDS
from tests.conftest import ROOT

SECRET = "s3cr3t-KEY-4242"


def nthlayer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nthlayer", *args], capture_output=True, text=True, cwd=ROOT)


def test_a_mistyped_option_of_check_deploy_exits_64_not_block() -> None:
    result = nthlayer("check-deploy", "--servce", "x")
    assert result.returncode == 64
    assert result.stdout == ""
    assert result.stderr.splitlines()[0].startswith("usage: nthlayer check-deploy ")
    assert result.stderr.splitlines()[-1] == "nthlayer check-deploy: error: unrecognized arguments: --servce"


def test_an_unknown_command_exits_64() -> None:
    result = nthlayer("frobnicate")
    assert result.returncode == 64
    assert result.stderr.splitlines()[-1].startswith("nthlayer: error: argument COMMAND: invalid choice: 'frobnicate'")


def test_no_command_prints_help_and_exits_64(run_cli) -> None:
    code, out, err = run_cli()
    assert (code, out) == (64, "")
    assert err.startswith("usage: nthlayer [-h] [--version] COMMAND ...\n")


def test_an_unknown_catalog_action_exits_64(run_cli) -> None:
    code, out, err = run_cli("catalog", "lst")
    assert (code, out) == (64, "")
    assert err.splitlines()[-1] == \
        "nthlayer catalog: error: argument ACTION: invalid choice: 'lst' (choose from 'list', 'show', 'test', 'import')"


def test_a_catalog_action_option_error_exits_64(run_cli) -> None:
    code, _, err = run_cli("catalog", "import", "rules.yaml")
    assert code == 64
    assert err.splitlines()[-1] == "nthlayer catalog import: error: the following arguments are required: --into"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_exits_64_on_an_unknown_option(name: str, run_cli) -> None:
    # build hands its other arguments to doit, so its own parser only knows --services/--out: a
    # missing value is the usage error every command shares.
    args = ("--services",) if name == "build" else ("--no-such-option",)
    code, out, err = run_cli(name, *args)
    assert (code, out) == (64, "")
    assert err.splitlines()[-1].startswith(f"nthlayer {name}: error: ")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name: str, run_cli) -> None:
    code, out, err = run_cli(name, "--help")
    assert (code, err) == (0, "")
    assert out.startswith(f"usage: nthlayer {name} ")


def test_version_exits_0(run_cli) -> None:
    from nthlayer import __version__

    assert run_cli("--version") == (0, f"nthlayer {__version__}\n", "")


def test_options_are_not_abbreviated(run_cli) -> None:
    code, _, err = run_cli("generate-slo", "services/payment-api.yaml", "--dry")
    assert code == 64
    assert err.splitlines()[-1] == "nthlayer generate-slo: error: unrecognized arguments: --dry"


def test_options_that_cannot_go_together_exit_64_with_the_usage(run_cli) -> None:
    code, out, err = run_cli("check-deploy", "--prometheus", "http://127.0.0.1:9")
    assert (code, out) == (64, "")
    lines = err.splitlines()
    assert lines[0].startswith("usage: nthlayer check-deploy ")
    assert lines[-1] == "nthlayer check-deploy: error: give either SPEC or --service NAME"
    code, _, err = run_cli("track-budget", "--all", "--interval", "5m", "--at", "2026-01-01T00:00:00Z")
    assert code == 64
    assert err.splitlines()[-1] == "nthlayer track-budget: error: --interval samples the present; it cannot be " \
                                   "combined with --at"
    code, _, err = run_cli("import-events")
    assert code == 64
    assert err.splitlines()[-1] == "nthlayer import-events: error: nothing to import: give .json/.csv files or " \
                                   "--pagerduty --since T --until T"


API_KEY_REFUSED = ("nthlayer setup-pagerduty: error: unrecognized argument --api-key (its value is not shown); "
                   "a secret is never taken on the command line, where ps and shell history keep it: "
                   "put it in a file and pass --api-key-file FILE")


@pytest.mark.parametrize("args", [
    ("setup-pagerduty", "services/payment-api.yaml", "--api-key", SECRET),
    ("setup-pagerduty", "services/payment-api.yaml", f"--api-key={SECRET}"),
    ("setup-pagerduty", "--api-key", SECRET, "services/payment-api.yaml"),
    ("setup-pagerduty", "--api-key", SECRET),
])
def test_an_api_key_on_the_command_line_is_refused_and_never_echoed(args: tuple[str, ...]) -> None:
    result = nthlayer(*args)
    assert result.returncode == 64
    assert SECRET not in result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == API_KEY_REFUSED


@pytest.mark.parametrize("args, last_line", [
    (("--token", SECRET), "nthlayer: error: unrecognized argument --token (its value is not shown)"),
    (("catalog", "--password", SECRET, "list"),
     "nthlayer catalog: error: unrecognized argument --password (its value is not shown)"),
    (("check-deploy", "--service", "x", "--prometheus-token", SECRET),
     "nthlayer check-deploy: error: unrecognized argument --prometheus-token (its value is not shown)"),
    (("import-events", "--pagerduty", "--routing-key", SECRET),
     "nthlayer import-events: error: unrecognized argument --routing-key (its value is not shown)"),
])
def test_any_secret_looking_option_is_refused_without_its_value(args: tuple[str, ...], last_line: str,
                                                                 run_cli) -> None:
    code, out, err = run_cli(*args)
    assert code == 64
    assert SECRET not in out + err
    assert err.splitlines()[-1] == last_line + \
        "; a secret is never taken on the command line, where ps and shell history keep it; " \
        "see --help for where this command reads its secrets"


def test_a_declared_key_file_option_still_works(run_cli, tmp_path) -> None:
    key_file = tmp_path / "missing.key"
    code, _, err = run_cli("setup-pagerduty", str(ROOT / "services" / "payment-api.yaml"),
                           "--api-key-file", str(key_file))
    assert code == 1
    assert err == f"nthlayer setup-pagerduty: error: cannot read the PagerDuty API key file {key_file}: No such file or directory\n"


def test_one_exit_code_table_in_help_readme_and_code(run_cli) -> None:
    from nthlayer.ops import gate
    from nthlayer.cli.argparsing import EXIT_USAGE
    from nthlayer.cli import EXIT_CODE_MEANINGS, EXIT_CRASH, EXIT_INTERRUPTED, EXIT_USER_ERROR

    codes = [code for code, _ in EXIT_CODE_MEANINGS]
    assert codes == [gate.EXIT_APPROVE, EXIT_USER_ERROR, gate.EXIT_BLOCK, gate.EXIT_UNKNOWN, EXIT_CRASH, EXIT_USAGE,
                     EXIT_INTERRUPTED] == [0, 1, 2, 3, 4, 64, 130]
    section = (ROOT / "README.md").read_text().split("### Exit codes\n")[1].split("\n#")[0]
    assert [int(code) for code in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)] == codes
    _, out, _ = run_cli("--help")
    assert "exit codes:\n" + "".join(f"  {code:<4} {meaning}\n" for code, meaning in EXIT_CODE_MEANINGS) in out


def test_no_parser_anywhere_abbreviates_options() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for path in sorted(ROOT.glob("**/*.py")) if ".venv" not in path.parts
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if "ArgumentParser(" in line and "allow_abbrev=False" not in line
                 and not line.lstrip().startswith(("class ", "#"))]
    assert offenders == []


def test_a_value_that_mentions_a_token_is_not_an_option(run_cli, tmp_path) -> None:
    code, out, err = run_cli("record-incident", "--service", "payment-api", "--started-at", "2026-01-01T00:00:00Z",
                             "--severity", "high", "--title", "-- token expired", "--state", str(tmp_path / "s.duckdb"))
    assert (code, err) == (0, "")
