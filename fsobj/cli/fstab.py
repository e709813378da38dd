"""`mount -t fuse.fsobj STORE MOUNTPOINT -o OPTIONS`, and fstab lines of that type: the
helper mount(8) runs for them (`mount.fuse.fsobj`, which `fsobj install-mount-helper`
links into /usr/sbin). It turns fsobj's options among OPTIONS into `fsobj mount`'s and
leaves mount(8)'s own to it, then mounts in the background as `fsobj mount` does.

    /var/lib/fsobj  /srv/fsobj  fuse.fsobj  s3=127.0.0.1:9000,metrics=9100,_netdev  0  0
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fsobj.cli.main import CommandError

HELPER = "mount.fuse.fsobj"
SBIN = Path("/usr/sbin")
# mount(8)'s own options, and those it passes on that mean nothing to fsobj.
GENERIC = {
    "rw", "ro", "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "nofail",
    "_netdev", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "async", "sync",
    "atime", "noatime", "relatime", "strictatime", "diratime", "nodiratime", "lazytime",
}  # fmt: skip
# fsobj mount's options as -o takes them (`commit_interval=5`): flags, and with a value.
FLAGS = {"private"}
VALUED = {
    "s3", "metrics", "commit_interval", "cache_entries", "metadata_timeout",
    "session_timeout", "abandon_uploads_after", "lifecycle_day", "log_level",
}  # fmt: skip


def mount_arguments(store: str, mountpoint: str, options: str) -> list[str]:
    """`fsobj mount`'s arguments for a mount(8) call."""
    arguments = ["mount", "--store", store]
    for option in filter(None, options.split(",")):
        name, has_value, value = option.partition("=")
        if name in GENERIC or name.startswith(("x-", "comment=")):
            continue
        flag = "--" + name.replace("_", "-")
        if name in FLAGS and not has_value:
            arguments.append(flag)
        elif name in VALUED and has_value:
            arguments += [flag, value]
        else:
            raise CommandError(f"fsobj has no mount option {option!r}")
    return [*arguments, mountpoint]


def main(argv: list[str] | None = None) -> int:
    """mount(8) calls `mount.fuse.fsobj SPEC DIR [-sfnv] [-o OPTIONS] [-t TYPE]`."""
    from fsobj.cli.main import main as fsobj

    parser = argparse.ArgumentParser(prog=HELPER)
    parser.add_argument("store")
    parser.add_argument("mountpoint")
    parser.add_argument("-o", dest="options", default="")
    parser.add_argument("-t", dest="type", default="fuse.fsobj")
    for flag in ("-s", "-f", "-n", "-v"):  # sloppy, fake, no mtab, verbose: nothing to do
        parser.add_argument(flag, action="store_true")
    args = parser.parse_args(argv)
    try:
        arguments = mount_arguments(args.store, args.mountpoint, args.options)
    except CommandError as error:
        print(f"{HELPER}: {error}", file=sys.stderr)
        return 1
    return fsobj(arguments)


def install(args: argparse.Namespace) -> None:
    """`fsobj install-mount-helper`: link the helper where mount(8) looks for it."""
    helper = Path(sys.executable).parent / HELPER
    if not helper.exists():
        raise CommandError(f"{helper} is missing: install the fsobj package (pip install .)")
    link = Path(args.into) / HELPER
    if link.is_symlink() or link.exists():
        link.unlink()
    try:
        os.symlink(helper, link)
    except OSError as error:
        raise CommandError(f"{link}: {error.strerror} (as root: sudo fsobj ...)") from None
    print(f"linked {link} -> {helper}: mount -t fuse.fsobj and fstab lines now work")


def add(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    command = commands.add_parser(
        "install-mount-helper",
        help=f"link {HELPER} into /usr/sbin, for mount -t fuse.fsobj and fstab lines",
        parents=[common],
    )
    command.add_argument("--into", default=str(SBIN), help="where (default: %(default)s)")
    command.set_defaults(run=install)
