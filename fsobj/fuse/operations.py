"""The FUSE front end's handlers: the kernel's requests turned into calls on the core.

Each handler translates its request (inodes, raw names, flags, the caller's context) and
calls the object service it holds (`self.core`), which finds and checks names, applies the
rules and acts through the metadata and data stores; extended attributes are in `xattrs`,
directory listings in `listings`. Refusals raise `Refused`, which the `request` wrapper
(edge.py) turns into the errno and one log line naming operation, path and reason.

Who may do what is checked by the kernel (`default_permissions`), from the attributes and
ACLs this service reports, the same for every caller: POSIX mode bits inside buckets, and
at each bucket its grants as the POSIX ACL of its directory (`posix_acl`). So the kernel
may cache entries, attributes and decisions; a change of grants invalidates what it holds
of the bucket. What the kernel cannot check is checked here: the bucket ACL's READ_ACP and
WRITE_ACP, the listing of the top level (the buckets the caller may read), and that only a
bucket's owner removes it.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Sequence
from typing import Any

import pyfuse3

from fsobj import measures
from fsobj.fuse.edge import request
from fsobj.fuse.kernel import BLOCK_SIZE, KIND_TYPE
from fsobj.fuse.listings import Listings
from fsobj.fuse.xattrs import MetadataAttributes
from fsobj.iam import posix_acl
from fsobj.refusals import Reason, Refused
from fsobj.service import ROOT_INODE, Entry, names, usage
from fsobj.service.working_copy import Handle

log = logging.getLogger(__name__)

# Entries without content. The kernel lets only a privileged process (CAP_MKNOD) make a
# device node, and the mount is nodev: a node is stored, never opened as its device.
_SPECIAL_KINDS = {KIND_TYPE[kind]: kind for kind in ("fifo", "socket", "chardev", "blockdev")}
_READ, _WRITTEN = measures.READ_BYTES.labels("fuse"), measures.WRITTEN_BYTES.labels("fuse")


class Operations(MetadataAttributes, Listings, pyfuse3.Operations):
    """The FUSE handlers, over the core they hold (`FuseFrontEnd`)."""

    # The kernel checks mode bits and POSIX ACLs (bucket grants, see posix_acl).
    enable_acl = True

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        # The kernel forgets an inode when it drops it from its cache, with every lookup
        # it counted at once (and, on a few failure paths, one it never held). Nothing the
        # daemon keeps depends on the kernel still holding an inode (open handles hold
        # what they read; a cached entry can be read back), so there is nothing to count:
        # the entry is the first to leave the cache when it needs room.
        for inode, _ in inode_list:
            self.core.forget(inode)
        self.forgotten += len(inode_list)

    def _missing(self, parent: int) -> pyfuse3.EntryAttributes:
        """The answer to a lookup of a name that does not exist: the kernel may remember
        that for as long as it keeps names (every change of names passes through it; on a
        shared store, for what is left of the metadata timeout)."""
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = 0
        attrs.entry_timeout = min(self.cache_seconds, self.core.absence_trusted_for(parent))
        return attrs

    # -- names ----------------------------------------------------------------------------

    @request
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any) -> pyfuse3.EntryAttributes:
        parent = await self.core.entry(parent_inode)
        if name in (b".", b".."):
            target = parent if name == b"." else await self.core.entry(parent.parent or ROOT_INODE)
            return await self._attributes(target)
        entry = await self.core.child(parent, name)
        if entry is None:
            return self._missing(parent_inode)
        return await self._attributes(entry)

    @request
    async def getattr(self, inode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        return await self._attributes(await self.core.entry(inode))

    @request
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: Any,
    ) -> pyfuse3.EntryAttributes:
        entry = await self.core.entry(inode)
        where = (entry, None)
        # The kernel has checked who may change what (owner, group, mode bits).
        chown = (fields.update_uid and attr.st_uid != entry.uid) or (
            fields.update_gid and attr.st_gid != entry.gid
        )
        if chown and entry.kind == "bucket":
            raise Refused(Reason.NOT_PERMITTED, where, "a bucket's owner and group do not change")
        now = time.time_ns()
        changes: dict[str, int] = {}
        if fields.update_size:
            await self.core.check_writable(entry, where)
            if entry.kind != "object":
                raise Refused(
                    Reason.IS_DIRECTORY if entry.is_dir else Reason.INVALID,
                    where,
                    "only objects have a size to change",
                )
            await self._truncate(entry, attr.st_size, fh)
        if fields.update_mode:
            if entry.kind == "bucket":  # chmod of a bucket changes its grants
                current = await self.core.bucket_acl(entry)
                mode = stat.S_IMODE(attr.st_mode)
                await self.core.set_bucket_acl(entry, posix_acl.with_mode(current, mode))
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
            self.core.objects.times_set(inode)
        changes["ctime_ns"] = now
        await self.core.change_attributes(entry, **changes)
        return await self._attributes(entry)

    async def _truncate(self, entry: Entry, size: int, fh: int | None) -> None:
        """Truncate through the caller's open handle, or as a whole new version."""
        if fh is not None:
            handle = self.core.objects.get(fh)
            if handle.writable:
                await self.core.objects.truncate(handle, size)
                return
        handle = await self.core.objects.open(entry, writable=True, truncate=False)
        try:
            await self.core.objects.truncate(handle, size)
            await self.core.objects.commit(handle, durable=False)
        finally:
            await self.core.objects.release(handle)

    @request
    async def readlink(self, inode: int, ctx: Any) -> bytes:
        entry = await self.core.entry(inode)
        if entry.kind != "symlink" or entry.target is None:
            raise Refused(Reason.INVALID, (entry, None), "not a symlink")
        return entry.target.encode()

    @request
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        parent = await self.core.entry(parent_inode)
        text = await self.core.new_name(parent, name, "dir")
        if parent.kind == "root":
            entry = await self.core.create_bucket(parent, text, ctx.uid, ctx.gid)
        else:
            entry = await self.core.make_entry(parent, text, "dir", mode, ctx)
        return await self._attributes(entry)

    @request
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        parent = await self.core.entry(parent_inode)
        text = await self.core.new_name(parent, name, "symlink")
        try:
            target_text = target.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(
                Reason.INVALID,
                (parent, name),
                "symlink targets must be valid UTF-8",
            ) from None
        entry = await self.core.make_entry(parent, text, "symlink", 0o777, ctx, target_text)
        return self.attributes(entry)

    @request
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        parent = await self.core.entry(parent_inode)
        special = _SPECIAL_KINDS.get(stat.S_IFMT(mode))
        if special is not None:
            text = await self.core.new_name(parent, name, special)
            entry = await self.core.make_entry(parent, text, special, mode, ctx, rdev=rdev)
            return self.attributes(entry)
        entry, handle = await self._create_object(parent, name, mode, ctx)
        await self.core.objects.release(handle)
        return self.attributes(entry)

    @request
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        entry = await self.core.entry(inode)
        new_parent = await self.core.entry(new_parent_inode)
        return self.attributes(await self.core.link(entry, new_parent, new_name))

    @request
    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        parent = await self.core.entry(parent_inode)
        await self.core.remove_name(self.core.iam.identify(ctx), parent, name, directory=False)

    @request
    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        parent = await self.core.entry(parent_inode)
        await self.core.remove_name(self.core.iam.identify(ctx), parent, name, directory=True)

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
        old_parent = await self.core.entry(parent_inode_old)
        new_parent = await self.core.entry(parent_inode_new)
        entry = await self.core.existing(old_parent, name_old)
        where = (old_parent, name_old)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise Refused(Reason.INVALID, where, "RENAME_EXCHANGE is not supported")
        replace = not flags & pyfuse3.RENAME_NOREPLACE
        await self.core.rename(entry, where, new_parent, name_new, replace)

    # -- objects ----------------------------------------------------------------------------

    async def _create_object(
        self, parent: Entry, name: bytes, mode: int, ctx: Any, in_place: bool = False
    ) -> tuple[Entry, Handle]:
        text = await self.core.new_name(parent, name, "object")
        entry = await self.core.new_object(
            parent, text, self.core.masked(mode, ctx), ctx.uid, ctx.gid
        )
        who = self.core.iam.identify(ctx)
        handle = await self.core.objects.open(
            entry, True, truncate=True, process=who.process, uid=who.uid, in_place=in_place
        )
        return entry, handle

    @request
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = await self.core.entry(parent_inode)
        # Made without O_TRUNC (as SQLite makes its files), it is updated in place.
        in_place = not flags & os.O_TRUNC
        entry, handle = await self._create_object(parent, name, mode, ctx, in_place)
        return _file_info(handle, flags), self.attributes(entry)

    @request
    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        entry = await self.core.entry(inode)
        where = (entry, None)
        if entry.kind != "object":
            raise Refused(
                Reason.IS_DIRECTORY if entry.is_dir else Reason.INVALID, where, "not an object"
            )
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        if writable:
            await self.core.check_writable(entry, where)
        who = self.core.iam.identify(ctx)
        handle = await self.core.objects.open(
            entry,
            writable,
            truncate=bool(flags & os.O_TRUNC),
            process=who.process,
            uid=who.uid,
            past=self.core.view.is_view(inode),
        )
        return _file_info(handle, flags)

    @request
    async def read(self, fh: int, off: int, size: int) -> bytes:
        data = await self.core.objects.read(self.core.objects.get(fh), off, size)
        _READ.inc(len(data))
        return data

    @request
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.core.objects.get(fh)
        if not handle.writable:
            raise Refused(Reason.NOT_WRITABLE, (handle.entry, None), "not open for writing")
        written = await self.core.objects.write(handle, off, buf)
        _WRITTEN.inc(written)
        entry = handle.entry
        if handle.uid != 0 and _privileges(entry.mode):
            # As on a local disk, a write by anyone but root clears set-user-ID, and
            # set-group-ID where the group may execute.
            await self.core.change_attributes(entry, mode=entry.mode & ~_privileges(entry.mode))
            self.core.attributes_changed(entry.kernel_inode)
        return written

    @request
    async def flush(self, fh: int) -> None:
        handle = self.core.objects.get(fh)
        if self.core.objects.working(handle).dirty:
            await self.core.objects.commit(handle, durable=False)

    @request
    async def release(self, fh: int) -> None:
        await self.core.objects.release(self.core.objects.get(fh))

    @request
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.core.objects.make_durable(self.core.objects.get(fh))

    # -- the store ----------------------------------------------------------------------------

    @request
    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        space = await usage.space(self.core)
        result = pyfuse3.StatvfsData()
        result.f_bsize = BLOCK_SIZE
        result.f_frsize = space.block_size
        result.f_blocks = space.blocks
        result.f_bfree = result.f_bavail = space.free_blocks
        result.f_files = space.files
        result.f_ffree = result.f_favail = space.free_files
        result.f_namemax = names.MAX_COMPONENT_BYTES
        return result


