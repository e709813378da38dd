"""`fsobj acl`: read and change a bucket's ACL, through a mount (its `user.fsobj.acl`
attribute) or an unmounted store."""

from __future__ import annotations

import argparse
import grp
import os
import pwd

from fsobj.cli.main import CommandError, offline, os_call
from fsobj.iam import policy as iam
from fsobj.iam.policy import Identity
from fsobj.service.objects import ObjectService

ACL_NAME = b"user.fsobj.acl"


def add(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The command, on `fsobj`'s parser."""
    acl = commands.add_parser("acl", help="read and change a bucket's ACL", parents=[common])
    acl_actions = acl.add_subparsers(dest="action", required=True)
    perms = [p.value for p in iam.Permission]
    for action, summary in (
        ("get", "show the owner and the grants"),
        ("set", "replace the grants by a canned ACL"),
        ("grant", "add grants"),
        ("revoke", "remove a grantee's grants (all, or those named with --perm)"),
    ):
        sub = acl_actions.add_parser(action, help=summary, parents=[common])
        sub.add_argument("--store", help="an unmounted store's directory; TARGET is then a name")
        sub.add_argument("target", help="MOUNT/BUCKET (or the bucket's name with --store)")
        if action == "set":
            sub.add_argument("--canned", required=True, choices=sorted(iam.CANNED))
        if action in ("grant", "revoke"):
            who = sub.add_mutually_exclusive_group(required=True)
            who.add_argument("--uid", dest="user", help="a user id")
            who.add_argument("--user", dest="user", help="a user name")
            who.add_argument("--gid", dest="group", help="a group id")
            who.add_argument("--group", dest="group", help="a group name")
            who.add_argument("--everyone", action="store_true", help="every local user")
            who.add_argument(
                "--authenticated",
                action="store_true",
                help="every local user but the anonymous uid 65534",
            )
            sub.add_argument("--perm", action="append", choices=perms, type=str.upper)
        sub.set_defaults(run=cmd_acl, everyone=False, authenticated=False, user=None, group=None)


class AclTarget:
    """A bucket's ACL, read and written through a mount or an unmounted store; either way
    through the API service, so its checks (READ_ACP, WRITE_ACP) apply."""

    def __init__(self, args: argparse.Namespace):
        self.args = args

    def read(self) -> str:
        if self.args.store:

            async def read(service: ObjectService, who: Identity) -> str:
                _, acl = await service.bucket(who, self.args.target, iam.Permission.READ_ACP)
                return acl.to_text()

            return offline(self.args.store, read)
        return os_call(os.getxattr, self.args.target, ACL_NAME).decode()

    def write(self, grants: tuple[iam.Grant, ...]) -> None:
        if self.args.store:
            offline(
                self.args.store,
                lambda service, who: service.set_grants(who, self.args.target, grants),
            )
        else:
            os_call(os.setxattr, self.args.target, ACL_NAME, iam.grants_text(grants).encode())


def _grantee(args: argparse.Namespace) -> str:
    if args.everyone:
        return "everyone"
    if args.authenticated:
        return "authenticated"
    try:
        if args.user is not None:
            return f"uid:{args.user if args.user.isdigit() else pwd.getpwnam(args.user).pw_uid}"
        if args.group is not None:
            return f"gid:{args.group if args.group.isdigit() else grp.getgrnam(args.group).gr_gid}"
    except KeyError as unknown:
        raise CommandError(f"no such user or group: {unknown.args[0]}") from None
    raise CommandError("name a grantee: --uid/--user, --gid/--group, --everyone or --authenticated")


def _annotated(text: str) -> str:
    """ACL text with the names of the users and groups it mentions."""
    lines = []
    for line in text.splitlines():
        parts = line.split()
        grantee = parts[1] if parts[0] == "owner" else parts[0]
        kind, _, number = grantee.partition(":")
        try:
            if kind == "uid":
                line += f"  # {pwd.getpwuid(int(number)).pw_name}"
            elif kind == "gid":
                line += f"  # {grp.getgrgid(int(number)).gr_name}"
        except KeyError:
            pass
        lines.append(line)
    return "\n".join(lines)


def cmd_acl(args: argparse.Namespace) -> None:
    target = AclTarget(args)
    if args.action == "get":
        print(_annotated(target.read()))
        return
    if args.action == "set":
        target.write(iam.CANNED[args.canned])
        return
    current = iam.parse_grants(target.read())
    grantee = _grantee(args)
    if args.action == "grant":
        if not args.perm:
            raise CommandError("name the permission to grant with --perm")
        added = tuple(iam.Grant(grantee, iam.Permission(p)) for p in args.perm)
        target.write(current + added)
    else:
        revoked = {iam.Permission(p) for p in args.perm} if args.perm else set(iam.Permission)
        target.write(
            tuple(g for g in current if g.grantee != grantee or g.permission not in revoked)
        )
