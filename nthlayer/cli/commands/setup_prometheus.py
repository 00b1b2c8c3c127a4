"""``nthlayer setup-prometheus``: a prometheus.yml fragment that loads every generated rule file.

The fragment holds one ``rule_files`` glob per built service,
``<out>/<service>/prometheus/*.rules.yaml`` (resolved against the fragment's
folder). Prometheus allows a wildcard only in a path's last element, so
``out/*/prometheus/...`` is refused and each service gets its own entry: re-run
this command after adding a service. The globs match only ``*.rules.yaml``, so
the promtool test files (``*.test.yaml``) and scrape snippets next to the rules
are never loaded as rules. The ``scrape_configs`` of every service's
``scrape.yaml`` are inlined (Prometheus 2.42 cannot include scrape config
files). The result is checked with ``promtool check config``, which also checks
every rule file the globs match.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from typing import Any

import yaml

from generators.errors import UserError
from generators.render import write_if_changed, yaml_bytes
from generators.schema_messages import plural
from nthlayer.buildsys.project import require_services_dir

RULES_GLOB = "*.rules.yaml"
SCRAPE_GLOB = "*/prometheus/scrape.yaml"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out", metavar="DIR", help="the build output folder (default: out)")
    parser.add_argument("--output", metavar="FILE",
                        help="where to write the fragment (default: OUT/prometheus/prometheus.yml)")
    parser.add_argument("--no-check", action="store_true", help="do not run 'promtool check config'")


def _scrape_configs(out_dir: str) -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = []
    for path in sorted(glob.glob(os.path.join(out_dir, SCRAPE_GLOB))):
        with open(path, encoding="utf-8") as handle:
            document = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        entries = document.get("scrape_configs") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise UserError(f"{path} has no scrape_configs list; rebuild it with 'nthlayer build'")
        configs += entries
    return configs


def prometheus_fragment(out_dir: str, output: str) -> dict[str, Any]:
    """The fragment for the services built into ``out_dir``; paths relative to ``output``'s folder."""
    relative = os.path.relpath(out_dir, os.path.dirname(os.path.abspath(output)))
    services = sorted(name for name in os.listdir(out_dir)
                      if os.path.isdir(os.path.join(out_dir, name, "prometheus")) and not name.startswith("."))
    rule_files = [os.path.normpath(os.path.join(relative, name, "prometheus", RULES_GLOB)).replace(os.sep, "/")
                  for name in services]
    return {"rule_files": rule_files, "scrape_configs": _scrape_configs(out_dir)}


def run(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.out):
        require_services_dir("services", "pass --out with a built output folder")
        raise UserError(f"'{args.out}' is not a folder; run 'nthlayer build' first or pass --out")
    output = args.output or os.path.join(args.out, "prometheus", "prometheus.yml")
    fragment = prometheus_fragment(args.out, output)
    data = yaml_bytes(fragment, f"{args.out}/*/prometheus (nthlayer setup-prometheus)")
    state = "wrote" if write_if_changed(output, data) else "unchanged"
    base = os.path.dirname(os.path.abspath(output))
    rule_files = [p for pattern in fragment["rule_files"] for p in glob.glob(os.path.join(base, pattern))]
    print(f"{state} {output}: {plural(len(rule_files), 'rule file')}, "
          f"{plural(len(fragment['scrape_configs']), 'scrape job')}")
    if args.no_check:
        return 0
    from nthlayer.integrations.promtool import run_tool

    # Not --syntax-only: the full check also loads every rule file the globs match.
    result = run_tool("promtool", ["check", "config", output])
    if not result.ok:
        print(result.output, file=sys.stderr)
        return 1
    print("promtool check config: ok")
    return 0
