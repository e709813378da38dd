"""S3 versioning of a bucket, as both front ends see it: whether a bucket keeps what its
changes replace (Enabled), or keeps what it has but makes only the "null" version from
now on (Suspended); never back to neither. A commit, a removal or a rename in such a
bucket archives the version it replaces in its own transaction (metadata/archive.py).

The state is an item of the bucket's user metadata (`names.VERSIONING`), read from the cache,
so a commit in a bucket without versioning pays a dictionary look-up."""

from __future__ import annotations

import dataclasses
import secrets
import time
from typing import TYPE_CHECKING

from fsobj.iam.policy import Identity
from fsobj.metadata.archive import NULL, Archive, PastVersion
from fsobj.metadata.entries import Entry
from fsobj.refusals import Reason, Refused
from fsobj.service import names, object_lock

if TYPE_CHECKING:
    from fsobj.service.core import Service

ENABLED, SUSPENDED = "Enabled", "Suspended"


def version_id_of(entry: Entry) -> str:
    """The id of an object's current version ("null": S3's, without versioning)."""
    return entry.version_id or NULL


def new_version_id() -> str:
    """A version id: 32 characters, in the order the versions were made (the time first),
    as S3's are opaque and URL-safe."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


async def state(core: Service, bucket: Entry) -> str | None:
    """Enabled, Suspended, or None (never enabled)."""
    found = (await core.user_metadata(bucket)).get(names.VERSIONING)
    return None if found is None else found.decode()


async def set_state(core: Service, bucket: Entry, new: str) -> None:
    """PutBucketVersioning: Enabled or Suspended (a bucket never goes back to neither)."""
    if new not in (ENABLED, SUSPENDED):
        raise Refused(Reason.BAD_ARGUMENT, None, "versioning is Enabled or Suspended")
    if new == SUSPENDED and await state(core, bucket) is None:
        return  # nothing to suspend: S3 keeps such a bucket unversioned
    if new == SUSPENDED and await object_lock.bucket_lock(core, bucket) is not None:
        raise Refused(Reason.BAD_STATE, None, "a bucket with object lock keeps its versions")
    await core.set_item(bucket, names.VERSIONING, new.encode())


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


async def new_version(
    core: Service, entry: Entry, metadata: dict[str, bytes] | None
) -> tuple[Archive | None, dict[str, bytes] | None]:
    """How a commit of a new version of `entry` keeps the one it replaces, and the user
    metadata the new one gets (`metadata`, or with object lock its own retention)."""
    found = await archive(core, entry)
    if found is None:
        return None, metadata
    bucket = await core.entry(found.bucket)
    return found, await object_lock.new_version_items(core, bucket, entry, metadata)


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


async def restore(core: Service, parent: Entry, raw: bytes, version_id: str, who: Identity) -> None:
    """Make a past version of the key `raw` in `parent` its current one again, as a new
    version (as S3 restores: a copy of it onto its key), sharing its blob; the key may
    have been deleted meanwhile (a new object then, `who`'s)."""
    bucket = await core.bucket_of(parent)
    if bucket is None:
        raise Refused(Reason.NOT_PERMITTED, None, "versions live in buckets")
    name = names.decode_component(raw)
    key = (await core.path_of(parent)).removeprefix(f"/{bucket.name}").lstrip("/")
    key = f"{key}/{name}" if key else name
    past = await core._meta.past_version(bucket.inode, key, version_id)
    if past is None:
        raise Refused(Reason.NO_SUCH_VERSION, None, f"no past version {version_id} of {key}")
    if past.is_marker:
        raise Refused(Reason.DELETE_MARKER, None, f"version {version_id} is a delete marker")
    target = await core.child(parent, raw)
    if target is None:
        name = await core.new_name(parent, raw, "object")
        target = await core.new_object(parent, name, 0o644, who.uid, who.gid)
    elif target.kind != "object":
        raise Refused(Reason.IS_DIRECTORY, None, f"{key} is not an object now")
    else:
        await core.check_writable(target)
    target.content_type = past.content_type
    metadata = await core._meta.version_metadata(bucket.inode, key, version_id)
    await core.objects.share(target, entry_of(bucket, past), metadata)
    core.attributes_changed(target.kernel_inode)


def entry_of(bucket: Entry, past: PastVersion, inode: int = 0) -> Entry:
    """An entry that stands for a past version, to read or copy it: none of the
    namespace's."""
    return Entry(
        inode=inode, parent=bucket.inode, name=past.key.rpartition("/")[2], kind="object",
        mode=0o444, uid=past.uid, gid=bucket.gid, atime_ns=past.mtime_ns,
        mtime_ns=past.mtime_ns, ctime_ns=past.until_ns, object_id=past.object_id,
        size=past.size, etag=past.etag, content_type=past.content_type,
        checksums=past.checksums, blocks=past.blocks, version_id=past.version_id,
    )  # fmt: skip


async def current_object(core: Service, bucket: Entry, key: str) -> Entry | None:
    """The object that is `key`'s current version, if there is one (no access checked)."""
    entry: Entry | None = bucket
    for part in key.split("/"):
        if entry is None or not entry.is_dir:
            return None
        entry = await core.child(entry, part.encode())
    return entry if entry is not None and entry.kind == "object" else None
