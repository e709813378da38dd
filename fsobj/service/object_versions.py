"""Versions of objects by name, for the S3 front end: a bucket's versioning state, the
versions of its keys (current ones are entries, past ones and delete markers are its
history: metadata/versions.py), reading, copying and removing one by its id.

Who may: a bucket's versioning is set and read by who may change or read its ACL (as its
tags); a key's versions are listed by who may list the bucket, and read, copied or
removed by who may read or write the key's current object, or, where the key has none
now (its latest version is a delete marker), by who may read or write in the bucket."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from fsobj.iam.policy import Acl, Identity, Permission, R, W, X
from fsobj.metadata.archive import NULL, PastVersion
from fsobj.metadata.entries import Entry
from fsobj.refusals import Reason, Refused
from fsobj.service import names, object_lock, versioning
from fsobj.service.key_listing import PAGE, KeyListing
from fsobj.service.reader import Reader
from fsobj.service.versioning import version_id_of

if TYPE_CHECKING:
    from fsobj.service.objects import ObjectService

# Past versions are read through handles whose entries are none of the namespace's: they
# take inodes below zero, which no entry has.
_past_inodes = itertools.count(-1, -1)


@dataclasses.dataclass(frozen=True, slots=True)
class Version:
    """One version of a key as a listing shows it: the current one (an entry) or a past
    one (or a delete marker)."""

    key: str
    version_id: str
    latest: bool
    entry: Entry | None = None  # the current version
    past: PastVersion | None = None


@dataclasses.dataclass(slots=True)
class VersionListing:
    versions: list[Version]
    prefixes: list[str]
    truncated: bool
    next_key: str = ""
    next_version: str = ""


async def get_versioning(service: ObjectService, who: Identity, bucket: str) -> str | None:
    entry, _ = await service.bucket(who, bucket, Permission.READ_ACP)
    return await versioning.state(service.core, entry)


async def set_versioning(service: ObjectService, who: Identity, bucket: str, state: str) -> None:
    entry, _ = await service.bucket(who, bucket, Permission.WRITE_ACP)
    await versioning.set_state(service.core, entry, state)


@dataclasses.dataclass(frozen=True, slots=True)
class Found:
    """A version as `find` found it: in `bucket` at `key`, the current object or a past
    version (or delete marker)."""

    bucket: Entry
    key: str
    current: Entry | None
    past: PastVersion | None

    @property
    def owner(self) -> int:
        if self.current is not None:
            return self.current.uid
        assert self.past is not None
        return self.past.uid


async def find(
    service: ObjectService, who: Identity, bucket: str, key: str, version_id: str, write: bool
) -> Found:
    """The version `version_id` of `key`: the current object, or a past version (or
    delete marker), checked for `who` to read (or with `write`, to remove)."""
    bucket_entry, acl = await service.bucket(who, bucket)
    path = "/".join(names.key_parts(key))
    try:
        current, _ = await service._existing(who, bucket, key)
    except Refused as refusal:
        if refusal.reason is not Reason.NO_SUCH_KEY:
            raise
        current = None
    if current is not None and current.kind == "object" and version_id_of(current) == version_id:
        if write:
            parent = await service.core.entry(current.parent)
            service._require(who, acl, parent, W | X, bucket)
        else:
            service._require(who, acl, current, R, bucket)
            await service.objects.etags.fill(current)
        return Found(bucket_entry, path, current, None)
    past = await service._meta.past_version(bucket_entry.inode, path, version_id)
    if past is None:
        raise Refused(Reason.NO_SUCH_VERSION, None, f"no version {version_id} of {key!r}")
    if current is not None and current.kind == "object":
        service._require(who, acl, current, W if write else R, bucket)
    else:
        service._require(who, acl, bucket_entry, (W | X) if write else R, bucket)
    return Found(bucket_entry, path, None, await _with_etag(service, past))


async def _with_etag(service: ObjectService, past: PastVersion) -> PastVersion:
    """A past version whose blob was committed without an etag, with it (etags.py)."""
    if past.etag is not None or past.object_id is None:
        return past
    etag = await service.objects.etags.of_blob(past.object_id, past.size, past.checksums)
    return dataclasses.replace(past, etag=etag)


def past_entry(bucket: Entry, past: PastVersion) -> Entry:
    return versioning.entry_of(bucket, past, next(_past_inodes))


async def source(
    service: ObjectService, who: Identity, bucket: str, key: str, version_id: str
) -> tuple[Entry, dict[str, bytes]]:
    """A version to read or copy, and its user metadata; a delete marker is refused as
    S3 does (MethodNotAllowed)."""
    found = await find(service, who, bucket, key, version_id, write=False)
    if found.current is not None:
        return found.current, await version_items(service, found)
    assert found.past is not None
    if found.past.is_marker:
        raise Refused(Reason.DELETE_MARKER, None, f"version {version_id} is a delete marker")
    return past_entry(found.bucket, found.past), await version_items(service, found)


async def open_version(
    service: ObjectService, entry: Entry, uid: int, key: bytes | None = None
) -> Reader:
    """A reader of `entry` as `source` found it, current or past (`key`: the client's
    key of an object sealed with one)."""
    past = entry.inode <= 0
    handle = await service.objects.open(entry, False, False, uid=uid, past=past, key=key)
    return Reader(service.objects, entry, handle.fh)


async def version_items(service: ObjectService, found: Found) -> dict[str, bytes]:
    """The user metadata of a version that `find` found."""
    if found.current is not None:
        return await service.core.user_metadata(found.current)
    assert found.past is not None
    past = found.past
    return await service._meta.version_metadata(found.bucket.inode, past.key, past.version_id)


async def set_version_item(
    service: ObjectService,
    who: Identity,
    named: tuple[str, str, str | None],
    item: str,
    check: Callable[[dict[str, bytes], int], None],
    value: bytes | None,
) -> None:
    """Set (or remove) an object lock item of a version (bucket, key, version id, None:
    the current one), which `check` may refuse once it sees the version's items and
    owner; who may write the object may (S3 asks for its own permissions)."""
    bucket, key, version_id = named
    if version_id is None:
        version_id = version_id_of(await service.head(who, bucket, key))
    found = await find(service, who, bucket, key, version_id, write=True)
    if found.past is not None and found.past.is_marker:
        raise Refused(Reason.DELETE_MARKER, None, f"version {version_id} is a delete marker")
    check(await version_items(service, found), found.owner)
    if found.current is not None:
        await service.core.set_item(found.current, item, value)
    else:
        await service._meta.set_version_item(found.bucket.inode, found.key, version_id, item, value)


async def delete_version(
    service: ObjectService,
    who: Identity,
    bucket: str,
    key: str,
    version_id: str,
    bypass: bool = False,
) -> bool:
    """Remove one version for good (DeleteObject with a version id); returns whether it
    was a delete marker. When the latest goes, the newest one left becomes current, as
    in S3 (removing the delete marker that hid a key brings the key back). A version
    under object lock stays (LOCKED), but a GOVERNANCE retention that `who` may and
    asks to `bypass`."""
    found = await find(service, who, bucket, key, version_id, write=True)
    current, past = found.current, found.past
    object_lock.check_removable(await version_items(service, found), who, found.owner, bypass)
    if current is not None:
        await service.core.remove(current, keep=False)
        await service.core.name_changed(await service.core.entry(current.parent), current.name)
        marker = False
    else:
        assert past is not None
        await service._meta.remove_version(found.bucket.inode, found.key, version_id)
        if past.object_id is not None:
            service.objects.retire(past.object_id)
        marker = past.is_marker
    await _bring_back(service, who, found.bucket, found.key)
    return marker


async def _bring_back(service: ObjectService, who: Identity, bucket: Entry, key: str) -> None:
    """Make the newest past version of `key` current, if it is no delete marker and the
    key has no current object."""
    if await versioning.current_object(service.core, bucket, key) is not None:
        return
    newest = await service._meta.past_versions(bucket.inode, "", "", 1, key=key)
    if not newest or newest[0].is_marker:
        return
    past = newest[0]
    metadata = await service._meta.version_metadata(bucket.inode, key, past.version_id)
    entry, _ = await service._target(
        who, bucket, await service._meta.acl(bucket.inode), key.split("/")
    )
    entry.content_type = past.content_type
    restored = (bucket.inode, key, past.version_id)
    await service.objects.share(entry, past_entry(bucket, past), metadata, restored)
    service.core.attributes_changed(entry.kernel_inode)


async def delete_key(service: ObjectService, who: Identity, bucket: str, key: str) -> str | None:
    """DeleteObject without a version id: the object goes; in a versioned bucket a delete
    marker takes its place, made even where the key has no object now (as S3 does), and
    its id is returned."""
    bucket_entry, acl = await service.bucket(who, bucket)
    state = await versioning.state(service.core, bucket_entry)
    if state is None or key.endswith("/"):
        await service.delete(who, bucket, key)
        return None
    key = "/".join(names.key_parts(key))
    if await versioning.current_object(service.core, bucket_entry, key) is None:
        service._require(who, acl, bucket_entry, W | X, bucket)
        version_id = versioning.new_version_id() if state == versioning.ENABLED else None
        now = time.time_ns()
        await service._meta.add_marker(bucket_entry.inode, key, version_id, who.uid, now)
        return version_id or NULL
    await service.delete(who, bucket, key)
    return await hiding_marker(service, bucket_entry, key)


async def hiding_marker(service: ObjectService, bucket: Entry, key: str) -> str | None:
    """The id of the delete marker that is `key`'s latest version, if it has one."""
    newest = await service._meta.past_versions(bucket.inode, "", "", 1, key=key)
    return newest[0].version_id if newest and newest[0].is_marker else None


