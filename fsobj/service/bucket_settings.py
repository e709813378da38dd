"""A bucket's settings that S3 keeps with it (CORS and lifecycle rules, its policy,
Block Public Access, Object Ownership): each one item of the bucket's metadata
(`fsobj.NAME`), read by who may read the bucket's ACL and changed by who may change it,
and in force for every request whoever makes it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fsobj.iam.policy import Identity, Permission
from fsobj.refusals import Refused

if TYPE_CHECKING:
    from fsobj.metadata.entries import Entry
    from fsobj.service.objects import ObjectService

ANYONE_MAY_LOOK = Identity(0, 0, 0)  # to find a bucket's settings, not to act


async def read(service: ObjectService, who: Identity, bucket: str, item: str) -> bytes | None:
    """The setting (None: none), for who may read the bucket's ACL."""
    entry, _ = await service.bucket(who, bucket, Permission.READ_ACP)
    return (await service.core.user_metadata(entry)).get(item)


async def write(
    service: ObjectService, who: Identity, bucket: str, item: str, value: bytes | None
) -> Entry:
    """Set the setting (None: remove it), for who may change the bucket's ACL."""
    entry, _ = await service.bucket(who, bucket, Permission.WRITE_ACP)
    await service.core.set_item(entry, item, value)
    return entry


async def in_force(service: ObjectService, bucket: Entry | str, item: str) -> bytes | None:
    """The setting as it acts on requests, whoever makes them (None: none, or no such
    bucket, which the request itself is then told)."""
    if isinstance(bucket, str):
        try:
            bucket, _ = await service.bucket(ANYONE_MAY_LOOK, bucket)
        except Refused:
            return None
    return (await service.core.user_metadata(bucket)).get(item)
