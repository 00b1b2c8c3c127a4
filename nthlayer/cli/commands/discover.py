"""``nthlayer discover``: propose dependencies.upstream and dependencies.technologies from Prometheus."""
from __future__ import annotations

import argparse
import re
import sys
from decimal import Decimal, InvalidOperation

from generators.catalog import default_catalog_dir
from generators.discovery import Edge
from generators.errors import SpecErrors, UserError
from nthlayer.cli.argparsing import UsageError, add_service_arguments
from nthlayer.integrations import prometheus as prom
from nthlayer.ops.discover import Discovery, discover, write_changes
from nthlayer.state.db import format_time, parse_time, utc_now

_SINCE = re.compile(r"^([1-9][0-9]*)([dw])$")


def configure(parser: argparse.ArgumentParser) -> None:
    add_service_arguments(parser)
    prom.add_arguments(parser)
    parser.add_argument("--since", metavar="DURATION", default="7d",
                        help="look at the last DURATION, whole days or weeks (e.g. 14d, 2w; default: 7d)")
    parser.add_argument("--at", metavar="TIME", help="the span ends at this instant (RFC 3339 or unix seconds; "
                                                     "default: now)")
    parser.add_argument("--min-rps", metavar="RATE", default="0",
                        help="propose only calls averaging at least RATE requests per second over the span "
                             "(default: 0, any traffic)")
    parser.add_argument("--prune", action="store_true",
                        help="also remove declared dependencies discovery did not see (only where Prometheus "
                             "could have shown them: docs/discovery.md)")
    parser.add_argument("--write", action="store_true",
                        help="edit the specs in place (comments and layout kept) after validating the result")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if any spec would change (for CI)")


def _days(text: str) -> int:
    match = _SINCE.fullmatch(text)
    if not match:
        raise UserError(f"--since {text!r} is not a number of days or weeks such as 7d or 2w")
    return int(match.group(1)) * (7 if match.group(2) == "w" else 1)


def _rate(text: str) -> Decimal:
    try:
        rate = Decimal(text)
    except InvalidOperation:
        rate = Decimal("NaN")
    if not rate.is_finite() or rate < 0:
        raise UserError(f"--min-rps {text!r} is not a rate of at least 0 requests per second")
    return rate


def _rps(rate: Decimal) -> str:
    return f"{rate:.3f} req/s"


def _edge_line(edge: Edge, verdict: str) -> str:
    return (f"#   {edge.client} -> {edge.server}: {_rps(edge.rps)}, seen {edge.days_seen}/{edge.days} days, "
            f"{edge.confidence} confidence ({', '.join(edge.sources)}){verdict}")


def report(found: Discovery) -> list[str]:
    """The summary printed after the diffs: every edge and instance with its confidence and verdict."""
    lines = [f"# discovered over {found.days}d ending {format_time(found.at)}: service graph from "
             f"{', '.join(found.sources) or 'no source'}; technologies seen: {', '.join(found.probed) or 'none'}"]
    by_service = {c.proposal.service: c.proposal for c in found.changes}
    for edge in found.edges:
        proposal = by_service[edge.client]
        added = any(e.server == edge.server for e in proposal.add_upstream)
        lines.append(_edge_line(edge, ": add" if added else ": declared"))
    for use in found.uses:
        proposal = by_service[use.service]
        added = any(u == use for u in proposal.add_technologies)
        lines.append(f"#   {use.service} uses {use.technology} {use.name} ({use.instance_label}={use.instance}): "
                     f"seen {use.days_seen}/{use.days} days, {use.confidence} confidence: "
                     f"{'add' if added else 'declared'}")
    for change in found.changes:
        for name in change.proposal.remove_upstream:
            lines.append(f"#   {change.proposal.service} -> {name}: not seen: remove (--prune)")
        why = "hand-written; --prune removes it" if change.proposal.caller_seen else \
            "no service-graph source shows it calling anything: never pruned"
        lines.extend(f"#   {change.proposal.service} -> {name}: not seen: kept ({why})" for name in change.proposal.kept)
        for _index, name in change.proposal.remove_technologies:
            lines.append(f"#   {change.proposal.service} uses {name}: not seen: remove (--prune)")
    for edge in found.below_floor:
        lines.append(_edge_line(edge, f": below --min-rps {found.min_rps}, ignored"))
    if found.unknown:
        lines.append("# unknown services (no spec; not written):")
        lines.extend(_edge_line(edge, "") for edge in found.unknown)
    changed = found.changed
    lines.append(f"# {len(changed)} of {len(found.changes)} spec{'s' if len(found.changes) != 1 else ''} "
                 f"would change" if changed else f"# no change: the specs agree with what Prometheus sees")
    return lines


def run(args: argparse.Namespace) -> int:
    if args.write and args.check:
        raise UsageError("--check writes nothing; it cannot be combined with --write")
    days, min_rps = _days(args.since), _rate(args.min_rps)
    at = parse_time(args.at, "--at") if args.at else utc_now().replace(microsecond=0)
    client = prom.client_from_args(args)
    found = discover(client, args.services, None if args.all else args.service, days=days, at=at,
                     min_rps=min_rps, prune=args.prune, catalog_dir=default_catalog_dir())
    for change in found.changed:
        sys.stdout.write(change.diff())
    print("\n".join(report(found)))
    if args.write and found.changed:
        try:
            written = write_changes(found.changed)
        except SpecErrors as exc:
            print("nthlayer discover: error: the edited specs would not validate, so nothing was written "
                  "(lines and columns are those of the proposed text above):", file=sys.stderr)
            for line in exc.lines():
                print(line, file=sys.stderr)
            return 1
        print(f"# wrote {', '.join(written)}")
    return 1 if args.check and found.changed else 0
