"""What the metadata store keeps of each name: the entries of the namespace and buckets;
and what a commit changes of an object."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsobj.metadata.archive import Archive


@dataclasses.dataclass(slots=True)
class Entry:
    """One name in the namespace: the root, a bucket, a directory, an object, a symlink, or
    a FIFO, socket or device node."""

    inode: int
    parent: int
    name: str
    kind: str
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    object_id: str | None = None
    size: int = 0
    etag: str | None = None
    content_type: str | None = None
    target: str | None = None
    checksums: bytes | None = None  # CRC-32 per chunk of the blob (datastore.Digest)
    # A new object's blob committed without a sync: the generation of the group sync that
    # makes it durable (see MetadataStore); 0 when none was needed.
    unsynced: int = 0
    subdirs: int = 0  # directories only: how many directories it holds (st_nlink - 2)
    blocks: int | None = None  # a sparse blob's 512-byte blocks (None: as its size says)
    rdev: int = 0  # a device node's device number
    # Hard links: the inode the kernel knows every name of the file by (None: this
    # row's own), and how many names the file has.
    file_inode: int | None = None
    links: int = 1
    # In a versioned bucket: the id of the current version (None: S3's "null" version).
    version_id: str | None = None

    @property
    def kernel_inode(self) -> int:
        """The file's inode, the same for all its names (hard links)."""
        return self.inode if self.file_inode is None else self.file_inode

    @property
    def is_dir(self) -> bool:
        return self.kind in ("root", "bucket", "dir")


@dataclasses.dataclass(frozen=True, slots=True)
class Expected:
    """What a conditional write (S3's If-None-Match: *, If-Match) needs its key to hold
    when it lands: no object at all, or the object of this ETag."""

    absent: bool = False
    etag: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Commit:
    """A new version of an object, as one transaction records it: its blob, written and
    checked already, and the metadata that changes with it."""

    object_id: str
    size: int
    etag: str | None  # None: computed after the commit (service/etags.py)
    checksums: bytes | None
    blocks: int | None
    content_type: str | None  # None: none was ever said (setfattr -x took it away)
    ctime_ns: int
    mtime_ns: int | None = None  # None: as it was (an explicit utime set it meanwhile)
    user_metadata: dict[str, bytes] | None = None  # all of it; None: as it was
    # The group sync that makes a new object's blob durable (Entry.unsynced); 0: durable.
    unsynced: int = 0
    shares_blob: bool = False  # a copy: the blob is its source's, which must still be named
    # In a versioned bucket: how the version it replaces is kept (metadata.versions), and
    # so the new version's id; else `version_id` is it (None: "null").
    archive: Archive | None = None
    version_id: str | None = None
    # A past version (bucket, key, version id) that becomes current again: it leaves the
    # history in the same transaction.
    restores: tuple[int, str, str] | None = None
    # What the name must hold when the commit lands, or the commit fails alone.
    expects: Expected | None = None
    # Items of user metadata that describe the content (an S3 checksum, how the blob is
    # sealed), set (None: removed) with it when `user_metadata` is None (kept).
    notes: tuple[tuple[str, bytes | None], ...] = ()

    def attributes(self) -> dict[str, Any]:
        """The entry's attributes that change (user metadata is not one)."""
        changed = {
            "object_id": self.object_id,
            "size": self.size,
            "etag": self.etag,
            "checksums": self.checksums,
            "blocks": self.blocks,
            "content_type": self.content_type,
            "ctime_ns": self.ctime_ns,
            "unsynced": self.unsynced,
            "version_id": self.archive.version_id if self.archive else self.version_id,
        }
        if self.mtime_ns is not None:
            changed["mtime_ns"] = self.mtime_ns
        return changed


@dataclasses.dataclass(slots=True)
class Bucket:
    inode: int
    name: str
    owner_uid: int
    created_ns: int


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """What one owner's objects in one bucket hold: current objects (each name of a file
    counted, as S3 lists keys) and past versions of a versioned bucket, with their bytes."""

    bucket: int
    uid: int
    objects: int = 0
    bytes: int = 0
    versions: int = 0
    version_bytes: int = 0

    def counts(self) -> tuple[int, int, int, int]:
        return (self.objects, self.bytes, self.versions, self.version_bytes)

    @classmethod
    def total(cls, rows: Iterable[Usage], bucket: int = 0, uid: int = -1) -> Usage:
        """The sum of `rows` (of several owners or buckets: `uid` -1, `bucket` 0)."""
        sums = [0, 0, 0, 0]
        for row in rows:
            for at, value in enumerate(row.counts()):
                sums[at] += value
        return cls(bucket, uid, *sums)