async def list_versions(
    service: ObjectService,
    who: Identity,
    bucket: str,
    prefix: str,
    delimiter: str,
    key_marker: str,
    version_marker: str,
    limit: int,
) -> VersionListing:
    """ListObjectVersions: every version of the keys that start with `prefix`, by key in
    S3's order and the newest of each first, current and past merged, with a delimiter
    that folds keys into common prefixes; a page starts after `key_marker` (or, with
    `version_marker`, after that version of it)."""
    bucket_entry, acl = await service.bucket(who, bucket, Permission.READ)
    listing = VersionListing([], [], False)
    folded = key_marker if delimiter and key_marker.endswith(delimiter) else None
    last: Version | str | None = None
    async for version in _merged(
        service, who, bucket_entry, acl, prefix, key_marker, version_marker
    ):
        if folded is not None and version.key.startswith(folded):
            continue  # the common prefix the last page ended with
        rest = version.key[len(prefix) :]
        if delimiter and delimiter in rest:
            common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if common == last:
                continue
            item: Version | str = common
        else:
            item = version
        if len(listing.versions) + len(listing.prefixes) == limit:
            listing.truncated = True
            if isinstance(last, str):
                listing.next_key = last
            elif last is not None:
                listing.next_key, listing.next_version = last.key, last.version_id
            break
        if isinstance(item, str):
            listing.prefixes.append(item)
        else:
            if item.entry is not None:
                await service.objects.etags.fill(item.entry)
            if item.past is not None:
                item = dataclasses.replace(item, past=await _with_etag(service, item.past))
            listing.versions.append(item)
        last = item
    return listing


