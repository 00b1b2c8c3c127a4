"""The import arrows between the rooms of the code point down only (docs/architecture.md):

    cli        argument parsing and commands: parse, call one operation, print, exit code
    api        HTTP handlers (nthlayer serve): parse, call one operation, reply
    ops        the operations both share (record a deploy, the gate, budgets, PagerDuty plan/apply …)
    buildsys   the doit build: plan, artifact kinds, tasks, backend, runner
    integrations  clients of Prometheus, PagerDuty, promtool; secret files
    state      the DuckDB state database
    generators pure: spec → model → artifact; imports nothing from nthlayer

``nthlayer.config`` (the project configuration file) and ``nthlayer.exit_codes`` are the base every room
may import; ``nthlayer`` itself only holds the version. Every import counts, also one inside a function
(they are how start-up stays cheap, not a way around the arrows).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Room → the rooms it may import (besides itself, the base modules and third-party/stdlib).
BASE = {"nthlayer", "nthlayer.config", "nthlayer.exit_codes", "nthlayer.plugin"}
ROOMS = ("nthlayer.cli", "nthlayer.api", "nthlayer.ops", "nthlayer.buildsys", "nthlayer.integrations", "nthlayer.state",
         "generators")
ALLOWED: dict[str, set[str]] = {
    "generators": set(),
    "nthlayer.state": {"generators"},
    "nthlayer.integrations": {"generators", "nthlayer.state"},
    "nthlayer.buildsys": {"generators", "nthlayer.state", "nthlayer.integrations"},
    "nthlayer.ops": {"generators", "nthlayer.state", "nthlayer.integrations", "nthlayer.buildsys"},
    "nthlayer.api": {"generators", "nthlayer.state", "nthlayer.integrations", "nthlayer.buildsys", "nthlayer.ops"},
    "nthlayer.cli": {"generators", "nthlayer.state", "nthlayer.integrations", "nthlayer.buildsys", "nthlayer.ops"},
}
# The arrows that point up, each with its reason. Keep this list short.
EXCEPTIONS = {
    # Routing keys live in secret files (0600, state/secrets or the deployment's folder); the state
    # table of applied PagerDuty objects only references them, and its migration moved them out.
    ("nthlayer.state.pagerduty", "nthlayer.integrations.secrets"),
    # `nthlayer serve` starts the HTTP server: the one place the command line reaches the API (the other
    # way, `--api URL`, is the CLI's own client nthlayer.cli.api_client, which speaks HTTP to a server).
    ("nthlayer.cli.commands.serve", "nthlayer.api.app"),
    # The build's report task writes the reliability report, whose gate column is the deploy gate's own
    # verdict (an operation): the task decides when, the operation makes the pages.
    ("nthlayer.buildsys.report", "nthlayer.ops.report"),
}


def room_of(module: str) -> str | None:
    """The room a module belongs to (None: a base module)."""
    if module in BASE:
        return None
    if module == "nthlayer.__main__":  # `python -m nthlayer`: the command line
        return "nthlayer.cli"
    for room in ROOMS:
        if module == room or module.startswith(room + "."):
            return room
    raise AssertionError(f"{module} is in no room: add it to a room in tests/test_layers.py and docs/architecture.md")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str, text: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement of the file, relative ones resolved."""
    tree = ast.parse(text, str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from nthlayer.ops import gate` imports the module nthlayer.ops.gate
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def owner(imported: str) -> str | None:
    """The nthlayer/generators module an import names (a `from X import name` gives X.name: the longest
    prefix that is a module or package of ours)."""
    parts = imported.split(".")
    if parts[0] not in ("nthlayer", "generators"):
        return None
    for cut in range(len(parts), 0, -1):
        candidate = ROOT.joinpath(*parts[:cut])
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts[:cut])
    return imported


def violations(files: list[Path], texts: dict[Path, str] | None = None) -> list[str]:
    """`file:line: module (room) imports target (room)` for each import against the arrows (``texts``:
    a file's source instead of what is on disk)."""
    problems = []
    for path in files:
        module = module_name(path)
        room = room_of(module)
        text = (texts or {}).get(path)
        for line, imported in imports_of(path, module, path.read_text(encoding="utf-8") if text is None else text):
            target = owner(imported)
            if target is None:
                continue
            target_room = room_of(target)
            if room is None:  # a base module: the standard library and generators only
                if target_room not in (None, "generators"):
                    problems.append(f"{path.relative_to(ROOT)}:{line}: base module {module} imports {target}")
                continue
            if target_room is None or target_room == room or target_room in ALLOWED[room]:
                continue
            if (module, target) in EXCEPTIONS:
                continue
            problems.append(f"{path.relative_to(ROOT)}:{line}: {module} ({room}) imports {target} ({target_room})")
    return list(dict.fromkeys(problems))  # `from X import a, b`: one line


def project_files() -> list[Path]:
    return sorted([*ROOT.joinpath("nthlayer").rglob("*.py"), *ROOT.joinpath("generators").rglob("*.py")])


def test_every_import_points_down() -> None:
    assert violations(project_files()) == []


def test_the_api_and_the_cli_do_not_import_each_other() -> None:
    # Also implied by ALLOWED; said on its own because it is the arrow most easily broken.
    assert "nthlayer.api" not in ALLOWED["nthlayer.cli"] and "nthlayer.cli" not in ALLOWED["nthlayer.api"]


@pytest.mark.parametrize("room, source, expected", [
    ("generators", "from nthlayer.state.db import connect\n",
     "generators.zz_probe (generators) imports nthlayer.state.db"),
    ("nthlayer/state", "def f():\n    from nthlayer.ops import gate\n",
     "nthlayer.state.zz_probe (nthlayer.state) imports nthlayer.ops.gate (nthlayer.ops)"),
    ("nthlayer/buildsys", "import nthlayer.cli\n",
     "nthlayer.buildsys.zz_probe (nthlayer.buildsys) imports nthlayer.cli"),
    ("nthlayer/api", "from nthlayer.cli import api_client\n",
     "nthlayer.api.zz_probe (nthlayer.api) imports nthlayer.cli.api_client (nthlayer.cli)"),
    ("nthlayer/ops", "from ..api import handlers\n",
     "nthlayer.ops.zz_probe (nthlayer.ops) imports nthlayer.api.handlers (nthlayer.api)"),
])
def test_an_upward_import_is_reported(room: str, source: str, expected: str) -> None:
    probe = ROOT / room / "zz_probe.py"  # never written: its source is given
    found = violations([probe], {probe: source})
    assert len(found) == 1 and expected in found[0] and found[0].startswith(f"{room}/zz_probe.py:")


# --- commands and handlers: parse, call one operation, print or reply ------------------------------------
# They reach the state database only through nthlayer.ops: they may hand an operation an opener
# (`partial(connect, path)`, or a writer made of one) and use the state's argument and time helpers and its record types, but they
# open no connection, run no SQL and call no state function that writes.
STATE_NAMES_FOR_ENTRY_POINTS = {
    "nthlayer.state.db": {"add_state_argument", "connect", "writer", "state_path", "format_time", "parse_time",
                          "instant", "utc_now", "crash_log_path"},
    "nthlayer.state.events": {"Deploy", "Incident", "SEVERITIES"},
    # `nthlayer state backup|restore` copies the database file itself: the state room's own operation.
    "nthlayer.state.backup": {"backup", "restore"},
}
CONNECTION_CALLS = {"connect", "connection", "opener", "transaction"}
SQL_CALLS = {"execute", "executemany", "sql", "fetchall", "fetchone"}


def entry_points() -> list[Path]:
    """The command modules and the API's handlers."""
    return sorted([*ROOT.joinpath("nthlayer", "cli", "commands").glob("*.py"),
                   *ROOT.joinpath("nthlayer", "api").glob("handlers*.py")])


def _called(node: ast.expr) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return None


def state_handling(path: Path, text: str | None = None) -> list[str]:
    """`file:line: what` for each place an entry point handles the state database itself."""
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text, str(path))
    where = path.relative_to(ROOT)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nthlayer.state"):
            allowed = STATE_NAMES_FOR_ENTRY_POINTS.get(node.module, set())
            found += [f"{where}:{node.lineno}: imports {node.module}.{a.name}" for a in node.names
                      if a.name not in allowed]
        elif isinstance(node, ast.Import):
            found += [f"{where}:{node.lineno}: imports {a.name}" for a in node.names
                      if a.name.startswith("nthlayer.state")]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            found += [f"{where}:{node.lineno}: opens a connection ({_called(item.context_expr)})"
                      for item in node.items if _called(item.context_expr) in CONNECTION_CALLS]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
            found.append(f"{where}:{node.lineno}: runs SQL (.{node.func.attr})")
    return found


def test_commands_and_handlers_leave_the_state_to_the_operations() -> None:
    assert [line for path in entry_points() for line in state_handling(path)] == []


@pytest.mark.parametrize("source, expected", [
    ("from nthlayer.state.db import connect\ndef run(a):\n    with connect(a.state) as con:\n        pass\n",
     "nthlayer/cli/commands/zz_probe.py:3: opens a connection (connect)"),
    ("def run(call):\n    with call.server.store.connection() as con:\n        pass\n",
     "nthlayer/cli/commands/zz_probe.py:2: opens a connection (connection)"),
    ("def run(con):\n    return con.execute('SELECT 1')\n", "nthlayer/cli/commands/zz_probe.py:2: runs SQL (.execute)"),
    ("from nthlayer.state.db import insert_audit\n",
     "nthlayer/cli/commands/zz_probe.py:1: imports nthlayer.state.db.insert_audit"),
    ("def run():\n    from nthlayer.state.history import record_history\n",
     "nthlayer/cli/commands/zz_probe.py:2: imports nthlayer.state.history.record_history"),
])
def test_state_handling_in_an_entry_point_is_reported(source: str, expected: str) -> None:
    probe = ROOT / "nthlayer" / "cli" / "commands" / "zz_probe.py"  # never written: its source is given
    assert state_handling(probe, source) == [expected]
