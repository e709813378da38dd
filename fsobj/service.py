"""The API service's core: the state every request handler shares, and the steps that
resolve a request (inode to entry, entry to bucket, the caller's access to it) and answer
it (attributes, the kernel's references). The FUSE handlers build on it: `listings`,
`xattrs` and `operations`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import math
import os
import stat
import time
from typing import Any, NoReturn

import pyfuse3
import trio

from . import gc, names, posix_acl
from .datastore import DataStore
from .handles import OpenObjects
from .iam import Acl, Grant, Identity, Permission, Policy
from .metadata import Entry, MetadataStore
from .refusals import Refused, Where
from .uploads import ABANDONED_UPLOAD, Uploads

log = logging.getLogger("fsobj.operations")

BLOCK_SIZE = 1 << 20  # st_blksize: cp and friends use buffers this big (1 MiB requests)
# How long the kernel may keep a bucket's name: a bucket exists for everyone, and it
# changes only through the kernel (mkdir, rmdir), so the kernel's entry stays true (on a
# shared store, other hosts change buckets: see Service.attributes).
BUCKET_ENTRY_SECONDS = 300.0
PLACES = 50_000  # directories whose bucket and key prefix are remembered

_KIND_TYPE = {
    "root": stat.S_IFDIR,
    "bucket": stat.S_IFDIR,
    "dir": stat.S_IFDIR,
    "object": stat.S_IFREG,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Access:
    """What one caller may do on the bucket that holds an entry (bucket None: top level)."""

    who: Identity
    bucket: Entry | None
    acl: Acl | None
    rights: frozenset[Permission]


class Service:
    def __init__(
        self, meta: MetadataStore, data: DataStore, iam: Policy, cache_seconds: float = 0.0
    ):
        super().__init__()
        self.cache_seconds = cache_seconds
        # What an inode that is gone answers. On a shared store another host removed or
        # replaced it: ESTALE makes the kernel look the path up again and retry (NFS's way).
        self.vanished = errno.ESTALE if meta.shared else errno.ENOENT
        self.meta = meta
        self.data = data
        self.iam = iam
        self.objects = OpenObjects(meta, data)
        # Tells the kernel that what it holds of an inode changed behind its back; off
        # while no kernel is connected (tests in-process, the last commits at unmount).
        self.notify_kernel = False
        self.objects.committed = self._invalidate_attributes
        self.forgotten = 0  # inodes the kernel has let go of (operations.forget)
        self.abandoned_upload = ABANDONED_UPLOAD  # seconds: then gc removes an upload
        # Each directory's bucket and key prefix length, as of a count of directory moves.
        self._places: dict[int, tuple[int, int, int, float]] = {}

    # -- resolving requests -------------------------------------------------------------

    async def _entry(self, inode: int) -> Entry:
        entry = await self.meta.get(inode) or self.objects.orphan(inode)
        if entry is None:
            raise Refused(self.vanished, None, f"inode {inode} no longer exists")
        return entry

    async def entry(self, inode: int) -> Entry:
        """The entry of an inode that exists (ENOENT otherwise), for the object service."""
        return await self._entry(inode)

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
        directory = entry if entry.is_dir else await self.meta.get(entry.parent)
        if directory is None:  # unlinked
            return None
        bucket, _ = await self._place(directory)
        return await self.meta.get(bucket) if bucket else None

    async def _key_bytes(self, directory: Entry) -> int:
        """Bytes of the key prefix that `directory` stands for, with its trailing slash."""
        return (await self._place(directory))[1]

    async def _place(self, directory: Entry) -> tuple[int, int]:
        """(bucket inode or 0, key prefix bytes) of a directory: derived from its parents
        once, then remembered until a directory moves (which may change both for every
        directory below it), so that a request does not walk up the tree."""
        if directory.kind in ("bucket", "root"):
            return (directory.inode if directory.kind == "bucket" else 0), 0
        moves = self.meta.directory_moves
        now = time.monotonic()
        known = self._places.get(directory.inode)
        # On a shared store, other hosts move directories too: derived again once old.
        if known is not None and known[0] == moves and now < known[3]:
            return known[1], known[2]
        bucket, prefix = await self._place(await self._entry(directory.parent))
        prefix += len(directory.name.encode()) + 1
        if len(self._places) >= PLACES:
            self._places.clear()  # forgetting only means deriving again
        until = now + self.meta.fresh_seconds if self.meta.shared else math.inf
        self._places[directory.inode] = (moves, bucket, prefix, until)
        return bucket, prefix

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
            missing = " or ".join(p.value for p in needed)
            self.deny(access.who, access.bucket, (entry, name), missing)
        return access

    @staticmethod
    def deny(
        who: Identity, bucket: Entry | str | None, where: Where | None, missing: str
    ) -> NoReturn:
        """EACCES, with the audit line's reason in the one format both front ends log: who
        lacked what, on which bucket (an entry or its name)."""
        name = bucket if isinstance(bucket, str) else bucket.name if bucket else "-"
        raise Refused(
            errno.EACCES,
            where,
            f"denied: uid {who.uid} pid {who.pid} lacks {missing} on bucket {name}",
        )

    async def new_name(self, parent: Entry, raw: bytes, what: str) -> str:
        """Validate a name about to be created under `parent`; returns it as text. At the
        top level it is a bucket's, which S3's naming rules decide."""
        where = (parent, raw)
        try:
            name = names.decode_component(raw)
            if parent.kind == "root":
                if what != "dir":
                    raise Refused(
                        errno.EPERM, None, "the top level holds only buckets (mkdir creates one)"
                    )
                names.check_bucket_name(name)
            else:
                names.check_key_length(await self._key_bytes(parent) + len(raw))
        except Refused as refusal:
            if parent.kind == "root":
                refusal.subject = "bucket-name"
            raise refusal.at(where) from None
        if await self.meta.lookup(parent.inode, name) is not None:
            raise Refused(errno.EEXIST, where, "exists already")
        return name

    def attributes(
        self, entry: Entry, reuse: pyfuse3.EntryAttributes | None = None
    ) -> pyfuse3.EntryAttributes:
        """The entry's attributes, the same for every caller. A bucket's permission bits
        are those of its grants, which must have been read (`_attributes` does).
        `reuse` is an earlier result to fill in again (readdir copies each one out at
        once), which skips the fields that are the same for every entry."""
        if reuse is None:
            attrs = pyfuse3.EntryAttributes()
            attrs.st_blksize = BLOCK_SIZE
            attrs.attr_timeout = self.cache_seconds
        else:
            attrs = reuse
        if self.meta.shared:  # what is left of the metadata timeout since it was read
            attrs.entry_timeout = attrs.attr_timeout = min(
                self.cache_seconds, self.meta.trusted_for(entry)
            )
        else:
            is_bucket = entry.kind == "bucket"
            attrs.entry_timeout = BUCKET_ENTRY_SECONDS if is_bucket else self.cache_seconds
        attrs.st_ino = entry.inode
        mode = entry.mode
        if entry.kind == "bucket":
            mode = posix_acl.mode_of(self._posix_acl(entry, self.meta.cached_acl(entry.inode)))
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
        if entry.blocks is not None and size == entry.size:  # a sparse blob, as committed
            attrs.st_blocks = entry.blocks
        else:
            attrs.st_blocks = (size + 511) // 512
        attrs.st_atime_ns = entry.atime_ns
        attrs.st_mtime_ns = mtime_ns
        attrs.st_ctime_ns = entry.ctime_ns
        return attrs

    async def bucket_acl(self, bucket: Entry) -> tuple[posix_acl.AclEntry, ...]:
        """The POSIX ACL of a bucket's directory: its grants, for the kernel to check."""
        return self._posix_acl(bucket, await self.meta.acl(bucket.inode))

    def _posix_acl(self, bucket: Entry, acl: Acl) -> tuple[posix_acl.AclEntry, ...]:
        return posix_acl.from_grants(acl, bucket.gid, self.iam.admins)

    async def _attributes(self, entry: Entry) -> pyfuse3.EntryAttributes:
        if entry.kind == "bucket":
            await self.meta.acl(entry.inode)  # cached now, for `attributes`
        return self.attributes(entry)

    def _new_entry(self, parent: Entry, name: str, kind: str, mode: int, ctx: Any) -> Entry:
        if kind != "symlink":  # a symlink's mode is always 0777
            mode = self._masked(mode, ctx)
        return self.new_entry(parent, name, kind, mode, ctx.uid, ctx.gid)

    @staticmethod
    def _masked(mode: int, ctx: Any) -> int:
        """The mode a new entry gets: what was asked, less the caller's umask."""
        return mode & 0o7777 & ~ctx.umask

    @staticmethod
    def new_entry(parent: Entry, name: str, kind: str, mode: int, uid: int, gid: int) -> Entry:
        now = time.time_ns()
        return Entry(0, parent.inode, name, kind, mode, uid, gid, now, now, now)

    async def create_bucket(self, root: Entry, name: str, uid: int, gid: int) -> Entry:
        """A new bucket owned by `uid`, private whatever mode was asked (its mode bits are
        its grants'); the name is checked already."""
        entry = self.new_entry(root, name, "bucket", 0o700, uid, gid)
        await self.meta.insert(entry, bucket_owner=uid)
        log.info("created bucket %s for uid %d", name, uid)
        return entry

    async def delete_bucket(self, who: Identity, bucket: Entry, acl: Acl) -> None:
        """Remove an empty bucket: its owner or an administrator (the top level is sticky)."""
        where = (bucket, None)
        if who.uid != acl.owner and not self.iam.is_admin(who):
            self.deny(who, bucket, where, "ownership (only the owner deletes a bucket)")
        if not await self.remove(bucket):
            raise Refused(errno.ENOTEMPTY, where, "bucket is not empty", "bucket")
        log.info("removed bucket %s", bucket.name)

    async def new_object(self, parent: Entry, name: str, mode: int, uid: int, gid: int) -> Entry:
        """A new object named `name` (checked already) in `parent`, without content yet:
        in the cache alone until its first commit writes its row."""
        entry = self.new_entry(parent, name, "object", mode, uid, gid)
        await self.meta.insert(entry, deferred=True)
        return entry

    async def remove(self, entry: Entry) -> bool:
        """Remove an object, or a directory if it is empty (returns whether it was): its
        name goes at once; an object's blob once that is durable and no open file reads
        it."""
        if entry.is_dir:
            return await self.meta.delete_directory(entry, time.time_ns())
        await self.meta.delete(entry, time.time_ns())
        self.objects.unlinked(entry)
        return True

    async def name_changed(self, parent: Entry, name: str) -> None:
        """A name in `parent` was made or removed other than through the kernel (over
        S3): the kernel drops what it holds of it (an entry, or that it does not exist),
        before the request is answered. In a thread: the kernel may need to lock the
        directory, which a request that this loop is serving can hold. Never from a FUSE
        request about that name: the kernel holds the lock until it is answered."""
        if self.notify_kernel:
            with contextlib.suppress(OSError):  # ENOENT: the kernel holds nothing of it
                await trio.to_thread.run_sync(pyfuse3.invalidate_entry, parent.inode, name.encode())

    def attributes_changed(self, inode: int) -> None:
        """Something the kernel may hold of an inode changed (over S3): it asks again."""
        self._invalidate_attributes(inode)

    def _invalidate_attributes(self, inode: int) -> None:
        """Something the kernel may cache of an inode changed behind its back (a commit:
        size and times; a bucket's grants: its mode and ACL): the kernel must ask again.
        Only attributes and ACLs, which takes no lock the pending request could hold."""
        if self.notify_kernel:
            with contextlib.suppress(OSError):  # ENOENT: the kernel holds no such inode
                pyfuse3.invalidate_inode(inode, attr_only=True)

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

    def stats(self) -> dict[str, int]:
        """What the daemon holds in memory, for `fsobj stats`."""
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
        return {
            "cached_entries": self.meta.cached_entries(),
            "forgotten_inodes": self.forgotten,
            "open_handles": self.objects.open_handles(),
            "resident_bytes": resident_pages * os.sysconf("SC_PAGE_SIZE"),
        }

    async def collect_garbage(self) -> gc.Collection:
        """Remove unnamed blobs, and multipart uploads begun longer ago than
        `abandoned_upload` seconds."""
        uploads = Uploads(self.data.root)
        expired = await trio.to_thread.run_sync(uploads.expire, self.abandoned_upload)
        if expired:
            log.info("garbage collection: removed %d abandoned multipart uploads", expired)
        return await gc.collect(self.meta, self.data, self.objects.busy_blobs)
