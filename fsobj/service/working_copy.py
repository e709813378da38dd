"""An open object's handle, and the gate of its working copy: changes to an object's
staged content run together (the kernel writes pages back in parallel, and writers in
place share one working copy), and a commit runs alone, holding new changes and reads
back until it is done."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable

import trio

from fsobj.datastore.blob_file import CHUNK, BlobFile
from fsobj.datastore.journal import Journal
from fsobj.datastore.sealing import Seal
from fsobj.datastore.staging import Staging
from fsobj.metadata.entries import Entry, Expected
from fsobj.refusals import Refused
from fsobj.service.versions import Ahead, Version

# Writes up to this size go to staged content without a thread hop: a small buffered
# pwrite does not block the loop for long, and the hop costs more than it.
INLINE_WRITE = 64 * 1024
# How much of a staging file's writes may wait to be written while its writer goes on.
WRITE_BEHIND = 4 * CHUNK
# Staged content is kept in memory up to this size per handle, and this much in all;
# past that it moves to a staging file.
MEMORY_STAGING = 1 << 20
MEMORY_STAGING_TOTAL = 64 << 20
# A new object's blob up to this size is written on the trio loop, unsynced (the group
# sync makes it durable): quicker than the hop to a thread.
SMALL_BLOB = 64 * 1024


def leaves_memory(end: int, held: Callable[[], int]) -> bool:
    """Whether staged content growing to `end` bytes should move to a staging file, with
    `held()` bytes staged in memory by all handles."""
    if end > MEMORY_STAGING:
        return True
    return end > INLINE_WRITE and held() + end > MEMORY_STAGING_TOTAL


class Gate:
    """Lets changes to one working copy run together, and a commit alone."""

    def __init__(self) -> None:
        self.changes = 0
        self.committing: trio.Event | None = None
        self._quiet: trio.Event | None = None
        self.staging = trio.Lock()  # creating or moving the staged content

    async def wait_for_commit(self) -> None:
        while self.committing is not None:
            await self.committing.wait()

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[None]:
        await self.wait_for_commit()
        self.changes += 1
        try:
            yield
        finally:
            self.changes -= 1
            if not self.changes and self._quiet is not None:
                self._quiet.set()

    @contextlib.asynccontextmanager
    async def commit(self) -> AsyncIterator[None]:
        await self.wait_for_commit()
        done = self.committing = trio.Event()
        try:
            while self.changes:
                self._quiet = trio.Event()
                await self._quiet.wait()
            self._quiet = None
            yield
        finally:
            self.committing = None
            done.set()


@dataclasses.dataclass(eq=False, slots=True)
class Handle:
    fh: int
    entry: Entry
    writable: bool
    # Opened for writing without O_TRUNC: it updates the object in place, sharing a
    # working copy with the other writers that do (see OpenObjects.open).
    in_place: bool = False
    # The version this handle reads until it writes (the entry moves on with commits).
    blob: BlobFile | None = None
    version: Version | None = None
    # The key a client gave to read and seal its object with (S3's SSE-C), and how its
    # commit was asked to seal the content (None: as the bucket says).
    key: bytes | None = None
    seal: Seal | None = None
    # The process that opened the handle, and the writer of that same process whose
    # uncommitted content this reader sees (a process reads its own writes).
    process: int = 0
    uid: int = 0  # who opened it: a write by anyone but root clears set-ID bits
    follows: Handle | None = None
    staging: Staging | None = None
    dirty: bool = False
    # Whether its working copies keep a journal of their changes, so that an `fsync`
    # syncs the journal instead of committing a blob (service/journaled.py), and the
    # journal of the current one.
    journaling: bool = False
    journal: Journal | None = None
    synced_commits: int = 0  # how many `fsync`s committed its working copies
    # User metadata that the commit sets, all of it (an S3 PUT's), or None to keep it.
    metadata: dict[str, bytes] | None = None
    # What the key must hold when the commit lands (an S3 PUT's conditions).
    expects: Expected | None = None
    # How a write or truncate failed: what is staged is then not what the writer meant,
    # so it is never committed (the previous version stays).
    failed: Refused | OSError | None = None
    # When this handle last changed the content; None once an explicit utime overrides it.
    modified_ns: int | None = None
    # Where the last read of the committed version ended, and the next ranges being read
    # ahead, in order.
    read_end: int = 0
    ahead: list[Ahead] = dataclasses.field(default_factory=list)
    # Changes to the staged content run concurrently (the kernel writes pages back in
    # parallel, and writers share a working copy); a commit waits until none is running
    # and holds new changes and reads back until it is done (`Gate`).
    gate: Gate = dataclasses.field(default_factory=lambda: Gate())

    def staged_in_memory(self) -> int:
        """The bytes of staged content this handle holds in memory."""
        staging = self.staging
        return staging.size if staging is not None and staging.memory is not None else 0
