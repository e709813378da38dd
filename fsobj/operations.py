"""The API service: FUSE operations turned into bucket and object requests.

Each handler resolves the request to buckets and keys and acts through the metadata store
(names, attributes) and the data store (blobs, via the open handles in `handles`);
extended attributes are in `xattrs`, directory listings in `listings`.
Refusals raise `Refused`, which the `request` wrapper turns into the errno and one log
line naming operation, path and reason.

Who may do what is checked by the kernel (`default_permissions`), from the attributes and
ACLs this service reports, the same for every caller: POSIX mode bits inside buckets, and
at each bucket its grants as the POSIX ACL of its directory (`posix_acl`). So the kernel
may cache entries, attributes and decisions; a change of grants invalidates what it holds
of the bucket. What the kernel cannot check is checked here: the bucket ACL's READ_ACP and
WRITE_ACP, the listing of the top level (the buckets the caller may read), and that only a
bucket's owner removes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import stat
import time
from typing import Any

import pyfuse3

from . import gc, names, posix_acl
from .datastore import DataStore
from .handles import Handle, OpenObjects
from .iam import Acl, Grant, Identity, Permission, Policy
from .listings import Listings
from .metadata import Entry, MetadataStore
from .refusals import Refused, Where, request
from .schema import ROOT_INODE
from .xattrs import MetadataAttributes

log = logging.getLogger(__name__)

BLOCK_SIZE = 1 << 20  # st_blksize: cp and friends use buffers this big (1 MiB requests)
# How long the kernel may keep a bucket's name: a bucket exists for everyone, and it
# changes only through the kernel (mkdir, rmdir), so the kernel's entry stays true.
BUCKET_ENTRY_SECONDS = 300.0

_KIND_TYPE = {
    "root": stat.S_IFDIR,
    "bucket": stat.S_IFDIR,
    "dir": stat.S_IFDIR,
    "object": stat.S_IFREG,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
}
_SPECIAL_KINDS = {stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


@dataclasses.dataclass(frozen=True, slots=True)
class Access:
    """What one caller may do on the bucket that holds an entry (bucket None: top level)."""

    who: Identity
    bucket: Entry | None
    acl: Acl | None
    rights: frozenset[Permission]


class Operations(MetadataAttributes, Listings, pyfuse3.Operations):
    # The kernel checks mode bits and POSIX ACLs (bucket grants, see posix_acl).
    enable_acl = True

    def __init__(
        self, meta: MetadataStore, data: DataStore, iam: Policy, cache_seconds: float = 0.0
    ):
        super().__init__()
        self.cache_seconds = cache_seconds
        self.meta = meta
        self.data = data
        self.iam = iam
        self.objects = OpenObjects(meta, data)
        # Tells the kernel that what it holds of an inode changed behind its back; off
        # while no kernel is connected (tests in-process, the last commits at unmount).
        self.notify_kernel = False
        self.objects.committed = self._invalidate_attributes
        # How many times the kernel was handed each inode (lookup, create, readdirplus ...):
        # at zero, `forget`, it holds nothing of it, and the entry may leave the cache.
        self._lookups: dict[int, int] = {}

    # -- resolving requests -------------------------------------------------------------

    async def _entry(self, inode: int) -> Entry:
        entry = await self.meta.get(inode) or self.objects.orphan(inode)
        if entry is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return entry

    async def path_of(self, entry: Entry) -> str:
        parts = []
        while entry.kind != "root":
            parts.append(entry.name)
            parent = await self.meta.get(entry.parent)
            if parent is None:  # unlinked
                break
            entry = parent
        return "/" + "/".join(reversed(parts))

    async def describe(self, entry: Entry, name: bytes | None) -> str:
        """The path of `entry`, or of `name` inside it, for log lines."""
        path = await self.path_of(entry)
        if name is None:
            return path
        return path.rstrip("/") + "/" + name.decode("utf-8", "backslashreplace")

    async def _bucket_of(self, entry: Entry) -> Entry | None:
        while entry.kind not in ("bucket", "root"):
            parent = await self.meta.get(entry.parent)
            if parent is None:
                return None
            entry = parent
        return entry if entry.kind == "bucket" else None

    async def _key_bytes(self, directory: Entry) -> int:
        """Bytes of the key prefix that `directory` stands for, with its trailing slash."""
        total = 0
        while directory.kind not in ("bucket", "root"):
            total += len(directory.name.encode()) + 1
            directory = await self._entry(directory.parent)
        return total

    async def _access(self, ctx: Any, entry: Entry) -> Access:
        who = self.iam.identify(ctx)
        bucket = await self._bucket_of(entry)
        acl = await self.meta.acl(bucket.inode) if bucket is not None else None
        return Access(who, bucket, acl, self.iam.rights(who, acl))

    async def _require(
        self, ctx: Any, entry: Entry, *needed: Permission, name: bytes | None = None
    ) -> Access:
        """The caller's access to the bucket of `entry`, if it holds any of `needed`;
        otherwise EACCES and one audit line."""
        access = await self._access(ctx, entry)
        if not access.rights.intersection(needed):
            self._deny(access, (entry, name), " or ".join(p.value for p in needed))
        return access

    def _deny(self, access: Access, where: Where, missing: str) -> None:
        who = access.who
        bucket = access.bucket.name if access.bucket else "-"
        raise Refused(
            errno.EACCES,
            where,
            f"denied: uid {who.uid} pid {who.pid} lacks {missing} on bucket {bucket}",
        )

    async def _new_name(self, parent: Entry, raw: bytes, what: str) -> str:
        """Validate a name about to be created under `parent`; returns it as text."""
        where = (parent, raw)
        try:
            name = names.decode_component(raw)
            if parent.kind == "root":
                if what != "dir":
                    raise names.BadName(
                        errno.EPERM, "the top level holds only buckets (mkdir creates one)"
                    )
                names.check_bucket_name(name)
            else:
                names.check_key_length(await self._key_bytes(parent) + len(raw))
        except names.BadName as bad:
            raise Refused(bad.errno, where, bad.rule) from None
        if await self.meta.lookup(parent.inode, name) is not None:
            raise Refused(errno.EEXIST, where, "exists already")
        return name

    def attributes(
        self, entry: Entry, reuse: pyfuse3.EntryAttributes | None = None
    ) -> pyfuse3.EntryAttributes:
        """The entry's attributes, the same for every caller. A bucket's permission bits
        are those of its grants (`bucket_acl`, which must have been read: `_bucket_acl`).
        `reuse` is an earlier result to fill in again (readdir copies each one out at
        once), which skips the fields that are the same for every entry."""
        if reuse is None:
            attrs = pyfuse3.EntryAttributes()
            attrs.st_blksize = BLOCK_SIZE
            attrs.attr_timeout = self.cache_seconds
        else:
            attrs = reuse
        attrs.entry_timeout = BUCKET_ENTRY_SECONDS if entry.kind == "bucket" else self.cache_seconds
        attrs.st_ino = entry.inode
        mode = entry.mode
        if entry.kind == "bucket":
            mode = posix_acl.mode_of(self.bucket_acl(entry, self.meta.cached_acl(entry.inode)))
        attrs.st_mode = _KIND_TYPE[entry.kind] | mode
        attrs.st_uid = entry.uid
        attrs.st_gid = entry.gid
        if entry.is_dir:
            attrs.st_nlink = 2 + entry.subdirs
        else:
            attrs.st_nlink = 0 if self.objects.orphan(entry.inode) is entry else 1
        if entry.kind == "object":
            size, mtime_ns = self.objects.staged(entry)
        else:
            size, mtime_ns = entry.size, entry.mtime_ns
        attrs.st_size = size
        attrs.st_blocks = (size + 511) // 512
        attrs.st_atime_ns = entry.atime_ns
        attrs.st_mtime_ns = mtime_ns
        attrs.st_ctime_ns = entry.ctime_ns
        return attrs

    def bucket_acl(self, bucket: Entry, acl: Acl) -> tuple[posix_acl.AclEntry, ...]:
        """The POSIX ACL of a bucket's directory: its grants, for the kernel to check."""
        return posix_acl.from_grants(acl, bucket.gid, self.iam.admins)

    async def _bucket_acl(self, entry: Entry) -> Acl | None:
        """A bucket's ACL, read into the cache for `attributes`; None for other entries."""
        return await self.meta.acl(entry.inode) if entry.kind == "bucket" else None

    async def _attributes(self, entry: Entry) -> pyfuse3.EntryAttributes:
        await self._bucket_acl(entry)
        return self.attributes(entry)

    def _new_entry(self, parent: Entry, name: str, kind: str, mode: int, ctx: Any) -> Entry:
        now = time.time_ns()
        if kind != "symlink":  # a symlink's mode is always 0777
            mode = mode & 0o7777 & ~ctx.umask
        return Entry(0, parent.inode, name, kind, mode, ctx.uid, ctx.gid, now, now, now)

    def _invalidate_attributes(self, inode: int) -> None:
        """Something the kernel may cache of an inode changed behind its back (a commit:
        size and times; a bucket's grants: its mode and ACL): the kernel must ask again.
        Only attributes and ACLs, which takes no lock the pending request could hold."""
        if self.notify_kernel:
            with contextlib.suppress(OSError):  # ENOENT: the kernel holds no such inode
                pyfuse3.invalidate_inode(inode, attr_only=True)

    def handed_out(self, attrs: pyfuse3.EntryAttributes) -> pyfuse3.EntryAttributes:
        """The kernel takes a reference to the inode of a reply that names an entry."""
        self._lookups[attrs.st_ino] = self._lookups.get(attrs.st_ino, 0) + 1
        return attrs

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            left = self._lookups.pop(inode, 0) - count
            if left > 0:
                self._lookups[inode] = left
            else:
                self.meta.evict(inode)

    def _missing(self) -> pyfuse3.EntryAttributes:
        """The answer to a lookup of a name that does not exist: the kernel may remember
        that for as long as it keeps names (every change of names passes through it)."""
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = 0
        attrs.entry_timeout = self.cache_seconds
        return attrs

    # -- names ----------------------------------------------------------------------------

    @request
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any) -> pyfuse3.EntryAttributes:
        parent = await self._entry(parent_inode)
        if name in (b".", b".."):
            target = parent if name == b"." else await self._entry(parent.parent or ROOT_INODE)
            return self.handed_out(await self._attributes(target))
        try:
            text = names.decode_component(name)
        except names.BadName as bad:
            if bad.errno == errno.ENAMETOOLONG:
                raise Refused(bad.errno, (parent, name), bad.rule) from None
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        entry = await self.meta.lookup(parent_inode, text)
        if entry is None:
            return self._missing()
        return self.handed_out(await self._attributes(entry))

    @request
    async def getattr(self, inode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        return await self._attributes(await self._entry(inode))

    @request
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: Any,
    ) -> pyfuse3.EntryAttributes:
        entry = await self._entry(inode)
        where = (entry, None)
        # The kernel has checked who may change what (owner, group, mode bits).
        chown = (fields.update_uid and attr.st_uid != entry.uid) or (
            fields.update_gid and attr.st_gid != entry.gid
        )
        if chown and entry.kind == "bucket":
            raise Refused(errno.EPERM, where, "a bucket's owner and group do not change")
        now = time.time_ns()
        changes: dict[str, int] = {}
        if fields.update_size:
            if entry.kind != "object":
                raise Refused(
                    errno.EISDIR if entry.is_dir else errno.EINVAL,
                    where,
                    "only objects have a size to change",
                )
            await self._truncate(entry, attr.st_size, fh)
        if fields.update_mode:
            if entry.kind == "bucket":  # chmod of a bucket changes its grants
                current = self.bucket_acl(entry, await self.meta.acl(entry.inode))
                mode = stat.S_IMODE(attr.st_mode)
                await self.set_bucket_acl(entry, posix_acl.with_mode(current, mode))
            else:
                changes["mode"] = stat.S_IMODE(attr.st_mode)
        if fields.update_uid:
            changes["uid"] = attr.st_uid
        if fields.update_gid:
            changes["gid"] = attr.st_gid
        if fields.update_atime:
            changes["atime_ns"] = attr.st_atime_ns
        if fields.update_mtime:
            changes["mtime_ns"] = attr.st_mtime_ns
            self.objects.times_set(inode)
        changes["ctime_ns"] = now
        await self.meta.update(entry, **changes)
        return await self._attributes(entry)

    async def set_bucket_acl(self, bucket: Entry, entries: tuple[posix_acl.AclEntry, ...]) -> None:
        """Give a bucket's directory a POSIX ACL (setfacl, chmod): its grants change."""
        acl = await self.meta.acl(bucket.inode)
        grants = posix_acl.to_grants(entries, acl, bucket.gid, self.iam.admins)
        await self.set_grants(bucket, grants)

    async def set_grants(self, bucket: Entry, grants: tuple[Grant, ...]) -> None:
        """Replace a bucket's grants; the kernel drops what it holds of the bucket's mode
        and ACL, so the change acts on every user's next request."""
        await self.meta.set_grants(bucket.inode, grants)
        self._invalidate_attributes(bucket.inode)

    async def _truncate(self, entry: Entry, size: int, fh: int | None) -> None:
        """Truncate through the caller's open handle, or as a whole new version."""
        if fh is not None:
            handle = self.objects.get(fh)
            if handle.writable:
                await self.objects.truncate(handle, size)
                return
        handle = await self.objects.open(entry, writable=True, truncate=False)
        try:
            await self.objects.truncate(handle, size)
            await self.objects.commit(handle, durable=False)
        finally:
            await self.objects.release(handle)

    @request
    async def readlink(self, inode: int, ctx: Any) -> bytes:
        entry = await self._entry(inode)
        if entry.kind != "symlink" or entry.target is None:
            raise Refused(errno.EINVAL, (entry, None), "not a symlink")
        return entry.target.encode()

    @request
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        parent = await self._entry(parent_inode)
        text = await self._new_name(parent, name, "dir")
        kind = "bucket" if parent.kind == "root" else "dir"
        # A bucket starts private whatever the mode asked: its bits are its grants'.
        entry = self._new_entry(parent, text, kind, 0o700 if kind == "bucket" else mode, ctx)
        await self.meta.insert(entry, bucket_owner=ctx.uid if kind == "bucket" else None)
        if kind == "bucket":
            log.info("created bucket %s for uid %d", text, ctx.uid)
        return self.handed_out(await self._attributes(entry))

    @request
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        parent = await self._entry(parent_inode)
        text = await self._new_name(parent, name, "symlink")
        try:
            target_text = target.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(
                errno.EINVAL,
                (parent, name),
                "symlink targets must be valid UTF-8",
            ) from None
        entry = self._new_entry(parent, text, "symlink", 0o777, ctx)
        entry.target = target_text
        entry.size = len(target)
        await self.meta.insert(entry)
        return self.handed_out(self.attributes(entry))

    @request
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        parent = await self._entry(parent_inode)
        special = _SPECIAL_KINDS.get(stat.S_IFMT(mode))
        if special is not None:
            text = await self._new_name(parent, name, special)
            entry = self._new_entry(parent, text, special, mode, ctx)
            await self.meta.insert(entry)
            return self.handed_out(self.attributes(entry))
        if not stat.S_ISREG(mode):
            raise Refused(
                errno.EPERM,
                (parent, name),
                "device nodes cannot be stored (objects, directories, symlinks, FIFOs and"
                " sockets can)",
            )
        entry, handle = await self._create_object(parent, name, mode, ctx)
        await self.objects.release(handle)
        return self.handed_out(self.attributes(entry))

    @request
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        parent = await self._entry(new_parent_inode)
        raise Refused(
            errno.EPERM,
            (parent, new_name),
            "hard links are not supported: an object has exactly one key",
        )

    @request
    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        parent = await self._entry(parent_inode)
        entry, where = await self._existing(parent, name)
        if entry.is_dir:
            raise Refused(errno.EISDIR, where, "is a directory (use rmdir)")
        await self.meta.delete(entry, time.time_ns())
        self.objects.unlinked(entry)

    @request
    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        parent = await self._entry(parent_inode)
        entry, where = await self._existing(parent, name)
        if not entry.is_dir:
            raise Refused(errno.ENOTDIR, where, "not a directory")
        if entry.kind == "bucket":
            access = await self._access(ctx, entry)
            if access.who.uid != access.acl.owner and not self.iam.is_admin(access.who):
                self._deny(access, where, "ownership (only the owner deletes a bucket)")
        if await self.meta.has_children(entry.inode):
            raise Refused(errno.ENOTEMPTY, where, f"{entry.kind} is not empty")
        await self.meta.delete(entry, time.time_ns())
        if entry.kind == "bucket":
            log.info("removed bucket %s", entry.name)

    async def _existing(self, parent: Entry, name: bytes) -> tuple[Entry, Where]:
        where = (parent, name)
        try:
            text = names.decode_component(name)
        except names.BadName:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        entry = await self.meta.lookup(parent.inode, text)
        if entry is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return entry, where

    @request
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: Any,
    ) -> None:
        old_parent = await self._entry(parent_inode_old)
        new_parent = await self._entry(parent_inode_new)
        entry, where = await self._existing(old_parent, name_old)
        new_where = (new_parent, name_new)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise Refused(errno.EINVAL, where, "RENAME_EXCHANGE is not supported")
        if entry.kind == "bucket" or new_parent.kind == "root":
            raise Refused(
                errno.EPERM, where, "buckets cannot be renamed, and objects live inside buckets"
            )
        try:
            new_name = names.decode_component(name_new)
            extra = await self.meta.subtree_key_bytes(entry.inode) if entry.is_dir else 0
            names.check_key_length(await self._key_bytes(new_parent) + len(name_new) + extra)
        except names.BadName as bad:
            raise Refused(bad.errno, new_where, bad.rule) from None
        if entry.parent == new_parent.inode and entry.name == new_name:
            return
        ancestor: Entry | None = new_parent
        while ancestor is not None and ancestor.kind != "root":
            if ancestor.inode == entry.inode:
                raise Refused(errno.EINVAL, new_where, "cannot move a directory into itself")
            ancestor = await self.meta.get(ancestor.parent)
        replaced = await self.meta.lookup(new_parent.inode, new_name)
        if replaced is not None:
            if flags & pyfuse3.RENAME_NOREPLACE:
                raise Refused(errno.EEXIST, new_where, "exists already (RENAME_NOREPLACE)")
            if entry.is_dir and not replaced.is_dir:
                raise Refused(errno.ENOTDIR, new_where, "cannot replace an object by a directory")
            if replaced.is_dir and not entry.is_dir:
                raise Refused(errno.EISDIR, new_where, "cannot replace a directory by an object")
            if replaced.is_dir and await self.meta.has_children(replaced.inode):
                raise Refused(errno.ENOTEMPTY, new_where, "directory is not empty")
        if replaced is not None:
            await self.objects.durability.make_content_durable(entry)
        await self.meta.move(entry, new_parent.inode, new_name, time.time_ns(), replaced)
        if replaced is not None:
            self.objects.unlinked(replaced)

    # -- objects ----------------------------------------------------------------------------

    async def _create_object(
        self, parent: Entry, name: bytes, mode: int, ctx: Any
    ) -> tuple[Entry, Handle]:
        text = await self._new_name(parent, name, "object")
        entry = self._new_entry(parent, text, "object", mode, ctx)
        await self.meta.insert(entry, deferred=True)
        who = self.iam.identify(ctx)
        handle = await self.objects.open(
            entry, writable=True, truncate=True, process=who.process, uid=who.uid
        )
        return entry, handle

    @request
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = await self._entry(parent_inode)
        entry, handle = await self._create_object(parent, name, mode, ctx)
        info = pyfuse3.FileInfo(fh=handle.fh, direct_io=True, keep_cache=False)
        return info, self.handed_out(self.attributes(entry))

    @request
    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        entry = await self._entry(inode)
        where = (entry, None)
        if entry.kind != "object":
            raise Refused(errno.EISDIR if entry.is_dir else errno.EINVAL, where, "not an object")
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        who = self.iam.identify(ctx)
        handle = await self.objects.open(
            entry,
            writable,
            truncate=bool(flags & os.O_TRUNC),
            process=who.process,
            uid=who.uid,
        )
        return pyfuse3.FileInfo(fh=handle.fh, direct_io=True, keep_cache=False)

    @request
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self.objects.read(self.objects.get(fh), off, size)

    @request
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.objects.get(fh)
        if not handle.writable:
            raise pyfuse3.FUSEError(errno.EBADF)
        written = await self.objects.write(handle, off, buf)
        entry = handle.entry
        if handle.uid != 0 and _privileges(entry.mode):
            # As on a local disk, a write by anyone but root clears set-user-ID, and
            # set-group-ID where the group may execute.
            await self.meta.update(entry, mode=entry.mode & ~_privileges(entry.mode))
            self._invalidate_attributes(entry.inode)
        return written

    @request
    async def flush(self, fh: int) -> None:
        handle = self.objects.get(fh)
        if handle.dirty:
            await self.objects.commit(handle, durable=False)

    @request
    async def release(self, fh: int) -> None:
        await self.objects.release(self.objects.get(fh))

    @request
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.objects.make_durable(self.objects.get(fh))

    # -- the store ----------------------------------------------------------------------------

    @request
    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        capacity = self.data.capacity()
        result = pyfuse3.StatvfsData()
        result.f_bsize = BLOCK_SIZE
        result.f_frsize = capacity.f_frsize
        result.f_blocks = capacity.f_blocks
        result.f_bfree = capacity.f_bfree
        result.f_bavail = capacity.f_bavail
        result.f_files = capacity.f_files
        result.f_ffree = capacity.f_ffree
        result.f_favail = capacity.f_favail
        result.f_namemax = names.MAX_COMPONENT_BYTES
        return result

    def stats(self) -> dict[str, int]:
        """What the daemon holds in memory, for `fsobj stats`."""
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
        return {
            "cached_entries": self.meta.cached_entries(),
            "kernel_inodes": len(self._lookups),
            "open_handles": self.objects.open_handles(),
            "resident_bytes": resident_pages * os.sysconf("SC_PAGE_SIZE"),
        }

    async def collect_garbage(self) -> gc.Collection:
        return await gc.collect(self.meta, self.data, self.objects.busy_blobs)


def _privileges(mode: int) -> int:
    """The set-ID bits that a write by an unprivileged process clears."""
    bits = mode & stat.S_ISUID
    if mode & stat.S_ISGID and mode & stat.S_IXGRP:
        bits |= stat.S_ISGID
    return bits
