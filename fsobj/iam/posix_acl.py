"""A bucket's grants as the POSIX ACL of its directory, so that the kernel can check them.

The mount uses the kernel's permission checks (`default_permissions` with FUSE's POSIX ACL
support), which is what lets it cache entries and attributes for every user. The kernel
knows mode bits and POSIX ACLs, not S3 grants, so a bucket's directory shows its grants
as an ACL (`getfacl` reads it; `setfacl` and `chmod` on a bucket change the grants):

* READ gives r and x (list the bucket, reach what is inside), WRITE gives w and x (create
  and remove entries at the bucket's top), FULL_CONTROL gives rwx. READ_ACP and WRITE_ACP
  have no POSIX form: fsobj checks them itself, on `user.fsobj.acl`.
* The owner is the directory's owner (`user::rwx`); `everyone` grants are `other`;
  `uid:N` and `gid:N` grants are `user:N` and `group:N` entries, and grants to the
  bucket's own group are `group::`.
* S3 adds up grants, POSIX picks one entry: the first of user, then groups, then other.
  So each named entry also holds what applies to everyone it names: the `everyone` and
  `authenticated` grants, and for a user, the grants of the groups the system's group
  database lists for them.
* `authenticated` (every user but `nobody`) is `other`, with a `user:65534` entry that
  holds only what `everyone` may do.
* Administrators other than root (the user who mounted the store) get `user:N:rwx`.

The binary form is Linux's `system.posix_acl_access` value: a little-endian u32 version
(2), then per entry u16 tag, u16 permission bits, u32 id.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pwd
import struct
from collections.abc import Iterable

from fsobj.iam.policy import NOBODY, Acl, Grant, Permission

ACCESS = "system.posix_acl_access"
DEFAULT = "system.posix_acl_default"

USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
NO_ID = 0xFFFFFFFF
VERSION = 2
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")

R, W, X = 4, 2, 1


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class AclEntry:
    tag: int
    id: int
    perm: int


def bits(permissions: Iterable[Permission]) -> int:
    """The rwx bits that S3 permissions on a bucket amount to on its directory."""
    have = set(permissions)
    if Permission.FULL_CONTROL in have:
        return R | W | X
    value = (R if Permission.READ in have else 0) | (W if Permission.WRITE in have else 0)
    return value | X if value else 0


@functools.lru_cache(maxsize=4096)
def groups_of(uid: int) -> frozenset[int]:
    """The groups the system's group database lists for `uid` (none for an unknown uid)."""
    try:
        user = pwd.getpwuid(uid)
        return frozenset(os.getgrouplist(user.pw_name, user.pw_gid))
    except (KeyError, OSError):
        return frozenset()


@functools.lru_cache(maxsize=1024)
def from_grants(acl: Acl, group: int, admins: frozenset[int] = frozenset()) -> tuple[AclEntry, ...]:
    """The POSIX ACL of a bucket directory owned by `acl.owner` and `group`."""
    by_grantee: dict[str, set[Permission]] = {}
    for grant in acl.grants:
        by_grantee.setdefault(grant.grantee, set()).add(grant.permission)
    everyone = bits(by_grantee.get("everyone", ()))
    authenticated = bits(by_grantee.get("authenticated", ())) | everyone
    group_bits = {
        int(grantee[4:]): bits(perms)
        for grantee, perms in by_grantee.items()
        if grantee.startswith("gid:")
    }
    entries = [AclEntry(USER_OBJ, NO_ID, R | W | X), AclEntry(OTHER, NO_ID, authenticated)]
    users: dict[int, int] = {}
    for grantee, perms in by_grantee.items():
        if grantee.startswith("uid:"):
            users[int(grantee[4:])] = bits(perms)
    if authenticated != everyone:
        users.setdefault(NOBODY, 0)
    for uid in sorted(users):
        if uid == acl.owner:
            continue
        value = users[uid] | (everyone if uid == NOBODY else authenticated)
        for gid in groups_of(uid):
            value |= group_bits.get(gid, 0)
        entries.append(AclEntry(USER, uid, value))
    for uid in sorted(set(admins) - {0, acl.owner}):
        entries = [e for e in entries if (e.tag, e.id) != (USER, uid)]
        entries.append(AclEntry(USER, uid, R | W | X))
    entries.append(AclEntry(GROUP_OBJ, NO_ID, group_bits.get(group, 0) | authenticated))
    for gid in sorted(group_bits):
        if gid != group:
            entries.append(AclEntry(GROUP, gid, group_bits[gid] | authenticated))
    if any(e.tag in (USER, GROUP) for e in entries):
        mask = 0
        for e in entries:
            if e.tag in (USER, GROUP, GROUP_OBJ):
                mask |= e.perm
        entries.append(AclEntry(MASK, NO_ID, mask))
    return tuple(sorted(entries))


