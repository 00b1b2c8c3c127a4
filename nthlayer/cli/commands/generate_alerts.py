"""``nthlayer generate-alerts SPEC``: a service's technology alerts from the rules catalog."""
from __future__ import annotations

import argparse
import re
import sys

from generators.errors import UserError
from generators.tech_alerts import summary_lines
from nthlayer.cli.argparsing import UsageError
from nthlayer.ops.generate import alert_files, write_generated
from nthlayer.state.db import add_state_argument

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
    alerts = alert_files(args.spec, args.catalog, "." if to_stdout else args.output, args.runbook_url)
    service, files, total = alerts.service, alerts.files, alerts.total
    if to_stdout:
        sys.stdout.write(b"".join(files.values()).decode("utf-8"))  # one file: alerts.rules.yaml
        return 0

    def report(changed: set[str]) -> None:
        for line in summary_lines(service, alerts.catalog):
            print(line)
        for path in sorted(files):
            state = "wrote" if path in changed else "unchanged"
            print(f"{state} {path} ({total} {'alert' if total == 1 else 'alerts'})")
        if not service.technologies:
            print(f"{service.name} declares no technology dependencies (dependencies.technologies)")

    write_generated("generate-alerts", service.name, files, {"alerts": total}, args.state, report)
    if args.check:
        from nthlayer.integrations.promtool import check_rules

        result = check_rules(sorted(files))
        if not result.ok:
            print(result.output, file=sys.stderr)
            return 1
        print("promtool check rules: ok")
    return 0
