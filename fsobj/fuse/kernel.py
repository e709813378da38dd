"""What the FUSE front end tells the kernel and keeps for it: the core's entries as the
kernel's attributes, and the kernel's caches kept true when something changes behind its
back (a commit at close, an S3 request, a bucket's new grants).
"""

from __future__ import annotations

import contextlib
import stat

import pyfuse3
import trio

from fsobj.service import Entry
from fsobj.service.core import Service

BLOCK_SIZE = 1 << 20  # st_blksize: cp and friends use buffers this big (1 MiB requests)
# How long the kernel may keep a bucket's name: a bucket exists for everyone, and it
# changes only through the kernel (mkdir, rmdir), so the kernel's entry stays true (on a
# shared store, other hosts change buckets: see `attributes`).
BUCKET_ENTRY_SECONDS = 300.0

KIND_TYPE = {
    "root": stat.S_IFDIR,
    "bucket": stat.S_IFDIR,
    "dir": stat.S_IFDIR,
    "object": stat.S_IFREG,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
    "chardev": stat.S_IFCHR,
    "blockdev": stat.S_IFBLK,
}


class KernelCaches:
    """The core's `Watcher` for a mount: drops what the kernel holds of a changed name or
    inode. Off while no kernel is connected (tests in-process, the last commits at
    unmount)."""

    def __init__(self) -> None:
        self.connected = False

    async def name_changed(self, parent: int, name: str) -> None:
        """In a thread: the kernel may need to lock the directory, which a request that
        this loop is serving can hold. Never from a FUSE request about that name: the
        kernel holds the lock until it is answered."""
        if self.connected:
            with contextlib.suppress(OSError):  # ENOENT: the kernel holds nothing of it
                await trio.to_thread.run_sync(pyfuse3.invalidate_entry, parent, name.encode())

    def attributes_changed(self, inode: int) -> None:
        """Only attributes and ACLs, which takes no lock the pending request could hold."""
        if self.connected:
            with contextlib.suppress(OSError):  # ENOENT: the kernel holds no such inode
                pyfuse3.invalidate_inode(inode, attr_only=True)


class FuseFrontEnd:
    """What every part of the FUSE handlers shares: the core it holds, and the kernel."""

    def __init__(self, core: Service, cache_seconds: float = 0.0) -> None:
        super().__init__()
        self.core = core
        self.cache_seconds = cache_seconds  # how long the kernel may keep an answer
        self.kernel = KernelCaches()
        core.watchers.append(self.kernel)
        self.forgotten = 0  # inodes the kernel has let go of (forget)

    async def describe(self, entry: Entry, name: bytes | None) -> str:
        """For the refusal's log line (edge.py)."""
        return await self.core.describe(entry, name)

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
        if self.core.shared:  # what is left of the metadata timeout since it was read
            attrs.entry_timeout = attrs.attr_timeout = min(
                self.cache_seconds, self.core.trusted_for(entry)
            )
        else:
            is_bucket = entry.kind == "bucket"
            attrs.entry_timeout = BUCKET_ENTRY_SECONDS if is_bucket else self.cache_seconds
        if self.core.view.is_view(entry.inode):
            # A past version's mode follows its object's, which may change or go without
            # the view hearing of it: the kernel asks each time.
            attrs.entry_timeout = attrs.attr_timeout = 0
        attrs.st_ino = entry.kernel_inode
        mode = entry.mode
        if entry.kind == "bucket":
            mode = self.core.cached_bucket_mode(entry)
        attrs.st_mode = KIND_TYPE[entry.kind] | mode
        attrs.st_uid = entry.uid
        attrs.st_rdev = entry.rdev
        attrs.st_gid = entry.gid
        objects = self.core.objects
        if entry.is_dir:
            attrs.st_nlink = 2 + entry.subdirs
        else:
            orphan = objects.orphan(entry.kernel_inode) is entry
            attrs.st_nlink = 0 if orphan else entry.links
        if entry.kind == "object":
            size, mtime_ns = objects.staged(entry)
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

    async def _attributes(self, entry: Entry) -> pyfuse3.EntryAttributes:
        if entry.kind == "bucket":
            await self.core.grants(entry)  # cached now, for `attributes`
        return self.attributes(entry)
