"""``nthlayer init NAME --team T --template X``: start a new service spec from a template.

The spec names who is paged (``--escalation-email`` / ``--schedule-id``, or asked for on a terminal);
without either it is written unrouted, and init says so as loudly as validate does.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile

from generators.errors import SpecErrors, UserError
from nthlayer.ops.templates import pagerduty_section, render, templates

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
TEAM = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="service name: lowercase letters, digits and hyphens, at most 63 characters")
    parser.add_argument("--team", required=True, help="owning team")
    parser.add_argument("--template", default="standard-api", help="template name (see list-templates)")
    parser.add_argument("--services-dir", default="services", help="where to write NAME.yaml (default: services/)")
    parser.add_argument("--escalation-email", action="append", default=[], metavar="EMAIL", dest="escalation_emails",
                        help="page this PagerDuty user (repeatable; pagerduty.escalation_emails)")
    parser.add_argument("--schedule-id", action="append", default=[], metavar="ID", dest="schedule_ids",
                        help="page this PagerDuty on-call schedule (repeatable; pagerduty.schedule_ids)")


def _ask_who_is_paged(name: str) -> tuple[list[str], list[str]]:
    """On a terminal, when no target was given: ask for e-mail addresses and schedule ids."""
    if not sys.stdin.isatty():
        return [], []
    try:
        answer = input(f"Who is paged for {name}? PagerDuty e-mail addresses and/or schedule ids, "
                       "comma-separated (empty: nobody for now): ")
    except EOFError:
        return [], []
    items = [item.strip() for item in answer.split(",") if item.strip()]
    return [i for i in items if "@" in i], [i for i in items if "@" not in i]


def _next_step(path: str) -> str:
    # `doit` needs this folder's dodo.py; without one, `nthlayer build` brings the shipped dodo.py.
    build = "doit" if os.path.isfile("dodo.py") else "nthlayer build"
    return f"edit it, then run 'nthlayer validate {path}' and '{build}'"


def run(args: argparse.Namespace) -> int:
    if not NAME.fullmatch(args.name):
        raise UserError(f"'{args.name}' is not a valid service name: use lowercase letters, digits and hyphens, "
                        "start and end with a letter or digit, at most 63 characters")
    if not TEAM.fullmatch(args.team):
        raise UserError(f"'{args.team}' is not a valid team name: use lowercase letters, digits, '-' and '_'")
    found = templates()
    if args.template not in found:
        raise UserError(f"unknown template '{args.template}'; choose one of: {', '.join(found)}")
    path = os.path.join(args.services_dir, f"{args.name}.yaml")
    if os.path.exists(path):
        raise UserError(f"{path} already exists; not overwriting it")
    emails, schedules = args.escalation_emails, args.schedule_ids
    if not emails and not schedules:
        emails, schedules = _ask_who_is_paged(args.name)
    text = render(found[args.template], args.name, args.team, pagerduty_section(emails, schedules))
    from generators.spec import load_spec, spec_warnings

    try:
        spec = load_spec(path, text.encode("utf-8"))
    except SpecErrors as exc:  # the name or a target given is not valid in a spec (e.g. a reserved name)
        for line in exc.lines():
            print(line, file=sys.stderr)
        print(f"nthlayer init: error: {path} not written", file=sys.stderr)
        return 1
    os.makedirs(args.services_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{args.name}.", suffix=".tmp", dir=args.services_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.link(tmp, path)  # fails if someone created the file meanwhile: never overwrite
    except FileExistsError:
        raise UserError(f"{path} already exists; not overwriting it") from None
    finally:
        os.unlink(tmp)
    print(f"wrote {path} (template {args.template}); {_next_step(path)}")
    for warning in spec_warnings(spec):
        print(warning.format(), file=sys.stderr)
    if not emails and not schedules:
        print(f"nthlayer init: {path} pages nobody yet: rerun with --escalation-email or --schedule-id, "
              "or fill in its pagerduty section", file=sys.stderr)
    return 0
