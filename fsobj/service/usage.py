"""Usage: what each bucket holds, by owner (objects, past versions, and their bytes),
exact as commits happen: the metadata store counts every change in the transaction that
makes it, so nothing here scans. `fsobj bucket ls -l`, `fsobj du`, `df` on the mount and
S3's HEAD bucket show it."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from fsobj.metadata.entries import Entry, Usage

if TYPE_CHECKING:
    from fsobj.service.core import Service

__all__ = ["Space", "Usage", "of_bucket", "of_store", "space"]


async def of_bucket(core: Service, bucket: Entry) -> list[Usage]:
    """What `bucket` holds, by owner (the caller's right to know is checked already)."""
    return await core._meta.usage(bucket.inode)


async def of_store(core: Service) -> dict[str, list[Usage]]:
    """What every bucket holds, by owner, by bucket name (for administrators)."""
    names = {bucket.inode: bucket.name for bucket in await core._meta.buckets()}
    found: dict[str, list[Usage]] = {name: [] for name in sorted(names.values())}
    for row in await core._meta.usage():
        if row.bucket in names:
            found[names[row.bucket]].append(row)
    return found


@dataclasses.dataclass(frozen=True)
class Space:
    """The mount's size for statfs (`df`): what the store holds as used, with the room
    left on the disk of its blobs as free; `df -i` counts objects and past versions."""

    block_size: int
    blocks: int
    free_blocks: int
    files: int
    free_files: int


async def space(core: Service) -> Space:
    held = Usage.total(await core._meta.usage())
    disk: os.statvfs_result = core.capacity()
    block_size = disk.f_frsize or 4096
    used = -(-(held.bytes + held.version_bytes) // block_size)
    return Space(
        block_size,
        used + disk.f_bavail,
        disk.f_bavail,
        held.objects + held.versions + disk.f_favail,
        disk.f_favail,
    )
