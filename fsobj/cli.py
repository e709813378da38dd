"""The `fsobj` command: mount and unmount stores, manage buckets, inspect objects."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pyfuse3
import trio
import trio_asyncio

from . import daemon
from .schema import ROOT_INODE
from .store import StoreError, default_store, open_store

log = logging.getLogger("fsobj")

SYSTEM_FIELDS = ("bucket", "key", "id", "etag", "content-type")


class CommandError(Exception):
    pass


# -- mount and umount -------------------------------------------------------------------


def cmd_mount(args: argparse.Namespace) -> None:
    store = Path(args.store).expanduser().resolve()
    mountpoint = Path(args.mountpoint).resolve()
    if not args.foreground:
        pid = daemon.start_background(store, mountpoint, args.log_level)
        print(f"mounted {store} at {mountpoint} (pid {pid}, log {store / 'fsobj.log'})")
        return

    def ready() -> None:
        if args.ready_fd is not None:
            os.write(args.ready_fd, b"1")
            os.close(args.ready_fd)

    daemon.serve(store, mountpoint, ready)


def cmd_umount(args: argparse.Namespace) -> None:
    daemon.unmount(Path(args.mountpoint))


# -- buckets ----------------------------------------------------------------------------


def _offline(store: str, work: Callable) -> object:
    """Run `work(operations, ctx)` against an unmounted store, through the API service."""

    async def run() -> object:
        ctx = SimpleNamespace(uid=os.getuid(), gid=os.getgid(), pid=os.getpid(), umask=0o022)
        async with trio_asyncio.open_loop(), open_store(Path(store).expanduser()) as opened:
            return await work(opened.operations, ctx)

    try:
        try:
            return trio.run(run)
        except BaseExceptionGroup as group:
            raise daemon.single_error(group) from None
    except pyfuse3.FUSEError as error:
        raise CommandError(os.strerror(error.errno)) from None


def _bucket_path(args: argparse.Namespace) -> Path:
    return Path(args.mountpoint) / args.name


def cmd_bucket_ls(args: argparse.Namespace) -> None:
    if args.store:

        async def listing(ops, ctx):
            return [(b.name, b.created_ns / 1e9) for b in await ops.meta.buckets()]

        rows = _offline(args.store, listing)
    else:
        rows = sorted(
            (entry.name, entry.stat().st_ctime)
            for entry in os.scandir(_mountpoint(args))
            if entry.is_dir()
        )
    for name, created in rows:
        print(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)), name)


# How each bucket change is made: on a mount through the kernel, on an unmounted store
# through the same API service handler the kernel would reach.
BUCKET_CHANGES = {
    "create": ("created", os.mkdir, lambda ops, name, ctx: ops.mkdir(ROOT_INODE, name, 0o755, ctx)),
    "rm": ("removed", os.rmdir, lambda ops, name, ctx: ops.rmdir(ROOT_INODE, name, ctx)),
}


def cmd_bucket_change(args: argparse.Namespace) -> None:
    done, on_mount, on_store = BUCKET_CHANGES[args.action]
    if args.store:
        _offline(args.store, lambda ops, ctx: on_store(ops, args.name.encode(), ctx))
    else:
        _check_mount(args)
        _os_call(on_mount, _bucket_path(args))
    print(f"{done} bucket {args.name}")


def _mountpoint(args: argparse.Namespace) -> Path:
    if not args.mountpoint:
        raise CommandError("name a mount point, or a store with --store DIR")
    return Path(args.mountpoint)


def _check_mount(args: argparse.Namespace) -> None:
    if daemon.mounted_store(_mountpoint(args)) is None:
        raise CommandError(f"{args.mountpoint} is not an fsobj mount")


def _os_call(fn: Callable, *args: object, **kwargs: object) -> object:
    try:
        return fn(*args, **kwargs)
    except OSError as error:
        raise CommandError(f"{error.filename}: {error.strerror}") from None


# -- info -------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> None:
    path = args.path
    st = _os_call(os.lstat, path)
    fields = {}
    for field in SYSTEM_FIELDS:
        try:
            fields[field] = os.getxattr(path, f"user.fsobj.{field}", follow_symlinks=False)
        except OSError as error:
            if error.errno not in (errno.ENODATA, errno.ENOTSUP):
                raise CommandError(f"{path}: {error.strerror}") from None
    if not fields:
        raise CommandError(f"{path} is not on an fsobj mount")
    user = {
        name[len("user.") :]: os.getxattr(path, name, follow_symlinks=False)
        for name in _os_call(os.listxattr, path, follow_symlinks=False)
    }
    rows = [("path", path)]
    rows += [(f, fields[f].decode(errors="replace")) for f in SYSTEM_FIELDS if f in fields]
    rows += [
        ("size", str(st.st_size)),
        ("modified", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime))),
    ]
    rows += [(f"meta {name}", value.decode(errors="replace")) for name, value in user.items()]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label + ':':<{width + 1}} {value}")


# -- the parser -------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fsobj", description=__doc__)
    top.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper
    )
    commands = top.add_subparsers(dest="command", required=True)

    mount = commands.add_parser("mount", help="mount a store at a directory")
    mount.add_argument(
        "--store", default=str(default_store()), help="the store's directory (default: %(default)s)"
    )
    mount.add_argument("--foreground", action="store_true", help="serve in this process")
    mount.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    mount.add_argument("mountpoint")
    mount.set_defaults(run=cmd_mount)

    umount = commands.add_parser("umount", help="unmount, writing everything out")
    umount.add_argument("mountpoint")
    umount.set_defaults(run=cmd_umount)

    bucket = commands.add_parser("bucket", help="list, create and remove buckets")
    actions = bucket.add_subparsers(dest="action", required=True)
    for action, run, takes_name in (
        ("ls", cmd_bucket_ls, False),
        ("create", cmd_bucket_change, True),
        ("rm", cmd_bucket_change, True),
    ):
        sub = actions.add_parser(action)
        sub.add_argument("--store", help="an unmounted store's directory, instead of a mount")
        sub.add_argument(
            "mountpoint",
            nargs="?" if not takes_name else None,
            help="the mount point (omit with --store)",
        )
        if takes_name:
            sub.add_argument("name", nargs="?")
        sub.set_defaults(run=run)

    info = commands.add_parser("info", help="show an object's id, etag, size and metadata")
    info.add_argument("path")
    info.set_defaults(run=cmd_info)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if getattr(args, "action", None) in ("create", "rm"):
        # `bucket create --store DIR NAME`: the one positional is the name
        if args.store and args.name is None:
            args.name, args.mountpoint = args.mountpoint, None
        if args.name is None:
            print(f"fsobj: bucket {args.action} needs a bucket name", file=sys.stderr)
            return 2
    try:
        args.run(args)
    except (CommandError, StoreError, daemon.MountError) as error:
        print(f"fsobj: {error}", file=sys.stderr)
        return 1
    return 0
