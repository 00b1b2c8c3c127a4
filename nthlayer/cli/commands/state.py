"""``nthlayer state backup DIR`` / ``nthlayer state restore DIR``: copy the state database out, and back."""
from __future__ import annotations

import argparse

from nthlayer.state.db import add_state_argument, state_path


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, text: str) -> argparse.ArgumentParser:  # the same line in both helps
        return sub.add_parser(name, help=text, description=text)

    backup = action("backup", "export the state database to a new folder (Parquet + SQL)")
    backup.add_argument("directory", metavar="DIR", help="the backup folder (must not exist, or be empty)")
    add_state_argument(backup)
    restore = action("restore", "replace the state database with a backup "
                                "(the replaced file is kept as <database>.before-restore)")
    restore.add_argument("directory", metavar="DIR", help="a folder made by 'nthlayer state backup'")
    add_state_argument(restore)


def run(args: argparse.Namespace) -> int:
    from nthlayer.state.backup import backup, restore

    database = state_path(args.state)
    if args.action == "backup":
        counts = backup(args.directory, args.state)
        print(f"backed up {database} to {args.directory}: {counts.text()}")
        return 0
    counts, kept = restore(args.directory, args.state)
    print(f"restored {database} from {args.directory}: {counts.text()}")
    if kept:
        print(f"the replaced database is kept as {kept}")
    return 0
