"""The API service: FUSE operations turned into bucket and object requests.

Each handler resolves the request to buckets and keys, asks IAM, and then acts through the
metadata store (names, attributes, user metadata) and the data store (blobs, via the open
handles in `handles`). Refusals raise `Refused`, which the `request` wrapper turns into the
errno and one log line naming operation, path and reason.
"""

from __future__ import annotations

import bisect
import errno
import functools
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pyfuse3

from . import names
from .datastore import DataStore
from .handles import OpenObjects
from .iam import Identity, Permission, Policy
from .metadata import Entry, MetadataStore
from .schema import ROOT_INODE

log = logging.getLogger(__name__)

BLOCK_SIZE = 128 * 1024  # st_blksize: the buffer size cp and friends use
CACHE_SECONDS = 5.0  # how long the kernel may keep entries and attributes
READDIR_PAGE = 1000
USER_METADATA_LIMIT = 2048  # bytes of names and values, as S3's x-amz-meta-*
SYSTEM_PREFIX = "user.fsobj."
SETTABLE_SYSTEM = {"user.fsobj.content-type"}

_KIND_TYPE = {
    "root": stat.S_IFDIR,
    "bucket": stat.S_IFDIR,
    "dir": stat.S_IFDIR,
    "object": stat.S_IFREG,
    "symlink": stat.S_IFLNK,
}


# Where a request acts: an entry, or a name inside a directory entry. The path is spelled
# out only when a refusal is logged, so allowed requests never pay for it.
Where = tuple[Entry, bytes | None]


class Refused(Exception):
    """An ordinary refusal of bad input: an errno, where, and the reason; no traceback."""

    def __init__(self, errno_: int, where: Where, reason: str):
        super().__init__(reason)
        self.errno = errno_
        self.where = where
        self.reason = reason