def _file_info(handle: Handle, flags: int) -> pyfuse3.FileInfo:
    """How the kernel serves an open file. A reader reads with direct I/O, every read
    from the version it pinned: the page cache is the inode's, shared with every
    version; so does a writer that replaces the object (O_TRUNC), which works alone.
    Writers that update the object in place share its working copy through the page
    cache, so that they can map it `MAP_SHARED` (SQLite's `-shm` in WAL mode); they
    start from what the daemon holds (`keep_cache` off). docs/design.md says what
    this costs. A write-only descriptor can never be mapped, so it writes with direct
    I/O even in place (tar, cp and git make new files so): the kernel then neither
    splits its writes at pages nor asks `security.capability` before each one, and
    (since Linux 6.6) drops what the page cache holds of the range each one writes,
    so the other writers in place still read and map what it wrote."""
    cached = handle.in_place and flags & os.O_ACCMODE == os.O_RDWR
    return pyfuse3.FileInfo(fh=handle.fh, direct_io=not cached, keep_cache=False)


def _privileges(mode: int) -> int:
    """The set-ID bits that a write by an unprivileged process clears."""
    bits = mode & stat.S_ISUID
    if mode & stat.S_ISGID and mode & stat.S_IXGRP:
        bits |= stat.S_ISGID
    return bits
