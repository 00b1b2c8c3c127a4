"""``nthlayer generate-alerts SPEC``: a service's technology alerts from the rules catalog."""
from __future__ import annotations

import argparse
import os
import re
import sys

from generators.catalog import default_catalog_dir, load_technologies
from generators.errors import UserError
from generators.render import write_all
from generators.spec import load_spec
from generators.tech_alerts import alert_counts, service_alert_files, summary_lines
from nthlayer.cli.argparsing import UsageError
from nthlayer.state.db import add_state_argument, record_audit

_URL = re.compile(r"^https?://\S+$")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the service spec (services/NAME.yaml)")
    parser.add_argument("--runbook-url", metavar="URL",
                        help="runbook base URL; each alert links to URL/<AlertName> "
                             "(default: the dependency's runbook_url, else the service's)")
    parser.add_argument("--output", metavar="DIR",
                        help="where to write alerts.rules.yaml (default: out/SERVICE/prometheus); '-': stdout")
    parser.add_argument("--catalog", metavar="DIR", help="catalog folder (default: $NTHLAYER_CATALOG or rules_catalog/)")
    parser.add_argument("--check", action="store_true", help="run 'promtool check rules' on the written file")
    add_state_argument(parser)


def run(args: argparse.Namespace) -> int:
    to_stdout = args.output == "-"  # as generate-slo: not a folder named '-'
    if to_stdout and args.check:
        raise UsageError("--check runs promtool on the written file; with --output - nothing is written")
    if args.runbook_url is not None and not _URL.fullmatch(args.runbook_url):
        raise UserError(f"--runbook-url '{args.runbook_url}' is not an http(s) URL")
    service = load_spec(args.spec).service
    catalog_dir = args.catalog or default_catalog_dir()
    catalog = load_technologies(catalog_dir, service.technology_types)
    out_dir = args.output or os.path.join("out", service.name, "prometheus")
    files = service_alert_files(service, catalog, "." if to_stdout else out_dir, args.runbook_url)
    if to_stdout:
        sys.stdout.write(b"".join(files.values()).decode("utf-8"))  # one file: alerts.rules.yaml
        return 0
    changed = set(write_all(files))
    for line in summary_lines(service, catalog):
        print(line)
    total = sum(alert_counts(service, catalog).values())
    for path in sorted(files):
        state = "wrote" if path in changed else "unchanged"
        print(f"{state} {path} ({total} {'alert' if total == 1 else 'alerts'})")
    if not service.technologies:
        print(f"{service.name} declares no technology dependencies (dependencies.technologies)")
    record_audit("generate-alerts", service.name, "written",
                 {"files": sorted(files), "changed": sorted(changed), "alerts": total}, path=args.state)
    if args.check:
        from nthlayer.integrations.promtool import check_rules

        result = check_rules(sorted(files))
        if not result.ok:
            print(result.output, file=sys.stderr)
            return 1
        print("promtool check rules: ok")
    return 0
