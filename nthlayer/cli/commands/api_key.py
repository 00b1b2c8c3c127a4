"""``nthlayer api-key create|list|revoke``: the keys ``nthlayer serve`` accepts, in the state database."""
from __future__ import annotations

import argparse
import json
from functools import partial

from nthlayer.ops import api_keys
from nthlayer.ops.api_keys import SCOPES
from nthlayer.state.db import add_state_argument, connect, format_time


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a key; its text is printed once and never stored",
                                description="create a key; its text is printed once and never stored")
    create.add_argument("--name", required=True, help="who or what uses the key (e.g. ci)")
    create.add_argument("--scope", required=True, metavar="SCOPES",
                        help="comma-separated: " + ", ".join(f"{name} ({what})" for name, what in SCOPES.items()))
    add_state_argument(create)
    listing = actions.add_parser("list", help="list keys: id, name, scopes, created, last used, revoked",
                                 description="list keys: id, name, scopes, created, last used, revoked")
    listing.add_argument("--json", action="store_true", help="JSON output")
    add_state_argument(listing)
    revoke = actions.add_parser("revoke", help="revoke a key by id or name",
                                description="revoke a key by id or name")
    revoke.add_argument("key", metavar="ID", help="the key's id (or its name, when unique)")
    add_state_argument(revoke)


def run(args: argparse.Namespace) -> int:
    opener = partial(connect, args.state)
    if args.action == "create":
        key, text = api_keys.create(opener, args.name, args.scope.split(","))
    elif args.action == "revoke":
        key = api_keys.revoke(opener, args.key)
    else:
        keys = api_keys.keys(opener)
    if args.action == "create":
        print(f"created API key {key.id} ({key.name}; scopes {','.join(key.scopes)}). "
              "It is shown only this once:")
        print(text)
    elif args.action == "revoke":
        print(f"revoked API key {key.id} ({key.name}) at {format_time(key.revoked_at)}")  # type: ignore[arg-type]
    elif args.json:
        print(json.dumps([k.as_dict() for k in keys], indent=2))
    else:
        for k in keys:
            print(f"{k.id}  {k.name}  {','.join(k.scopes)}  created {format_time(k.created_at)}  last used "
                  f"{format_time(k.last_used_at) if k.last_used_at else 'never'}"
                  f"{'  REVOKED ' + format_time(k.revoked_at) if k.revoked_at else ''}")
        if not keys:
            print("no API keys; create one with 'nthlayer api-key create --name NAME --scope SCOPES'")
    return 0
