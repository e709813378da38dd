"""IAM: who the caller is, and whether a bucket's ACL lets them act.

S3's model mapped to local users: every bucket has an owner (the uid that created it) and
an ACL, a set of grants. A grantee is a uid, a gid (the caller's primary and supplementary
groups count), `authenticated` (every local user but the anonymous uid 65534) or
`everyone`. The owner always holds FULL_CONTROL; administrators (uid 0 and the uid that
mounted the store) may do everything on every bucket, as S3's account root.

The ACL travels as text, one grant per line (`uid:1001 READ`, `gid:100 WRITE`,
`everyone READ`), preceded by an `owner uid:N` line when read.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import pwd
import secrets
import string
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fsobj.metadata.store import Entry

NOBODY = 65534  # the anonymous user: not "authenticated"
R, W, X = 4, 2, 1  # POSIX permission bits, as `Policy.may` checks them


class Permission(enum.Enum):
    READ = "READ"
    WRITE = "WRITE"
    READ_ACP = "READ_ACP"
    WRITE_ACP = "WRITE_ACP"
    FULL_CONTROL = "FULL_CONTROL"


ALL_PERMISSIONS = frozenset(Permission)


class AclError(ValueError):
    """ACL text that cannot be parsed; the message says which line and why."""


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    uid: int
    gid: int
    pid: int  # the calling thread, as FUSE reports it
    groups: frozenset[int] = frozenset()
    process: int = 0  # the thread group (the process) the thread belongs to


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    grantee: str  # "uid:N", "gid:N", "authenticated" or "everyone"
    permission: Permission

    def key(self) -> tuple[str, str]:
        return (self.grantee, self.permission.value)

    def applies_to(self, who: Identity) -> bool:
        kind, _, number = self.grantee.partition(":")
        if kind == "everyone":
            return True
        if kind == "authenticated":
            return who.uid != NOBODY
        if kind == "uid":
            return who.uid == int(number)
        return int(number) == who.gid or int(number) in who.groups


@dataclasses.dataclass(frozen=True, slots=True)
class Acl:
    owner: int
    grants: tuple[Grant, ...] = ()

    def rights(self, who: Identity) -> frozenset[Permission]:
        if who.uid == self.owner:
            return ALL_PERMISSIONS
        granted = {g.permission for g in self.grants if g.applies_to(who)}
        if Permission.FULL_CONTROL in granted:
            return ALL_PERMISSIONS
        return frozenset(granted)

    def to_text(self) -> str:
        return f"owner uid:{self.owner}\n" + grants_text(self.grants)


def grants_text(grants: tuple[Grant, ...]) -> str:
    """Grants as ACL text, one `GRANTEE PERMISSION` line each."""
    return "".join(f"{g.grantee} {g.permission.value}\n" for g in grants)


def parse_grants(text: str) -> tuple[Grant, ...]:
    """Grants from ACL text; `owner` lines are ignored (ownership does not change here)."""
    grants: dict[tuple[str, str], Grant] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("owner "):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise AclError(f"line {number}: expected 'GRANTEE PERMISSION', got {raw!r}")
        grantee, permission = parts
        grant = Grant(_check_grantee(grantee, number), _permission(permission, number))
        grants[grant.key()] = grant
    return tuple(sorted(grants.values(), key=Grant.key))


def _check_grantee(grantee: str, number: int) -> str:
    if grantee in ("everyone", "authenticated"):
        return grantee
    kind, _, value = grantee.partition(":")
    if kind in ("uid", "gid") and value.isdigit():
        return f"{kind}:{int(value)}"
    raise AclError(
        f"line {number}: grantee {grantee!r} is not uid:N, gid:N, authenticated or everyone"
    )


def _permission(name: str, number: int) -> Permission:
    try:
        return Permission(name.upper())
    except ValueError:
        choices = ", ".join(p.value for p in Permission)
        raise AclError(f"line {number}: permission {name!r} is not one of {choices}") from None


CANNED = {
    "private": (),
    "public-read": (Grant("everyone", Permission.READ),),
    "public-read-write": (Grant("everyone", Permission.READ), Grant("everyone", Permission.WRITE)),
    "authenticated-read": (Grant("authenticated", Permission.READ),),
}


def new_access_key() -> tuple[str, str]:
    """A new S3 access key: its id (20 characters, as AWS's) and its secret (40)."""
    alphabet = string.ascii_uppercase + string.digits
    key_id = "FS" + "".join(secrets.choice(alphabet) for _ in range(18))
    secret = secrets.token_urlsafe(30)[:40]
    return key_id, secret


def _proc_status(pid: int) -> tuple[frozenset[int], int]:
    """A thread's supplementary groups and process id; (none, pid) when it is gone."""
    groups: frozenset[int] = frozenset()
    process = pid
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Tgid:"):
                    process = int(line.split()[1])
                elif line.startswith("Groups:"):
                    groups = frozenset(int(g) for g in line.split()[1:])
    except (OSError, ValueError):
        pass
    return groups, process


class Policy:
    """Decides requests: administrators may do everything, others what the ACL grants."""

    PROC_TTL = 1.0  # seconds what /proc (or the group database) says is remembered

    def __init__(self, admins: set[int]):
        self.admins = frozenset(admins)
        self._proc: dict[tuple[int, int], tuple[float, frozenset[int], int]] = {}
        self._users: dict[int, tuple[float, Identity]] = {}  # the group database, briefly

    def identify(self, ctx: object) -> Identity:
        """The caller of a request: uid, gid, supplementary groups and process (from /proc)."""
        uid, gid, pid = ctx.uid, ctx.gid, ctx.pid  # type: ignore[attr-defined]
        now = time.monotonic()
        cached = self._proc.get((pid, uid))
        if cached is None or cached[0] < now:
            groups, process = _proc_status(pid)
            if len(self._proc) > 4096:
                self._proc.clear()
            cached = self._proc[(pid, uid)] = (now + self.PROC_TTL, groups, process)
        return Identity(uid, gid, pid, cached[1], cached[2])

    def is_admin(self, who: Identity) -> bool:
        return who.uid in self.admins

    def rights(self, who: Identity, acl: Acl | None) -> frozenset[Permission]:
        """What `who` may do on a bucket with `acl` (None: the store's top level)."""
        if acl is None or self.is_admin(who):
            return ALL_PERMISSIONS
        return acl.rights(who)

    def identity_of_uid(self, uid: int) -> Identity:
        """A local user as the S3 front end acts for them: their primary group and the
        groups the system's group database lists for them (a uid without a passwd entry:
        its own number as group, no others)."""
        now = time.monotonic()
        known = self._users.get(uid)
        if known is not None and known[0] > now:
            return known[1]
        try:
            user = pwd.getpwuid(uid)
        except KeyError:
            who = Identity(uid, uid, 0)
        else:
            groups = frozenset(os.getgrouplist(user.pw_name, user.pw_gid))
            who = Identity(uid, user.pw_gid, 0, groups)
        if len(self._users) > 4096:
            self._users.clear()
        self._users[uid] = (now + self.PROC_TTL, who)
        return who

    def may(self, who: Identity, acl: Acl | None, entry: Entry, want: int) -> bool:
        """Whether `who` holds the POSIX permissions `want` (R, W, X bits) on `entry`, as the
        kernel decides for the mount: at a bucket its grants (READ: r-x, WRITE: -wx),
        inside it the mode bits; uid 0 passes, as CAP_DAC_OVERRIDE lets it."""
        if who.uid == 0:
            return True
        if entry.kind == "bucket":
            rights = self.rights(who, acl)
            bits = 0
            if rights & {Permission.READ, Permission.FULL_CONTROL}:
                bits |= R | X
            if rights & {Permission.WRITE, Permission.FULL_CONTROL}:
                bits |= W | X
        elif entry.kind == "root":
            bits = R | W | X  # mode 1777
        elif who.uid == entry.uid:
            bits = entry.mode >> 6
        elif entry.gid == who.gid or entry.gid in who.groups:
            bits = entry.mode >> 3
        else:
            bits = entry.mode
        return bits & want == want
