"""S3 versioning of a bucket, as both front ends see it: whether a bucket keeps what its
changes replace (Enabled), or keeps what it has but makes only the "null" version from
now on (Suspended); never back to neither. A commit, a removal or a rename in such a
bucket archives the version it replaces in its own transaction (metadata/archive.py).

The state is an item of the bucket's user metadata (`VERSIONING`), read from the cache,
so a commit in a bucket without versioning pays a dictionary look-up."""

from __future__ import annotations

import dataclasses
import secrets
import time
from typing import TYPE_CHECKING

from fsobj.metadata.archive import Archive
from fsobj.metadata.entries import Entry
from fsobj.refusals import Reason, Refused

if TYPE_CHECKING:
    from fsobj.service.core import Service

VERSIONING = "fsobj.versioning"
ENABLED, SUSPENDED = "Enabled", "Suspended"


def new_version_id() -> str:
    """A version id: 32 characters, in the order the versions were made (the time first),
    as S3's are opaque and URL-safe."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


async def state(core: Service, bucket: Entry) -> str | None:
    """Enabled, Suspended, or None (never enabled)."""
    found = (await core.user_metadata(bucket)).get(VERSIONING)
    return None if found is None else found.decode()


async def set_state(core: Service, bucket: Entry, new: str) -> None:
    """PutBucketVersioning: Enabled or Suspended (a bucket never goes back to neither)."""
    if new not in (ENABLED, SUSPENDED):
        raise Refused(Reason.BAD_ARGUMENT, None, "versioning is Enabled or Suspended")
    if new == SUSPENDED and await state(core, bucket) is None:
        return  # nothing to suspend: S3 keeps such a bucket unversioned
    await core.set_item(bucket, VERSIONING, new.encode())


async def archive(core: Service, entry: Entry) -> Archive | None:
    """How a change to the object `entry` keeps what it replaces, or None where its
    bucket has no versioning. What the change makes (a new version, a delete marker)
    gets a new version id while Enabled, "null" when Suspended."""
    if entry.kind != "object":
        return None
    bucket = await core.bucket_of(entry)
    if bucket is None:
        return None
    now = await state(core, bucket)
    if now is None:
        return None
    key = (await core.path_of(entry)).removeprefix(f"/{bucket.name}/")
    enabled = now == ENABLED
    return Archive(entry.inode, bucket.inode, key, enabled, new_version_id() if enabled else None)


async def move_archives(
    core: Service, entry: Entry, new_parent: Entry, new_name: str, replaced: Entry | None
) -> tuple[Archive | None, Archive | None] | None:
    """How a rename touching a versioned bucket is kept as S3 sees it: the old key
    deleted, the new key given a new version (NamespaceStore.move). A directory there
    moves key by key (EXDEV: `mv` then copies and removes each file)."""
    if entry.is_dir:
        for directory in (entry, new_parent):
            bucket = await core.bucket_of(directory)
            if bucket is not None and await state(core, bucket) is not None:
                raise Refused(Reason.VERSIONED_MOVE, None, "a versioned bucket's directory")
        return None
    # What the new key holds, or the entry as it will be there: its new version's id.
    moved = dataclasses.replace(entry, parent=new_parent.inode, name=new_name)
    old_key, new_key = await archive(core, entry), await archive(core, replaced or moved)
    return None if old_key is None and new_key is None else (old_key, new_key)
