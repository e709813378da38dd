"""What buckets hold: `fsobj bucket ls [-l]` and `fsobj du`, objects, past versions and
their bytes by bucket and owner, exact as of the last commit (the metadata store counts
each change as it is made). Through a mount they read `user.fsobj.usage`
(fsobj/fuse/xattrs.py), so the mount's rules say who may know; with `--store`, an
unmounted store, through the object service as the user who runs the command."""

from __future__ import annotations

import argparse
import errno
import os
import pwd
import time
from pathlib import Path

from fsobj.cli.main import CommandError, _mountpoint, check_mount, offline
from fsobj.fuse import xattr_names
from fsobj.iam.policy import Identity, Permission
from fsobj.refusals import Refused
from fsobj.service import usage
from fsobj.service.objects import ObjectService
from fsobj.service.usage import Usage

# A bucket's usage by owner; None where the caller may not know it.
Held = list[Usage] | None


def add(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`fsobj du`, on `fsobj`'s parser (`bucket ls -l` is main's bucket command)."""
    du = commands.add_parser(
        "du",
        help="show what buckets hold, by owner: objects, past versions and their bytes",
        parents=[common],
    )
    du.add_argument("path", nargs="?", help="MOUNT (every bucket; administrators) or MOUNT/BUCKET")
    du.add_argument("--store", help="an unmounted store's directory, instead of a mount")
    du.add_argument("--bucket", help="with --store: this bucket alone")
    du.set_defaults(run=cmd_du)


def _parse(text: bytes) -> dict[str, Held]:
    found: dict[str, Held] = {}
    for line in text.decode().splitlines():
        name, *numbers = line.split()
        rows = found.setdefault(name, [])
        assert rows is not None
        rows.append(Usage(0, *(int(n) for n in numbers)))
    return found


def _read(path: Path) -> Held:
    try:
        return _parse(os.getxattr(path, xattr_names.USAGE)).get(path.name, [])
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM):
            return None
        raise CommandError(f"{path}: {error.strerror}") from None


def _offline(store: str, only: str | None) -> dict[str, tuple[float, Held]]:
    """Each bucket the caller sees (or `only`), when it was made and what it holds."""

    async def read(service: ObjectService, who: Identity) -> dict[str, tuple[float, Held]]:
        found: dict[str, tuple[float, Held]] = {}
        for bucket in await service.list_buckets(who):
            if only is not None and bucket.name != only:
                continue
            try:
                entry, _ = await service.bucket(who, bucket.name, Permission.READ)
                held: Held = await usage.of_bucket(service.core, entry)
            except Refused:
                held = None
            found[bucket.name] = (bucket.created_ns / 1e9, held)
        if only is not None and only not in found:
            raise CommandError(f"no bucket {only!r}")
        return found

    return offline(store, read)


def cmd_bucket_ls(args: argparse.Namespace) -> None:
    if args.store:
        rows = _offline(args.store, None)
    else:
        mount = _mountpoint(args)
        if args.long:
            check_mount(args)
        rows = {
            entry.name: (entry.stat().st_ctime, _read(Path(entry.path)) if args.long else [])
            for entry in sorted(os.scandir(mount), key=lambda entry: entry.name)
            if entry.is_dir()
        }
    if args.long:
        print(f"{'created':19} {'objects':>9} {'bytes':>14} {'versions':>9} {'bytes':>14} bucket")
    for name, (created, held) in rows.items():
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
        if not args.long:
            print(when, name)
            continue
        counts = ["-"] * 4 if held is None else Usage.total(held).counts()
        print(f"{when} {counts[0]:>9} {counts[1]:>14} {counts[2]:>9} {counts[3]:>14} {name}")


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def cmd_du(args: argparse.Namespace) -> None:
    if args.store:
        by_bucket = {name: held for name, (_, held) in _offline(args.store, args.bucket).items()}
    else:
        if not args.path:
            raise CommandError("name a mount or a bucket's directory, or a store with --store")
        path = Path(args.path)
        try:
            by_bucket = _parse(os.getxattr(path, xattr_names.USAGE))
        except OSError as error:
            raise CommandError(f"{path}: {error.strerror}") from None
    print(f"{'objects':>9} {'bytes':>14} {'versions':>9} {'bytes':>14} bucket (owner)")
    every: list[Usage] = []
    for name, held in by_bucket.items():
        if held is None:
            print(f"{'-':>9} {'-':>14} {'-':>9} {'-':>14} {name} (not yours to know)")
            continue
        every += held
        for row in held:
            counts = row.counts()
            print(
                f"{counts[0]:>9} {counts[1]:>14} {counts[2]:>9} {counts[3]:>14}"
                f" {name} ({_owner(row.uid)})"
            )
    total = Usage.total(every).counts()
    print(f"{total[0]:>9} {total[1]:>14} {total[2]:>9} {total[3]:>14} total")
