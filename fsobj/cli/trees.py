"""Commands on whole trees of a mount: `fsobj clone` (a copy by metadata alone) and
`fsobj snapshot` (a bucket's read-only copies), through the mount's control attributes
(`user.fsobj.clone`, `user.fsobj.snapshot`: fsobj/fuse/xattrs.py)."""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

from fsobj.cli import daemon
from fsobj.cli.main import CommandError, os_call, until_the_kernel_knows
from fsobj.fuse import xattr_names
from fsobj.service.gc import progress_bar


def add(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The commands, on `fsobj`'s parser."""
    clone = commands.add_parser(
        "clone",
        help="copy a directory tree, an object or a bucket on a mount, sharing every blob",
        parents=[common],
    )
    clone.add_argument("source")
    clone.add_argument("destination", help="a new name on the same mount")
    clone.set_defaults(run=cmd_clone)

    snapshot = commands.add_parser(
        "snapshot",
        help="take, list or remove a bucket's read-only snapshots (the buckets BUCKET.NAME)",
        parents=[common],
    )
    snapshot.add_argument("action", choices=["create", "ls", "rm"])
    snapshot.add_argument("bucket", help="the bucket's directory on a mount")
    snapshot.add_argument("name", nargs="?")
    snapshot.set_defaults(run=cmd_snapshot)


def cmd_clone(args: argparse.Namespace) -> None:
    """Copy a tree, an object or a bucket on a mount by metadata alone."""
    source, destination = Path(args.source).absolute(), Path(args.destination).absolute()
    mount = daemon.mount_of(source)
    if mount is None:
        raise CommandError(f"{args.source} is not on an fsobj mount")
    if not destination.is_relative_to(mount) or destination == mount:
        raise CommandError(f"{args.destination}: a copy stays on the mount of its source")
    if os.path.lexists(destination):
        raise CommandError(f"{args.destination} exists already")
    relative = source.relative_to(mount).as_posix()
    value = os.fsencode(relative) + b"\0" + os.fsencode(destination.name)
    started = time.monotonic()
    # One transaction copies the tree: on a terminal, a line that counts the seconds it
    # takes (there is no count of entries to show until it is done).
    failures: list[CommandError] = []
    with progress_bar(f"cloning {args.source}", None, "s") as waiting:
        copying = threading.Thread(
            target=_set_clone, args=(destination.parent, value, failures), daemon=True
        )
        copying.start()
        while copying.is_alive():
            copying.join(0.5)
            waiting.update(round(time.monotonic() - started) - waiting.n)
    if failures:
        raise failures[0]
    until_the_kernel_knows(destination, True)
    print(f"cloned {args.source} to {args.destination} in {time.monotonic() - started:.2f} s")


def _set_clone(directory: Path, value: bytes, failures: list[CommandError]) -> None:
    try:
        os_call(os.setxattr, directory, xattr_names.CLONE, value)
    except CommandError as failure:
        failures.append(failure)


def cmd_snapshot(args: argparse.Namespace) -> None:
    """Take, list and remove a bucket's snapshots: read-only buckets `BUCKET.NAME`."""
    bucket = Path(args.bucket).absolute()
    if not os.path.ismount(bucket.parent) or daemon.mounted_store(bucket.parent) is None:
        raise CommandError(f"{args.bucket} is not a bucket of an fsobj mount")
    if args.action == "ls":
        for entry in sorted(os.scandir(bucket.parent), key=lambda e: e.name):
            try:
                origin = os.getxattr(entry.path, xattr_names.SNAPSHOT_OF)
            except OSError:
                continue
            if origin == os.fsencode(bucket.name):
                print(entry.name[len(bucket.name) + 1 :], entry.path)
        return
    if not args.name:
        raise CommandError(f"fsobj snapshot {args.action} BUCKET NAME: name the snapshot")
    snapshot = bucket.parent / f"{bucket.name}.{args.name}"
    started = time.monotonic()
    value = f"{args.action} {args.name}".encode()
    os_call(os.setxattr, bucket, xattr_names.SNAPSHOT, value)
    until_the_kernel_knows(snapshot, args.action == "create")
    done = "took" if args.action == "create" else "removed"
    print(f"{done} snapshot {snapshot} in {time.monotonic() - started:.2f} s")
