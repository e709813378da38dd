"""Tags of objects and buckets (S3's tag sets), kept as an item of their user metadata
(`names.TAGS`): read and changed over S3 (s3/tagging.py) and on the mount
(`user.fsobj.tags`), matched by lifecycle rules."""

from __future__ import annotations

from fsobj.iam.policy import Identity, Permission
from fsobj.refusals import Reason, Refused
from fsobj.service import Entry, names
from fsobj.service.objects import ObjectService, W


async def tags(
    service: ObjectService, who: Identity, bucket: str, key: str
) -> list[tuple[str, str]]:
    """An object's tags, which `who` may read as its content (GetObjectTagging)."""
    entry = await service.head(who, bucket, key)
    stored = (await service.core.user_metadata(entry)).get(names.TAGS)
    return [] if stored is None else names.parse_tags(stored)


async def set_tags(
    service: ObjectService,
    who: Identity,
    bucket: str,
    key: str,
    tags: list[tuple[str, str]] | None,
) -> None:
    """Replace an object's tags (None: remove them), which `who` may do where it may
    write the object (PutObjectTagging, DeleteObjectTagging). Its content and version
    stay: tags are metadata."""
    entry, acl = await service._existing(who, bucket, key)
    if entry.kind != "object":
        raise Refused(Reason.NO_SUCH_KEY, None, f"no object {key!r}")
    service._require(who, acl, entry, W, bucket)
    await _set_tags(service, entry, tags)


async def bucket_tags(
    service: ObjectService, who: Identity, name: str
) -> list[tuple[str, str]] | None:
    """A bucket's tags (None: it has none), for who may read its ACL."""
    entry, _ = await service.bucket(who, name, Permission.READ_ACP)
    stored = (await service.core.user_metadata(entry)).get(names.TAGS)
    return None if stored is None else names.parse_tags(stored)


async def set_bucket_tags(
    service: ObjectService, who: Identity, name: str, tags: list[tuple[str, str]] | None
) -> None:
    """Replace a bucket's tags (None: remove them), for who may change its ACL."""
    entry, _ = await service.bucket(who, name, Permission.WRITE_ACP)
    await _set_tags(service, entry, tags, most=names.MAX_BUCKET_TAGS)


async def _set_tags(
    service: ObjectService,
    entry: Entry,
    tags: list[tuple[str, str]] | None,
    most: int = names.MAX_TAGS,
) -> None:
    stored = None if tags is None else names.tag_set(tags, most)
    await service.core.set_item(entry, names.TAGS, stored)
