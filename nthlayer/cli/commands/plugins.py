"""``nthlayer plugins list [--plugin FILE]``: the plugins a build would load, and where each comes from."""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    text = "each plugin: name, kind, plugin API version, file or distribution"
    listing = sub.add_parser("list", help=text, description=text)
    listing.add_argument("--plugin", action="append", default=[], metavar="FILE",
                         help="a plugin file to load besides nthlayer.toml's and the installed ones (repeatable)")


def run(args: argparse.Namespace) -> int:
    from nthlayer.buildsys.plugins import load_plugins, plugin_files

    plugins = load_plugins(plugin_files(args.plugin))
    rows = [("NAME", "KIND", "API", "FROM")]
    rows += [(p.name, p.kind, str(p.api_version), p.origin) for p in plugins.plugins]
    if len(rows) == 1:
        print("no plugins: name files with --plugin, list them in nthlayer.toml ([build] plugins), or install "
              "a package with an nthlayer.plugins entry point (docs/plugins.md)")
        return 0
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0
