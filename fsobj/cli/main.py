"""The `fsobj` command: mount and unmount stores, manage buckets, inspect objects."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

from fsobj.cli import daemon
from fsobj.datastore.cache import DEFAULT_CACHE_BYTES
from fsobj.fuse.errnos import errno_of
from fsobj.iam import policy as iam
from fsobj.iam.policy import Identity
from fsobj.metadata.cache import DEFAULT_CAPACITY
from fsobj.refusals import Refused
from fsobj.service import backends, fsck, lifecycle
from fsobj.service.objects import ObjectService
from fsobj.service.store import Store, StoreError, default_store, run_offline
from fsobj.service.uploads import ABANDONED_UPLOAD

T = TypeVar("T")
log = logging.getLogger("fsobj")

SYSTEM_FIELDS = ("bucket", "key", "id", "etag", "content-type")


class CommandError(Exception):
    pass


# -- mount and umount -------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    seconds = float(text)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text}: not a positive number of seconds")
    return seconds


def positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{text}: not a positive whole number")
    return number


def cmd_mount(args: argparse.Namespace) -> None:
    store = Path(args.store).expanduser().resolve()
    mountpoint = Path(args.mountpoint).resolve()
    if not args.foreground:
        pid = daemon.start_background(store, mountpoint, args.log_level, _mount_options(args))
        print(f"mounted {store} at {mountpoint} (pid {pid}, log {store / 'fsobj.log'})")
        return

    def ready() -> None:
        if args.ready_fd is not None:
            os.write(args.ready_fd, b"1")
            os.close(args.ready_fd)

    daemon.serve(store, mountpoint, ready, _mount_options(args))


def cmd_format(args: argparse.Namespace) -> None:
    store = Path(args.store).expanduser().resolve()
    if args.join:
        if args.meta is None or args.data or args.endpoint or args.region:
            raise CommandError("--join takes --meta alone: the database says where blobs live")
        joined = backends.join_store(store, args.meta, args.cache_size)
        print(f"{store} joins the shared store: {joined.describe()}")
        return
    if args.meta is None and args.data is None:
        raise CommandError(
            "format needs --meta, --data or both (the default store needs no format)"
        )
    chosen = backends.Backends(args.meta, args.data, args.endpoint, args.region, args.cache_size)
    backends.format_store(store, chosen)
    print(f"formatted {store}: {chosen.describe()}")


def _size(text: str) -> int:
    try:
        return backends.size_of(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _mount_options(args: argparse.Namespace) -> daemon.MountOptions:
    return daemon.MountOptions(
        args.private,
        args.commit_interval,
        args.cache_entries,
        args.s3,
        args.abandon_uploads_after,
        args.metadata_timeout,
        args.session_timeout,
        args.lifecycle_day,
        args.metrics,
    )


S3_ADDRESS = "127.0.0.1:9000"


def address(text: str) -> str:
    """`[HOST:]PORT`, checked, spelled out in full."""
    from fsobj.s3.server import parse_address

    try:
        host, port = parse_address(text)
    except ValueError as bad:
        raise argparse.ArgumentTypeError(str(bad)) from None
    return f"{host}:{port}"


def cmd_umount(args: argparse.Namespace) -> None:
    daemon.unmount(Path(args.mountpoint))


# -- buckets ----------------------------------------------------------------------------


def offline(store: str, work: Callable[[ObjectService, Identity], Awaitable[T]]) -> T:
    """Run `work(service, caller)` against an unmounted store, through the object service
    (the rules a mount or S3 would apply), as the user who runs the command."""

    async def run(opened: Store) -> T:
        caller = SimpleNamespace(uid=os.getuid(), gid=os.getgid(), pid=os.getpid())
        return await work(ObjectService(opened.service), opened.service.iam.identify(caller))

    try:
        return run_offline(Path(store).expanduser(), run)
    except Refused as refusal:
        raise CommandError(f"{os.strerror(errno_of(refusal))}: {refusal.detail}") from None


def _bucket_path(args: argparse.Namespace) -> Path:
    return Path(args.mountpoint) / args.name


# How each bucket change is made: on a mount through the kernel, on an unmounted store
# through the object service.
BUCKET_CHANGES = {
    "create": ("created", os.mkdir, ObjectService.create_bucket),
    "rm": ("removed", os.rmdir, ObjectService.delete_bucket),
}


def cmd_bucket_change(args: argparse.Namespace) -> None:
    done, on_mount, on_store = BUCKET_CHANGES[args.action]
    if args.store:
        offline(args.store, lambda service, who: on_store(service, who, args.name))
    else:
        check_mount(args)
        os_call(on_mount, _bucket_path(args))
    print(f"{done} bucket {args.name}")


def _mountpoint(args: argparse.Namespace) -> Path:
    if not args.mountpoint:
        raise CommandError("name a mount point, or a store with --store DIR")
    return Path(args.mountpoint)


def check_mount(args: argparse.Namespace) -> None:
    if daemon.mounted_store(_mountpoint(args)) is None:
        raise CommandError(f"{args.mountpoint} is not an fsobj mount")


def os_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except OSError as error:
        raise CommandError(f"{error.filename}: {error.strerror}") from None


def until_the_kernel_knows(path: Path, present: bool, seconds: float = 30.0) -> None:
    """Wait until `path` exists (or, not `present`, is gone) as the mount shows it: a
    command that makes or removes a name through a control attribute returns before the
    daemon has dropped what the kernel remembered of that name (it holds the
    directory's lock until the command is answered)."""
    deadline = time.monotonic() + seconds
    while os.path.lexists(path) != present:
        if time.monotonic() > deadline:
            raise CommandError(f"{path}: the kernel did not learn of it")
        time.sleep(0.01)


# -- store maintenance ----------------------------------------------------------------


def cmd_fsck(args: argparse.Namespace) -> int:
    return fsck.run(Path(args.store).expanduser(), args.repair, args.verify, print)


def cmd_gc(args: argparse.Namespace) -> None:
    if args.store:

        async def collect(store: Store) -> object:
            await lifecycle.apply(ObjectService(store.service))
            return await store.service.collect_garbage()

        print(run_offline(Path(args.store).expanduser(), collect))
    else:
        check_mount(args)
        print(os_call(os.getxattr, args.mountpoint, "user.fsobj.gc").decode())


def cmd_stats(args: argparse.Namespace) -> None:
    """What the daemon holds and has served; on a terminal (or with --count) a live view,
    a line a second, as `juicefs stats` shows one."""
    check_mount(args)
    if args.count is None and not sys.stdout.isatty():
        print(os_call(os.getxattr, args.mountpoint, "user.fsobj.stats").decode(), end="")
        return
    from fsobj.cli.live_stats import watch

    watch(args.mountpoint, args.every, args.count)


# -- info -------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> None:
    path = args.path
    st = os_call(os.lstat, path)
    fields = {}
    for field in SYSTEM_FIELDS:
        try:
            fields[field] = os.getxattr(path, f"user.fsobj.{field}", follow_symlinks=False)
        except OSError as error:
            if error.errno not in (errno.ENODATA, errno.ENOTSUP):
                raise CommandError(f"{path}: {error.strerror}") from None
    if not fields:
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            # The kernel keeps user.* attributes to files and directories.
            raise CommandError(f"{path}: only objects and directories have fsobj metadata")
        raise CommandError(f"{path} is not on an fsobj mount")
    user = {
        name[len("user.") :]: os.getxattr(path, name, follow_symlinks=False)
        for name in os_call(os.listxattr, path, follow_symlinks=False)
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


LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def serving_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--abandon-uploads-after",
        type=_positive_seconds,
        default=ABANDONED_UPLOAD / 86400,
        metavar="DAYS",
        help="gc removes multipart uploads begun longer ago (default: %(default)s)",
    )
    command.add_argument(
        "--lifecycle-day",
        type=_positive_seconds,
        default=lifecycle.DAY,
        metavar="SECONDS",
        help="how long a day of lifecycle rules lasts (for tests; default: %(default)s)",
    )
    command.add_argument(
        "--metrics",
        type=address,
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (docs/operations.md)",
    )


def cmd_completion(args: argparse.Namespace) -> None:
    """`fsobj completion bash > /etc/bash_completion.d/fsobj`: generated from this
    parser by shtab, so it never lags behind the commands."""
    import shtab

    print(shtab.complete(parser(), shell=args.shell))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fsobj")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fsobj", description=__doc__)
    top.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, type=str.upper)
    top.add_argument("--version", action="version", version=f"fsobj {_version()}")
    # Every command takes --log-level too, after its name (`fsobj mount --log-level DEBUG`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level", default=argparse.SUPPRESS, choices=LOG_LEVELS, type=str.upper
    )
    commands = top.add_subparsers(dest="command", required=True)

    mount = commands.add_parser("mount", help="mount a store at a directory", parents=[common])
    mount.add_argument(
        "--store", default=str(default_store()), help="the store's directory (default: %(default)s)"
    )
    mount.add_argument("--foreground", action="store_true", help="serve in this process")
    mount.add_argument(
        "--private",
        action="store_true",
        help="for the mounting user alone: lets the kernel cache entries and attributes",
    )
    mount.add_argument(
        "--commit-interval",
        type=_positive_seconds,
        default=daemon.DURABILITY_SECONDS,
        metavar="SECONDS",
        help="how often everything closed so far is made durable (default: %(default)s)",
    )
    mount.add_argument(
        "--cache-entries",
        type=positive_int,
        default=DEFAULT_CAPACITY,
        metavar="N",
        help="entries of the namespace the daemon keeps in memory (default: %(default)s)",
    )
    mount.add_argument(
        "--s3",
        type=address,
        metavar="[HOST:]PORT",
        help=f"also serve S3 at this address (e.g. {S3_ADDRESS})",
    )
    serving_options(mount)
    mount.add_argument(
        "--metadata-timeout", type=_positive_seconds, default=1.0, metavar="SECONDS",
        help="a shared store: how long other hosts' changes may take to show"
        " (default: %(default)s)",
    )  # fmt: skip
    mount.add_argument(
        "--session-timeout", type=_positive_seconds, default=60.0, metavar="SECONDS",
        help="a shared store: how long after this process stops answering its pins"
        " lapse (default: %(default)s)",
    )  # fmt: skip
    mount.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    mount.add_argument("mountpoint")
    mount.set_defaults(run=cmd_mount)

    form = commands.add_parser(
        "format", help="make a store whose metadata or blobs live elsewhere", parents=[common]
    )
    form.add_argument(
        "--store", default=str(default_store()), help="the store's directory (default: %(default)s)"
    )
    form.add_argument(
        "--meta", metavar="postgresql://USER@HOST[:PORT]/DB", help="the metadata's database"
    )
    form.add_argument("--data", metavar="s3://BUCKET[/PREFIX]", help="where the blobs live")
    form.add_argument("--endpoint", metavar="URL", help="the S3 service (default: AWS)")
    form.add_argument("--region")
    form.add_argument(
        "--cache-size", type=_size, default=DEFAULT_CACHE_BYTES, metavar="SIZE",
        help="the local cache of blobs, such as 10G (default: %(default)s bytes)",
    )  # fmt: skip
    form.add_argument(
        "--join", action="store_true",
        help="this host joins the shared store in --meta's database",
    )  # fmt: skip
    form.set_defaults(run=cmd_format)

    umount = commands.add_parser("umount", help="unmount, writing everything out", parents=[common])
    umount.add_argument("mountpoint")
    umount.set_defaults(run=cmd_umount)

    from fsobj.cli import (  # they import this module
        acl,
        encryption,
        fstab,
        s3_commands,
        trees,
        usage,
        versions,
    )

    bucket = commands.add_parser("bucket", help="list, create and remove buckets", parents=[common])
    actions = bucket.add_subparsers(dest="action", required=True)
    for action, run, takes_name in (
        ("ls", usage.cmd_bucket_ls, False),
        ("create", cmd_bucket_change, True),
        ("rm", cmd_bucket_change, True),
    ):
        sub = actions.add_parser(action, parents=[common])
        sub.add_argument("--store", help="an unmounted store's directory, instead of a mount")
        sub.add_argument(
            "mountpoint",
            nargs="?" if not takes_name else None,
            help="the mount point (omit with --store)",
        )
        if takes_name:
            sub.add_argument("name", nargs="?")
        else:
            sub.add_argument(
                "-l", "--long", action="store_true", help="with what each bucket holds"
            )
        sub.set_defaults(run=run)

    acl.add(commands, common)

    check = commands.add_parser(
        "fsck", help="check an unmounted store, and repair it", parents=[common]
    )
    check.add_argument(
        "--store", default=str(default_store()), help="the store's directory (default: %(default)s)"
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="remove leftovers and orphans, move damaged objects aside",
    )
    check.add_argument(
        "--verify", action="store_true", help="also read every blob and verify its checksums"
    )
    check.set_defaults(run=cmd_fsck)

    collect = commands.add_parser("gc", help="remove blobs that no object uses", parents=[common])
    collect.add_argument("--store", help="an unmounted store's directory, instead of a mount")
    collect.add_argument("mountpoint", nargs="?")
    collect.set_defaults(run=cmd_gc)

    stats = commands.add_parser(
        "stats",
        help="what a mount's daemon serves (live, on a terminal) and holds in memory",
        parents=[common],
    )
    stats.add_argument("mountpoint")
    stats.add_argument("--every", type=float, default=1.0, metavar="SECONDS")
    stats.add_argument("--count", type=int, metavar="N", help="N lines, then stop")
    stats.set_defaults(run=cmd_stats)

    fstab.add(commands, common)
    completion = commands.add_parser(
        "completion", help="print a shell's completion of fsobj commands", parents=[common]
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(run=cmd_completion)
    s3_commands.add(commands, common)
    encryption.add(commands, common)
    trees.add(commands, common)
    usage.add(commands, common)
    versions.add(commands, common)

    info = commands.add_parser(
        "info", help="show an object's id, etag, size and metadata", parents=[common]
    )
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
    # Their debug output is a line per database call or request: noise even when debugging.
    for chatty in ("aiosqlite", "asyncio", "pyfuse3"):
        logging.getLogger(chatty).setLevel(max(logging.INFO, logging.getLogger().level))
    # The S3 client's: its retries log tracebacks, and datastore/remote.py reports outages.
    for chatty in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.command == "bucket" and args.action in ("create", "rm"):
        # `bucket create --store DIR NAME`: the one positional is the name
        if args.store and args.name is None:
            args.name, args.mountpoint = args.mountpoint, None
        if args.name is None:
            print(f"fsobj: bucket {args.action} needs a bucket name", file=sys.stderr)
            return 2
    try:
        return args.run(args) or 0
    except (
        CommandError,
        StoreError,
        daemon.MountError,
        iam.AclError,
        backends.BackendError,
    ) as error:
        print(f"fsobj: {error}", file=sys.stderr)
        return 1
