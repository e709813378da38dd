"""The S3 front end's commands: `fsobj key` (access keys, through a mount or on an
unmounted store) and `fsobj serve` (S3 from a store that is not mounted)."""

from __future__ import annotations

import argparse
import os
import pwd
from pathlib import Path

from fsobj.cli import daemon
from fsobj.cli.main import (
    S3_ADDRESS,
    CommandError,
    address,
    check_mount,
    offline,
    os_call,
    positive_int,
    serving_options,
)
from fsobj.fuse import xattr_names
from fsobj.iam import policy as iam
from fsobj.metadata.cache import DEFAULT_CAPACITY
from fsobj.service.store import default_store


def add(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The commands, on `fsobj`'s parser."""
    key = commands.add_parser("key", help="S3 access keys: create, ls, rm", parents=[common])
    key_actions = key.add_subparsers(dest="action", required=True)
    for action, summary in (
        ("create", "make a key that acts as a local user; prints its id and secret"),
        ("ls", "list the keys and the uid each acts as"),
        ("rm", "remove a key"),
    ):
        sub = key_actions.add_parser(action, help=summary, parents=[common])
        sub.add_argument("--store", help="an unmounted store's directory, instead of a mount")
        sub.add_argument("mountpoint", nargs="?", help="the mount point (omit with --store)")
        if action == "create":
            who = sub.add_mutually_exclusive_group(required=True)
            who.add_argument("--uid", type=int, help="the uid the key acts as")
            who.add_argument("--user", help="the user name the key acts as")
        if action == "rm":
            sub.add_argument("--key-id", required=True)
        sub.set_defaults(run=cmd_key)

    serve = commands.add_parser("serve", help="serve a store over S3, unmounted", parents=[common])
    serve.add_argument(
        "--store", default=str(default_store()), help="the store's directory (default: %(default)s)"
    )
    serve.add_argument("--s3", default=S3_ADDRESS, metavar="[HOST:]PORT", type=address)
    serve.add_argument("--cache-entries", type=positive_int, default=DEFAULT_CAPACITY)
    serving_options(serve)
    serve.set_defaults(run=cmd_serve)


def _key_uid(args: argparse.Namespace) -> int:
    if args.uid is not None:
        return args.uid
    try:
        return pwd.getpwnam(args.user).pw_uid
    except KeyError:
        raise CommandError(f"no user {args.user!r}") from None


def cmd_key(args: argparse.Namespace) -> None:
    """`key create|ls|rm`: through a mount's user.fsobj.keys, or on an unmounted store."""
    if args.action == "create":
        key_id, secret = iam.new_access_key()
        change = f"create {key_id} {_key_uid(args)} {secret}"
    elif args.action == "rm":
        change = f"rm {args.key_id}"
    else:
        change = ""
    if args.store:
        changed = offline(args.store, lambda service, who: service.core.change_keys(who, change))
        keys = [(k, uid, secret) for k, secret, uid, _ in changed]
    else:
        check_mount(args)
        if change:
            os_call(os.setxattr, args.mountpoint, xattr_names.KEYS, change.encode())
        text = os_call(os.getxattr, args.mountpoint, xattr_names.KEYS).decode()
        keys = [
            (k, int(uid), secret) for k, uid, secret in (line.split() for line in text.splitlines())
        ]
    if args.action == "create":
        print(f"access key id:     {key_id}")
        print(f"secret access key: {secret}")
        print(f"acts as uid:       {_key_uid(args)}")
    elif args.action == "ls":
        for key_id, uid, _ in keys:
            print(f"{key_id} uid:{uid}")
    else:
        print(f"removed access key {args.key_id}")


def cmd_serve(args: argparse.Namespace) -> None:
    store = Path(args.store).expanduser().resolve()
    options = daemon.MountOptions(
        cache_entries=args.cache_entries,
        s3=args.s3,
        upload_days=args.abandon_uploads_after,
        lifecycle_day=args.lifecycle_day,
        metrics=args.metrics,
    )
    daemon.serve_alone(store, options, lambda: print(f"serving S3 at {args.s3}", flush=True))
