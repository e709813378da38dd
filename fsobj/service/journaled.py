"""Working copies whose `fsync`s are journaled instead of committed (datastore/journal.py):
which ones are, and when each is committed as a blob after all.

The first two `fsync`s of a writer in place (a database fsyncs at every transaction)
commit its file as a new blob, alone; from then on, each working copy it makes keeps a
journal, and its `fsync`s sync the journal alone. The copy is committed at the next
durability point after its first journaled `fsync` (within the commit interval, 5 seconds
unless `fsobj mount --commit-interval` says), at its close, and before anyone opens the
object afresh (another process reading it, an S3 GET, a replacing writer): they see what
the last `fsync` made durable, or more, as with any writer in place.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from fsobj import measures
from fsobj.datastore.journal import Journal
from fsobj.datastore.store import DataStore
from fsobj.metadata.store import MetadataStore
from fsobj.refusals import Refused
from fsobj.service.working_copy import Handle

log = logging.getLogger(__name__)

# How many `fsync`s of a writer in place commit its file before the next ones are
# journaled: a file that lives for a transaction, SQLite's rollback journal, takes two,
# and a journal of its own would only cost it more.
COMMITS_FIRST = 2


class JournaledCopies:
    """Which working copies journal their `fsync`s, and their commits in the background."""

    def __init__(
        self, meta: MetadataStore, data: DataStore, commit: Callable[[Handle], Awaitable[None]]
    ):
        self.meta = meta
        self.data = data
        self._commit = commit
        # Working copies with a journaled `fsync` not committed yet, oldest first.
        self._pending: dict[Handle, float] = {}
        self._arrived = trio.Event()

    def start(self, working: Handle) -> None:
        """`working` was just committed by an `fsync`: past `COMMITS_FIRST` of them, journal
        the next ones. Not for a sealed object (a journal holds content as written)."""
        working.synced_commits += 1
        # Only where a blob's commit is a local rename, and no other host serves the store:
        # a journal is a file of this host's staging area.
        if (
            working.synced_commits >= COMMITS_FIRST
            and not self.meta.shared
            and not self.data.durable_at_commit
            and working.in_place
            and working.blob is not None
            and not working.blob.sealed
            and working.version is not None
        ):
            working.journaling = True

    async def begin(self, handle: Handle) -> Journal | None:
        """A journal for the working copy `handle` is about to make of its version."""
        if not handle.journaling or handle.version is None:
            return None
        return await trio.to_thread.run_sync(
            self.data.open_journal, handle.entry.kernel_inode, handle.version.object_id
        )

    @staticmethod
    def sync_now(working: Handle) -> bool:
        """What `fsync` does to a journaled working copy; False if its journal is full,
        and a commit must do it. Blocking: a write to the copy that failed meanwhile
        fails it, so that the copy is never committed wrong."""
        assert working.staging is not None and working.journal is not None
        working.staging.settle()
        return working.journal.sync()

    def synced(self, working: Handle) -> None:
        measures.JOURNALED_FSYNCS.inc()
        if working not in self._pending:
            self._pending[working] = trio.current_time()
            self._arrived.set()

    async def finished(self, working: Handle, journal: Journal) -> None:
        """The copy was committed durably: its journal is history."""
        self._pending.pop(working, None)
        await trio.to_thread.run_sync(journal.remove)

    def abandoned(self, working: Handle) -> None:
        """The copy is discarded uncommitted (its commit failed): what its journal made
        durable is kept for recovery at the next mount (service/store.py)."""
        self._pending.pop(working, None)
        if working.journal is not None:
            working.journal.close()
            working.journal = None

    async def run(self, interval: float) -> None:
        """Commit each journaled copy `interval` seconds after its first journaled `fsync`:
        how long what it made durable may wait to become the version that S3 sees, as a
        close waits to be made durable (the bound on a journal's length in time, too)."""
        while True:
            if not self._pending:
                self._arrived = trio.Event()
                await self._arrived.wait()
            working, since = next(iter(self._pending.items()))
            await trio.sleep_until(since + interval)
            if self._pending.get(working) != since:
                continue  # committed meanwhile
            try:
                if working.journal is not None:
                    await self._commit(working)
            except (OSError, Refused) as error:
                log.warning("%s: synced writes not committed: %s", working.entry.name, error)
            self._pending.pop(working, None)
