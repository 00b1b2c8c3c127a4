"""``nthlayer init NAME --team T --template X``: start a new service spec from a template."""
from __future__ import annotations

import argparse
import os
import re
import tempfile

from generators.errors import SpecErrors, UserError
from nthlayer.templates import render, templates

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
TEAM = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="service name: lowercase letters, digits and hyphens, at most 63 characters")
    parser.add_argument("--team", required=True, help="owning team")
    parser.add_argument("--template", default="standard-api", help="template name (see list-templates)")
    parser.add_argument("--services-dir", default="services", help="where to write NAME.yaml (default: services/)")


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
    text = render(found[args.template], args.name, args.team)
    from generators.spec import load_spec

    try:
        load_spec(path, text.encode("utf-8"))
    except SpecErrors as exc:  # a broken template is our bug, not the user's
        raise RuntimeError(f"template {args.template} renders an invalid spec: {exc}") from None
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
    print(f"wrote {path} (template {args.template}); edit it, then run 'nthlayer validate {path}' and 'doit'")
    return 0
