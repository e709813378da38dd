"""What the metadata store keeps of each name: the entries of the namespace and buckets."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(slots=True)
class Entry:
    """One name in the namespace: the root, a bucket, a directory, an object or a symlink."""

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

    @property
    def is_dir(self) -> bool:
        return self.kind in ("root", "bucket", "dir")


@dataclasses.dataclass(slots=True)
class Bucket:
    inode: int
    name: str
    owner_uid: int
    created_ns: int
