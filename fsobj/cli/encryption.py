"""`fsobj encryption`: the store keys that seal blobs (encryption at rest), listed and
rotated in the store's key file, mounted or not (a daemon reads the file again when it
changes)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fsobj.cli.main import CommandError
from fsobj.service.encryption import store_keys
from fsobj.service.store import default_store


def add(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The command, on `fsobj`'s parser."""
    top = commands.add_parser(
        "encryption", help="the store keys that seal blobs: ls, rotate", parents=[common]
    )
    actions = top.add_subparsers(dest="action", required=True)
    for action, summary in (
        ("ls", "list the store keys, oldest first; the last one seals new blobs"),
        ("rotate", "add a new store key for the blobs to come (old ones stay for theirs)"),
    ):
        sub = actions.add_parser(action, help=summary, parents=[common])
        sub.add_argument(
            "--store",
            default=str(default_store()),
            help="the store's directory (default: %(default)s)",
        )
        sub.set_defaults(run=cmd_encryption)


def cmd_encryption(args: argparse.Namespace) -> None:
    store = Path(args.store).expanduser()
    if not (store / "blobs").is_dir():
        raise CommandError(f"{store} is not a store")
    keys = store_keys(store)
    if args.action == "rotate":
        print(f"new store key {keys.rotate()}; blobs sealed before keep theirs")
        return
    ids = keys.ids()
    for index, key_id in enumerate(ids):
        print(f"{key_id}{'  (seals new blobs)' if index == len(ids) - 1 else ''}")
