"""Durability: when commits reach the disk, and when blobs that lost their name go.

Commits are atomic at once and durable at the next durability point: every 5 seconds, on
`fsync` and at unmount (docs/durability.md). At that point the blobs that new objects'
commits left to the page cache are synced (file by file when they are few, else one
`syncfs`), then the metadata is checkpointed, and only then are the blobs it no longer
names removed: removed earlier, a power loss could bring back metadata that still names
them. In a daemon they are removed in the background (`remove_unnamed`), so that an
`fsync` does not wait for the removal of what it made unnamed for good.
"""

from __future__ import annotations

import logging

import trio

from fsobj import measures
from fsobj.datastore.store import DataStore
from fsobj.metadata.store import Entry, MetadataStore

log = logging.getLogger(__name__)


# How long after a durability point a daemon removes the blobs it made unnamed for good,
# gathering those of the points that follow meanwhile: a database fsyncs many times a
# second, and each removal takes two round trips to threads.
REMOVAL_DELAY = 0.1

# Up to this many new blobs, a durability point syncs them file by file; more, and one
# `syncfs` costs less. syncfs waits for all that the filesystem holds, whoever wrote it.
SYNCED_ONE_BY_ONE = 64


class GroupSync:
    def __init__(self, meta: MetadataStore, data: DataStore):
        self.meta = meta
        self.data = data
        # New objects' blobs written since the last durability point, unsynced.
        self._written: list[str] = []
        # Blobs the metadata no longer names, waiting for that change to be durable.
        self._retired: list[str] = []
        # Blobs that change is durable for, to remove; and, while `remove_unnamed` runs,
        # what tells it there are some.
        self._unnamed: list[str] = []
        self._unnamed_arrived: trio.Event | None = None
        # Requests to make everything durable, and how many of them the last sync covered.
        self._requested = 0
        self._covered = 0
        self._syncing = trio.Lock()

    def retire(self, object_id: str) -> None:
        """The metadata no longer names this blob (that change is committed): remove it
        at the next durability point."""
        self._retired.append(object_id)

    def retired(self) -> set[str]:
        return set(self._retired)

    def left_unsynced(self, object_id: str) -> int:
        """A new object's blob is written, and left to the next durability point: the
        mark its commit records (MetadataStore.unsynced_generation)."""
        self._written.append(object_id)
        return self.meta.unsynced_generation()

    async def make_content_durable(self, entry: Entry) -> None:
        """Sync a new object's blob now if its commit left it to the group sync."""
        if entry.object_id is not None and not self.meta.is_synced(entry):
            await self.data.sync_blob(entry.object_id)

    async def make_all_durable(self) -> None:
        """Make every commit so far durable, then remove the blobs it no longer names.
        Blobs of commits that replaced a version are durable from their commit on.

        Callers at the same time share syncs: one runs at a time, and it covers every
        request made before it began, so those waiting for it return without another
        (concurrent S3 PUTs, fsyncs of many files)."""
        self._requested += 1
        ticket = self._requested
        async with self._syncing:
            if self._covered >= ticket:
                return
            covering = self._requested
            with measures.Timed(measures.DURABILITY_SECONDS):
                await self._sync_now()
            measures.DURABILITY_POINTS.inc()
            self._covered = covering

    async def _sync_now(self) -> None:
        retired, self._retired = self._retired, []
        try:
            await self._make_durable()
        except BaseException:
            self._retired[:0] = retired
            raise
        self._unnamed += retired
        if not self._unnamed:
            return
        if self._unnamed_arrived is None:
            await self._remove_unnamed()
        else:
            self._unnamed_arrived.set()

    async def remove_unnamed(self) -> None:
        """Remove, until cancelled, the blobs the durability points made unnamed for good,
        `REMOVAL_DELAY` after the first of them (by default each point removes them
        itself)."""
        arrived = self._unnamed_arrived = trio.Event()
        try:
            while True:
                await arrived.wait()
                await trio.sleep(REMOVAL_DELAY)
                arrived = self._unnamed_arrived = trio.Event()
                await self._remove_unnamed()
        finally:
            self._unnamed_arrived = None

    async def _remove_unnamed(self) -> None:
        unnamed, self._unnamed = self._unnamed, []
        try:
            # A copy shares its source's blob: a blob goes when no entry names it.
            await self.data.remove_blobs(await self.meta.unnamed_blobs(unnamed))
        except BaseException as error:
            if not isinstance(error, OSError):
                self._unnamed[:0] = unnamed  # cancelled: the daemon's last point removes them
                raise
            # What was made durable is; the blobs wait for gc, which finds them unnamed.
            log.warning("%d replaced blobs are left to gc: %s", len(unnamed), error)

    async def _make_durable(self) -> None:
        # Together, with no await between: the blobs of every mark up to `through`.
        through = self.meta.begin_sync()
        written, self._written = self._written, []
        if through is not None:
            try:
                if len(written) > SYNCED_ONE_BY_ONE:
                    await self.data.sync_all()
                else:
                    await self.data.sync_blobs(written)
            except OSError as error:
                # The marks stay, so a crash still verifies those objects; the next sync
                # tries again.
                log.warning("could not make the blobs of new objects durable: %s", error)
                self._written[:0] = written
                through = None
        await self.meta.make_durable(through)
