"""``nthlayer config set|get|list|unset``: references to credentials in nthlayer.toml's [credentials] table
(docs/secrets.md). A secret itself is never stored, printed or taken as a literal."""
from __future__ import annotations

import argparse

from nthlayer.cli.argparsing import UsageError
from nthlayer.ops.credential_refs import KNOWN, configured, reference_for, set_reference, status, unset_reference


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    names = ", ".join(KNOWN)
    put = actions.add_parser("set", help="store where a credential comes from",
                             description="store a reference to a credential in nthlayer.toml [credentials]; "
                                         f"credentials: {names}")
    put.add_argument("key", metavar="KEY", help="the credential, e.g. pagerduty.api_key")
    put.add_argument("value", metavar="VALUE", nargs="?",
                     help="a literal value: only for a credential that is not a secret (prometheus.username)")
    put.add_argument("--from-vault", metavar="vault://MOUNT/PATH[#field]", dest="vault",
                     help="HashiCorp Vault KV v2 secret (read at use time; ?version=N pins a version)")
    put.add_argument("--from-env", metavar="VAR", dest="env", help="an environment variable holding it")
    put.add_argument("--from-file", metavar="PATH", dest="file", help="a file holding it")
    get = actions.add_parser("get", help="show a credential's reference and whether it resolves (never its value)",
                             description="show a credential's reference, the source in use, and whether it "
                                         "resolves (Vault is read; the value is never shown); exit 1 if it does not")
    get.add_argument("key", metavar="KEY", help="the credential, e.g. argocd.token")
    listing = actions.add_parser("list", help="every credential: its reference and the source in use",
                                 description="every credential nthlayer knows: its reference and the source in use")
    listing.add_argument("--check", action="store_true", help="resolve each one (reads Vault), like 'get'")
    unset = actions.add_parser("unset", help="remove a credential's reference",
                               description="remove a credential's reference from nthlayer.toml")
    unset.add_argument("key", metavar="KEY", help="the credential, e.g. argocd.token")


def run(args: argparse.Namespace) -> int:
    if args.action == "set":
        if args.value is None and not (args.vault or args.env or args.file):
            raise UsageError("give VALUE, --from-vault, --from-env or --from-file")
        change = set_reference(args.key, reference_for(args.key, value=args.value, vault=args.vault, env=args.env,
                                                       file=args.file))
        print(f"{args.key} = {change.reference}" + ("" if change.changed else " (unchanged)") + f" in {change.path}")
        return 0
    if args.action == "unset":
        change = unset_reference(args.key)
        print(f"removed {args.key} from {change.path}" if change.changed else f"{args.key} is not set in {change.path}")
        return 0
    if args.action == "get":
        shown = status(args.key)
        print("\n".join(shown.lines()))
        return 0 if shown.resolves else 1
    refs = configured()
    failed = False
    for name in KNOWN:
        shown = status(name, check=args.check)
        if shown.in_use is None and name not in refs:
            continue
        print("\n".join(shown.lines()))
        failed = failed or (args.check and not shown.resolves)
    if not refs:
        print("no credential references in the project file ('nthlayer config set KEY --from-vault …')")
    return 1 if failed else 0