def request(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Turn every failure of a handler into an errno the kernel can pass on."""
    op = fn.__name__

    @functools.wraps(fn)
    async def handler(self: Operations, *args: Any) -> Any:
        try:
            return await fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except Refused as refusal:
            log.info(
                "%s %s refused (%s): %s",
                op,
                await self.describe(*refusal.where),
                errno.errorcode.get(refusal.errno, refusal.errno),
                refusal.reason,
            )
            raise pyfuse3.FUSEError(refusal.errno) from None
        except OSError as error:
            log.warning("%s failed: %s", op, error)
            raise pyfuse3.FUSEError(error.errno or errno.EIO) from None
        except Exception:
            log.exception("%s failed unexpectedly", op)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return handler


class Operations(pyfuse3.Operations):
    def __init__(self, meta: MetadataStore, data: DataStore, iam: Policy):
        super().__init__()
        self.meta = meta
        self.data = data
        self.iam = iam
        self.objects = OpenObjects(meta, data)
        self._listings: dict[int, _Listing] = {}
        self._next_listing = 1

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

    async def _authorize(
        self, ctx: Any, permission: Permission, entry: Entry, name: bytes | None = None
    ) -> None:
        """Ask IAM whether the caller holds `permission` on the bucket of `entry`."""
        bucket = await self._bucket_of(entry)
        who = Identity(ctx.uid, ctx.gid, ctx.pid)
        if not self.iam.allows(who, permission, bucket.name if bucket else ""):
            raise Refused(errno.EACCES, (entry, name), f"uid {ctx.uid} lacks {permission.value}")

    async def _new_name(self, parent: Entry, raw: bytes, ctx: Any, what: str) -> str:
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
        await self._authorize(ctx, Permission.WRITE, parent, raw)
        if await self.meta.lookup(parent.inode, name) is not None:
            raise Refused(errno.EEXIST, where, "exists already")
        return name

    def attributes(self, entry: Entry) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = entry.inode
        attrs.st_mode = _KIND_TYPE[entry.kind] | entry.mode
        attrs.st_nlink = 1  # for directories: "not counted", so find does not guess
        attrs.st_uid = entry.uid
        attrs.st_gid = entry.gid
        size = self.objects.staged_size(entry) if entry.kind == "object" else entry.size
        attrs.st_size = size
        attrs.st_blksize = BLOCK_SIZE
        attrs.st_blocks = (size + 511) // 512
        attrs.st_atime_ns = entry.atime_ns
        attrs.st_mtime_ns = entry.mtime_ns
        attrs.st_ctime_ns = entry.ctime_ns
        attrs.entry_timeout = CACHE_SECONDS
        attrs.attr_timeout = CACHE_SECONDS
        return attrs

    def _new_entry(self, parent: Entry, name: str, kind: str, mode: int, ctx: Any) -> Entry:
        now = time.time_ns()
        if kind != "symlink":  # a symlink's mode is always 0777
            mode = mode & 0o7777 & ~ctx.umask
        return Entry(0, parent.inode, name, kind, mode, ctx.uid, ctx.gid, now, now, now)

    # -- names ----------------------------------------------------------------------------

    @request
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any) -> pyfuse3.EntryAttributes:
        parent = await self._entry(parent_inode)
        if name == b".":
            return self.attributes(parent)
        if name == b"..":
            return self.attributes(await self._entry(parent.parent or ROOT_INODE))
        try:
            text = names.decode_component(name)
        except names.BadName as bad:
            if bad.errno == errno.ENAMETOOLONG:
                raise Refused(bad.errno, (parent, name), bad.rule) from None
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        entry = await self.meta.lookup(parent_inode, text)
        if entry is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self.attributes(entry)

    @request
    async def getattr(self, inode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        return self.attributes(await self._entry(inode))

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
        await self._authorize(ctx, Permission.WRITE, entry)
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
        return self.attributes(entry)

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
        text = await self._new_name(parent, name, ctx, "dir")
        kind = "bucket" if parent.kind == "root" else "dir"
        entry = self._new_entry(parent, text, kind, mode, ctx)
        await self.meta.insert(entry, bucket_owner=ctx.uid if kind == "bucket" else None)
        if kind == "bucket":
            log.info("created bucket %s for uid %d", text, ctx.uid)
        return self.attributes(entry)

    @request
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        parent = await self._entry(parent_inode)
        text = await self._new_name(parent, name, ctx, "symlink")
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
        return self.attributes(entry)

    @request
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        parent = await self._entry(parent_inode)
        if not stat.S_ISREG(mode):
            raise Refused(
                errno.EPERM,
                (parent, name),
                "only objects, directories and symlinks can be stored",
            )
        entry, handle = await self._create_object(parent, name, mode, ctx)
        await self.objects.release(handle)
        return self.attributes(entry)

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
        await self._authorize(ctx, Permission.WRITE, parent, name)
        await self.meta.delete(entry, time.time_ns())
        await self.objects.unlinked(entry)

    @request
    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        parent = await self._entry(parent_inode)
        entry, where = await self._existing(parent, name)
        if not entry.is_dir:
            raise Refused(errno.ENOTDIR, where, "not a directory")
        await self._authorize(ctx, Permission.WRITE, entry)
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
        await self._authorize(ctx, Permission.WRITE, old_parent, name_old)
        await self._authorize(ctx, Permission.WRITE, new_parent, name_new)
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
        await self.meta.move(entry, new_parent.inode, new_name, time.time_ns(), replaced)
        if replaced is not None:
            await self.objects.unlinked(replaced)

    # -- objects ----------------------------------------------------------------------------

    async def _create_object(self, parent: Entry, name: bytes, mode: int, ctx: Any):
        text = await self._new_name(parent, name, ctx, "object")
        entry = self._new_entry(parent, text, "object", mode, ctx)
        await self.meta.insert(entry)
        handle = await self.objects.open(entry, writable=True, truncate=True)
        return entry, handle

    @request
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = await self._entry(parent_inode)
        entry, handle = await self._create_object(parent, name, mode, ctx)
        info = pyfuse3.FileInfo(fh=handle.fh, direct_io=handle.direct_io, keep_cache=False)
        return info, self.attributes(entry)

    @request
    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        entry = await self._entry(inode)
        where = (entry, None)
        if entry.kind != "object":
            raise Refused(errno.EISDIR if entry.is_dir else errno.EINVAL, where, "not an object")
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        permission = Permission.WRITE if writable else Permission.READ
        await self._authorize(ctx, permission, entry)
        handle = await self.objects.open(entry, writable, truncate=bool(flags & os.O_TRUNC))
        return pyfuse3.FileInfo(
            fh=handle.fh, direct_io=handle.direct_io, keep_cache=self.objects.keep_cache(handle)
        )

    @request
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self.objects.read(self.objects.get(fh), off, size)

    @request
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.objects.get(fh)
        if not handle.writable:
            raise pyfuse3.FUSEError(errno.EBADF)
        return await self.objects.write(handle, off, buf)

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

    # -- directories ------------------------------------------------------------------------

    @request
    async def opendir(self, inode: int, ctx: Any) -> int:
        entry = await self._entry(inode)
        if not entry.is_dir:
            raise Refused(errno.ENOTDIR, (entry, None), "not a directory")
        if entry.kind != "root":
            await self._authorize(ctx, Permission.READ, entry)
        fh = self._next_listing
        self._next_listing += 1
        self._listings[fh] = _Listing(inode)
        return fh

    @request
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self._listings[fh]
        while True:
            page = await listing.page_after(self.meta, start_id)
            if not page:
                return
            for entry in page:
                # an entry moved away since the page was read is skipped
                if entry.parent == listing.inode and not pyfuse3.readdir_reply(
                    token, entry.name.encode(), self.attributes(entry), entry.inode
                ):
                    return
                start_id = entry.inode

    @request
    async def releasedir(self, fh: int) -> None:
        self._listings.pop(fh, None)

    @request
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        await self.data.sync_all()
        await self.meta.make_durable()

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

    @request
    async def access(self, inode: int, mode: int, ctx: Any) -> bool:
        await self._entry(inode)
        return True

    async def forget(self, inode_list: Any) -> None:
        return None

    # -- metadata as extended attributes ----------------------------------------------------

    async def _system_metadata(self, entry: Entry, name: str) -> str | None:
        field = name[len(SYSTEM_PREFIX) :]
        if field == "bucket":
            bucket = await self._bucket_of(entry)
            return bucket.name if bucket else None
        if field == "key":
            bucket = await self._bucket_of(entry)
            if bucket is None or bucket is entry:
                return None
            key = (await self.path_of(entry))[len(bucket.name) + 2 :]
            return key + "/" if entry.is_dir else key
        if entry.kind != "object":
            return None
        return {"id": entry.object_id, "etag": entry.etag, "content-type": entry.content_type}.get(
            field
        )

    @request
    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        entry = await self._entry(inode)
        text = name.decode("utf-8", "replace")
        if not text.startswith("user."):
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        await self._authorize(ctx, Permission.READ, entry)
        if text.startswith(SYSTEM_PREFIX):
            value = await self._system_metadata(entry, text)
            if value is None:
                raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
            return value.encode()
        found = (await self.meta.user_metadata(inode)).get(text[len("user.") :])
        if found is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return found

    @request
    async def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        entry = await self._entry(inode)
        await self._authorize(ctx, Permission.READ, entry)
        return [b"user." + key.encode() for key in await self.meta.user_metadata(inode)]

    async def _metadata_target(self, inode: int, name: bytes, ctx: Any) -> tuple[Entry, str]:
        """The entry and user metadata name that a setxattr/removexattr changes."""
        entry = await self._entry(inode)
        where = (entry, None)
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(errno.EINVAL, where, "metadata names must be UTF-8") from None
        if not text.startswith("user."):
            raise Refused(errno.ENOTSUP, where, f"{text}: only user.* metadata is stored")
        await self._authorize(ctx, Permission.WRITE, entry)
        if text.startswith(SYSTEM_PREFIX) and text not in SETTABLE_SYSTEM:
            raise Refused(errno.EPERM, where, f"{text} is read-only system metadata")
        return entry, text

    @request
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        entry, text = await self._metadata_target(inode, name, ctx)
        where = (entry, None)
        if text in SETTABLE_SYSTEM:
            if entry.kind != "object":
                raise Refused(errno.EPERM, where, "only objects have a content type")
            try:
                content_type = value.decode("ascii")
            except UnicodeDecodeError:
                raise Refused(errno.EINVAL, where, "content types are ASCII") from None
            await self.meta.update(entry, content_type=content_type, ctime_ns=time.time_ns())
            return
        key = text[len("user.") :]
        current = await self.meta.user_metadata(inode)
        total = sum(len(k.encode()) + len(v) for k, v in current.items() if k != key)
        if total + len(key.encode()) + len(value) > USER_METADATA_LIMIT:
            raise Refused(
                errno.E2BIG,
                where,
                f"user metadata is limited to {USER_METADATA_LIMIT} bytes per object",
            )
        await self.meta.set_user_metadata(inode, key, value)

    @request
    async def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        entry, text = await self._metadata_target(inode, name, ctx)
        if text in SETTABLE_SYSTEM:
            await self.meta.update(entry, content_type=None)
            return
        key = text[len("user.") :]
        if key not in await self.meta.user_metadata(inode):
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        await self.meta.set_user_metadata(inode, key, None)


class _Listing:
    """An open directory: the page of entries last fetched, so that each of the kernel's
    small readdir requests is served from memory and the database sees one query per page."""

    def __init__(self, inode: int):
        self.inode = inode
        self._after = -1  # the start_id the page was fetched after
        self._page: list[Entry] = []
        self._ids: list[int] = []
        self._complete = False  # the page reaches the end of the directory

    async def page_after(self, meta: MetadataStore, start_id: int) -> list[Entry]:
        if 0 <= self._after <= start_id:
            index = bisect.bisect_right(self._ids, start_id)
            if index < len(self._ids):
                return self._page[index:]
            if self._complete:
                return []
        self._after = start_id
        self._page = await meta.children(self.inode, start_id, READDIR_PAGE)
        log.debug("listing %d: read %d entries after %d", self.inode, len(self._page), start_id)
        self._ids = [entry.inode for entry in self._page]
        self._complete = len(self._page) < READDIR_PAGE
        return self._page