async def _merged(
    service: ObjectService,
    who: Identity,
    bucket: Entry,
    acl: Acl,
    prefix: str,
    key_marker: str,
    version_marker: str,
) -> AsyncIterator[Version]:
    """Every version of the keys that start with `prefix`, after the markers, in order:
    the current objects (a key listing) and the history (by key, newest first)."""
    current = aiter(_current_versions(service, who, bucket, acl, prefix, key_marker))
    past = aiter(past_versions_of(service, bucket, prefix, key_marker, version_marker))
    c, p = await anext(current, None), await anext(past, None)
    latest_key = None  # the key whose latest version was listed
    while c is not None or p is not None:
        if p is None or (c is not None and c.key <= p.key):
            assert c is not None
            yield c
            latest_key = c.key
            c = await anext(current, None)
        else:
            latest = p.key != latest_key and p.key != key_marker
            yield dataclasses.replace(p, latest=latest)
            latest_key = p.key
            p = await anext(past, None)


async def _current_versions(
    service: ObjectService, who: Identity, bucket: Entry, acl: Acl, prefix: str, after: str
) -> AsyncIterator[Version]:
    keys = KeyListing(service._meta, service.iam, who, acl)
    while True:
        page = await keys.page(bucket, prefix, "", after, PAGE)
        for listed in page.keys:
            if listed.entry.kind == "object":
                yield Version(listed.key, version_id_of(listed.entry), True, entry=listed.entry)
        if not page.truncated:
            return
        after = page.last


async def past_versions_of(
    service: ObjectService,
    bucket: Entry,
    prefix: str,
    key_marker: str = "",
    version_marker: str = "",
) -> AsyncIterator[Version]:
    """The past versions and delete markers of the keys that start with `prefix`, by key
    and the newest of each first, after the markers (as ListObjectVersions pages)."""
    meta = service._meta
    if version_marker and key_marker.startswith(prefix):  # the rest of the marker's key
        rows = await meta.past_versions(bucket.inode, "", "", PAGE, key=key_marker)
        ids = [row.version_id for row in rows]
        start = ids.index(version_marker) + 1 if version_marker in ids else 0
        for row in rows[start:]:
            yield Version(row.key, row.version_id, False, past=row)
    after = key_marker
    while True:
        rows = await meta.past_versions(bucket.inode, prefix, after, PAGE)
        for row in rows:
            yield Version(row.key, row.version_id, False, past=row)
        if len(rows) < PAGE:
            return
        # A key's versions may span pages: go on after the last one read.
        last = rows[-1]
        more = await meta.past_versions(bucket.inode, "", "", 1 << 30, key=last.key)
        ids = [row.version_id for row in more]
        for row in more[ids.index(last.version_id) + 1 :]:
            yield Version(row.key, row.version_id, False, past=row)
        after = last.key
