"""What a commit records of an object's new content: the typed `Commit` that a handle's
new blob becomes (service/handles.py), and the hooks that decide the version it replaces
and how it is sealed."""

from __future__ import annotations

import functools
import mimetypes
import time
from collections.abc import Awaitable, Callable

from fsobj.datastore.blob_file import BlobFile
from fsobj.datastore.sealing import Seal
from fsobj.datastore.staging import Staging
from fsobj.datastore.store import Blob, DataStore
from fsobj.metadata.archive import Archive
from fsobj.metadata.entries import Commit, Entry, Expected
from fsobj.metadata.transactions import Before
from fsobj.service import encryption, names
from fsobj.service.working_copy import SMALL_BLOB, Handle

NewVersion = Callable[
    [Entry, dict[str, bytes] | None], Awaitable[tuple[Archive | None, dict[str, bytes] | None]]
]


Sealing = Callable[[Entry, Seal | None], Awaitable[Seal | None]]


async def as_asked(entry: Entry, asked: Seal | None) -> Seal | None:
    return asked


async def unversioned(
    entry: Entry, metadata: dict[str, bytes] | None
) -> tuple[Archive | None, dict[str, bytes] | None]:
    return None, metadata


async def write_blob(
    data: DataStore, staging: Staging, object_id: str, seal: Seal | None, fresh: bool, alone: bool
) -> tuple[Blob, BlobFile | None, Before | None]:
    """Write a commit's blob: (the blob, the blob left open for reading or None, what
    must run just before the transaction that names it or None). A new object's small
    blob goes into the page cache on the loop, unsynced (`fresh`: the group sync makes
    it durable), quicker than the hop to a thread. A small one synced `alone` is written
    the same way and synced in its transaction's round trip, before the transaction: one
    hop where two took 2.5 ms; it is not kept open, as the fsyncs and the next
    copy-on-write took 0.3 to 0.65 ms longer each when it was (docs/benchmarks.md). Any
    other is written, and synced unless `fresh`, in a thread."""
    if staging.size <= SMALL_BLOB and data.small_commits_inline:
        if fresh:
            return (*data.commit_open(staging, object_id, seal), None)
        if alone:
            blob = data.commit_now(staging, object_id, False, seal)
            return blob, None, functools.partial(data.sync_blobs_now, [object_id])
    return await data.commit(staging, object_id, not fresh, seal), None, None


def guess_content_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def commit_of(
    handle: Handle,
    object_id: str,
    blob: Blob,
    seal: Seal | None,
    kept: tuple[Archive | None, dict[str, bytes] | None],
    unsynced: int,
) -> Commit:
    """The commit of `handle`'s content, written as the blob `object_id` and sealed as
    `seal` says, keeping what it replaces and its user metadata as `kept` says
    (NewVersion); `unsynced`: the group sync it waits for (0: none)."""
    entry = handle.entry
    size, etag, checksums, blocks = blob
    archive, metadata = kept
    # What the metadata says of the content is of the new content: no checksum of the
    # content replaced (an S3 PUT notes its own), and how it is sealed.
    notes = {names.ENCRYPTION: encryption.note(seal)}
    if handle.metadata is None:  # new content from the mount: one part, no checksum
        notes[names.CHECKSUM] = notes[names.PARTS] = None
    if metadata is not None:
        metadata = {k: v for k, v in metadata.items() if k not in notes}
        metadata.update((k, v) for k, v in notes.items() if v is not None)
    return Commit(
        object_id=object_id,
        size=size,
        etag=etag,
        checksums=checksums,
        blocks=blocks,
        content_type=entry.content_type or guess_content_type(entry.name),
        ctime_ns=time.time_ns(),
        mtime_ns=handle.modified_ns,
        user_metadata=metadata,
        unsynced=unsynced,
        archive=archive,
        expects=handle.expects,
        notes=tuple(notes.items()),
    )


def sharing_commit(
    entry: Entry,
    source: Entry,
    kept: tuple[Archive | None, dict[str, bytes] | None],
    restores: tuple[int, str, str] | None,
    expects: Expected | None,
) -> Commit:
    """The commit that gives `entry` the blob of `source` (OpenObjects.share)."""
    assert source.object_id is not None
    now = time.time_ns()
    archive, metadata = kept
    return Commit(
        object_id=source.object_id,
        size=source.size,
        etag=source.etag,
        checksums=source.checksums,
        blocks=source.blocks,
        content_type=entry.content_type or source.content_type,
        ctime_ns=now,
        mtime_ns=now,
        user_metadata=metadata,
        shares_blob=True,
        archive=archive,
        version_id=restores[2] if restores else None,
        restores=restores,
        expects=expects,
    )