def is_minimal(entries: Iterable[AclEntry]) -> bool:
    """Whether the ACL says no more than mode bits do (then no ACL is shown)."""
    return not any(e.tag in (USER, GROUP, MASK) for e in entries)


def minimal(entries: Iterable[AclEntry]) -> tuple[AclEntry, ...]:
    """The ACL without its named entries and mask (what `setfacl -b` leaves)."""
    return tuple(e for e in entries if e.tag in (USER_OBJ, GROUP_OBJ, OTHER))


def _find(entries: Iterable[AclEntry], tag: int) -> int:
    return next((e.perm for e in entries if e.tag == tag), 0)


def mode_of(entries: tuple[AclEntry, ...]) -> int:
    """The permission bits a directory with this ACL shows (the mask stands for group)."""
    group = _find(entries, MASK) if not is_minimal(entries) else _find(entries, GROUP_OBJ)
    return _find(entries, USER_OBJ) << 6 | group << 3 | _find(entries, OTHER)


def with_mode(entries: tuple[AclEntry, ...], mode: int) -> tuple[AclEntry, ...]:
    """The ACL after `chmod mode`, as POSIX defines it (group bits go to the mask)."""
    group_tag = GROUP_OBJ if is_minimal(entries) else MASK
    changed = {USER_OBJ: mode >> 6 & 7, group_tag: mode >> 3 & 7, OTHER: mode & 7}
    return tuple(
        dataclasses.replace(e, perm=changed[e.tag]) if e.tag in changed else e for e in entries
    )


def to_grants(
    entries: tuple[AclEntry, ...], acl: Acl, group: int, admins: Iterable[int] = ()
) -> tuple[Grant, ...]:
    """The grants that a bucket gets when its directory is given this ACL.

    Only READ and WRITE come from an ACL (x alone means nothing here); READ_ACP and
    WRITE_ACP grants stay as they were, and FULL_CONTROL while its grantee keeps rw."""
    mask = _find(entries, MASK) if not is_minimal(entries) else R | W | X
    other = _find(entries, OTHER)
    wanted: dict[str, int] = {}
    nobody = next((e.perm for e in entries if (e.tag, e.id) == (USER, NOBODY)), None)
    if nobody is not None and nobody & mask & other == nobody & mask and nobody & mask != other:
        wanted["everyone"] = nobody & mask
        wanted["authenticated"] = other & ~wanted["everyone"]
    else:
        wanted["everyone"] = other
    for e in entries:
        if e.tag == USER and e.id in admins:
            continue  # their entry stands for their rights, not for a grant
        if e.tag == USER and not (e.id == NOBODY and "authenticated" in wanted):
            wanted[f"uid:{e.id}"] = e.perm & mask & ~other
        elif e.tag == GROUP:
            wanted[f"gid:{e.id}"] = e.perm & mask & ~other
        elif e.tag == GROUP_OBJ:
            wanted[f"gid:{group}"] = e.perm & mask & ~other
    admins = set(admins)
    grants = {g.key(): g for g in acl.grants if g.permission in _KEPT}
    for grantee, value in wanted.items():
        full = (grantee, Permission.FULL_CONTROL.value)
        if full in grants and value & (R | W) != R | W:
            del grants[full]  # full control lost with rw: what is left of it stays
            for kept in (Permission.READ_ACP, Permission.WRITE_ACP):
                grants[(grantee, kept.value)] = Grant(grantee, kept)
        if full in grants:
            continue
        for flag, permission in ((R, Permission.READ), (W, Permission.WRITE)):
            if value & flag:
                grants[(grantee, permission.value)] = Grant(grantee, permission)
    return tuple(sorted(grants.values(), key=Grant.key))


_KEPT = (Permission.READ_ACP, Permission.WRITE_ACP, Permission.FULL_CONTROL)


def encode(entries: Iterable[AclEntry]) -> bytes:
    return _HEADER.pack(VERSION) + b"".join(_ENTRY.pack(e.tag, e.perm, e.id) for e in entries)


def decode(value: bytes) -> tuple[AclEntry, ...]:
    """An ACL from its xattr form; ValueError when it is not one."""
    if len(value) < _HEADER.size or (len(value) - _HEADER.size) % _ENTRY.size:
        raise ValueError("not a POSIX ACL: wrong length")
    if _HEADER.unpack_from(value)[0] != VERSION:
        raise ValueError("not a version 2 POSIX ACL")
    entries = []
    for offset in range(_HEADER.size, len(value), _ENTRY.size):
        tag, perm, id_ = _ENTRY.unpack_from(value, offset)
        if tag not in (USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER) or perm > 7:
            raise ValueError(f"not a POSIX ACL entry: tag {tag:#x}, permissions {perm:o}")
        entries.append(AclEntry(tag, id_, perm))
    return tuple(sorted(entries))
