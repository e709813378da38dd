"""Commands on versions, through a mount: `fsobj versioning` (a bucket's state),
`fsobj versions` (a key's versions, from the view `BUCKET/.fsobj-versions/`) and
`fsobj restore` (a past version made current again), by the mount's control attributes
(`user.fsobj.versioning`, `user.fsobj.restore`: fsobj/fuse/xattrs.py)."""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

from fsobj.cli import daemon
from fsobj.cli.main import CommandError, os_call, until_the_kernel_knows
from fsobj.fuse import xattr_names
from fsobj.service.names import VERSIONS_VIEW


def add(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The commands, on `fsobj`'s parser."""
    state = commands.add_parser(
        "versioning",
        help="show or set a bucket's versioning (Enabled keeps every version; Suspended "
        "keeps those it has)",
        parents=[common],
    )
    state.add_argument("bucket", help="the bucket's directory on a mount")
    state.add_argument("state", nargs="?", choices=["Enabled", "Suspended"])
    state.set_defaults(run=cmd_versioning)

    versions = commands.add_parser(
        "versions", help="list the versions of an object on a mount", parents=[common]
    )
    versions.add_argument("path", help="the object's path (it may have been removed)")
    versions.set_defaults(run=cmd_versions)

    restore = commands.add_parser(
        "restore",
        help="make a past version of an object current again (as a new version)",
        parents=[common],
    )
    restore.add_argument("path")
    restore.add_argument("version", help="its id, as `fsobj versions` lists it")
    restore.set_defaults(run=cmd_restore)


def _place(path: str) -> tuple[Path, Path]:
    """The bucket's directory that `path` is in, and the path below it."""
    target = Path(path).absolute()
    mount = daemon.mount_of(target)
    if mount is None or target == mount:
        raise CommandError(f"{path} is not in a bucket of an fsobj mount")
    bucket = mount / target.relative_to(mount).parts[0]
    return bucket, target.relative_to(bucket)


def cmd_versioning(args: argparse.Namespace) -> None:
    bucket, below = _place(args.bucket)
    if below != Path("."):
        raise CommandError(f"{args.bucket} is not a bucket")
    if args.state:
        os_call(os.setxattr, bucket, xattr_names.VERSIONING, args.state.encode())
    try:
        print(os.getxattr(bucket, xattr_names.VERSIONING).decode())
    except OSError:
        print("never enabled")


def cmd_versions(args: argparse.Namespace) -> None:
    """The versions of an object that have content, the newest first: id, size, time."""
    bucket, below = _place(args.path)
    folder = bucket / VERSIONS_VIEW / below
    current = None
    if os.path.lexists(args.path):
        current = os_call(os.getxattr, args.path, xattr_names.VERSION_ID).decode()
    try:
        found = [(entry.stat(), entry.name) for entry in os.scandir(folder) if entry.is_file()]
    except FileNotFoundError:
        raise CommandError(f"{args.path} has no versions") from None
    for status, name in sorted(found, key=lambda pair: -pair[0].st_ctime_ns):
        when = datetime.datetime.fromtimestamp(status.st_mtime).isoformat(" ", "seconds")
        mark = "  (current)" if name == current else ""
        print(f"{name}  {status.st_size:>12}  {when}{mark}")


def cmd_restore(args: argparse.Namespace) -> None:
    target = Path(args.path).absolute()
    _place(args.path)
    value = os.fsencode(target.name) + b"\0" + args.version.encode()
    os_call(os.setxattr, target.parent, xattr_names.RESTORE, value)
    until_the_kernel_knows(target, True)
    print(f"restored {args.path} from version {args.version}")
