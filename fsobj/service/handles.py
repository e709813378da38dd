"""Open objects: what each open file handle reads from, what it stages, and how it commits.

A handle pins the blob that was current when it was opened (by holding a descriptor on
it), so a reader keeps reading that version while writers commit new ones; readers are
opened with direct I/O (fuse/operations.py), so each read is served from the handle's own
version. A blob that no metadata names any more is retired and removed once the change
that unnamed it is durable (durability.py); the filesystem frees it when the last
descriptor closes. Writers that update an object in place (opened
without O_TRUNC) share a working copy, as on a local disk: the first one still open holds
it, the others follow it (`working`); a writer that replaces the object works alone. A
working copy copies the pinned blob into staging on its first change (copy-on-write), and
a flush, fsync or release of any of its writers commits staging as a new blob (the
`fsync`s of a writer in place past its first two sync a journal instead: journaled.py).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from fsobj import measures
from fsobj.datastore.blob_file import BlobFile, DamagedBlob
from fsobj.datastore.sealing import Seal
from fsobj.datastore.staging import Staging
from fsobj.datastore.store import Blob, DataStore, check_object_size
from fsobj.metadata.archive import Archive
from fsobj.metadata.entries import Commit, Entry, Expected
from fsobj.metadata.store import MetadataStore
from fsobj.metadata.transactions import Before
from fsobj.refusals import Reason, Refused
from fsobj.service.commits import (
    NewVersion,
    Sealing,
    as_asked,
    commit_of,
    sharing_commit,
    unversioned,
    write_blob,
)
from fsobj.service.durability import GroupSync
from fsobj.service.etags import Etags
from fsobj.service.group_commit import GroupCommit
from fsobj.service.journaled import JournaledCopies
from fsobj.service.versions import SMALL_READ, Version, VersionReader
from fsobj.service.working_copy import INLINE_WRITE, SMALL_BLOB, WRITE_BEHIND, Handle, leaves_memory

log = logging.getLogger(__name__)

COMMITTED = measures.COMMITS.of("")


class OpenObjects:
    """Every open object handle, and what concurrent handles of one object share."""

    def __init__(self, meta: MetadataStore, data: DataStore):
        self.meta = meta
        self.data = data
        self._handles: dict[int, Handle] = {}
        self._by_inode: dict[int, set[Handle]] = {}
        # The handle that last changed an object's staged content: its size is what the
        # kernel must see while it writes (O_APPEND and st_size depend on it).
        self._last_writer: dict[int, Handle] = {}
        # Unlinked objects that are still open: their entry outlives the name.
        self._orphans: dict[int, Entry] = {}
        self._fhs = itertools.count(1)
        self.group = GroupCommit(meta)
        # Blobs being committed: on disk, not yet named by the metadata.
        self.committing: set[str] = set()
        self.durability = GroupSync(meta, data)
        # Called with an object's inode after each commit (the kernel may cache its
        # attributes, which the commit changed: see Operations).
        self.committed: Callable[[int], None] = lambda inode: None
        # How a commit to an entry keeps the version it replaces, and the new version's
        # user metadata (versioning.new_version).
        self.new_version: NewVersion = unversioned
        # How a commit seals its blob, given what its writer asked for (None: nothing):
        # as asked, or as the object's bucket says (service/encryption.py).
        self.sealing: Sealing = as_asked
        self.reader = VersionReader(data)
        self.etags = Etags(meta, data)
        self.journals = JournaledCopies(meta, data, self._commit_journaled)

    def get(self, fh: int) -> Handle:
        return self._handles[fh]

    def open_handles(self) -> int:
        return len(self._handles)

    def staging_bytes(self) -> int:
        """Bytes written and not committed yet."""
        return sum(h.staging.size for h in self._handles.values() if h.staging is not None)

    def orphan(self, inode: int) -> Entry | None:
        return self._orphans.get(inode)

    def is_open(self, inode: int) -> bool:
        return bool(self._by_inode.get(inode))

    def staged(self, entry: Entry) -> tuple[int, int]:
        """The object's size and mtime as its writer sees them, as on a local disk:
        staged content wins over committed."""
        writer = self._last_writer.get(entry.kernel_inode)
        if writer is not None and writer.dirty and writer.staging is not None:
            return writer.staging.size, writer.modified_ns or entry.mtime_ns
        return entry.size, entry.mtime_ns

    # -- open and close -----------------------------------------------------------------

    async def open(
        self,
        entry: Entry,
        writable: bool,
        truncate: bool,
        process: int = 0,
        uid: int = 0,
        in_place: bool | None = None,
        staged: Staging | None = None,
        past: bool = False,
        key: bytes | None = None,
    ) -> Handle:
        """A new handle. A writer works in place (sharing the working copy) unless it
        truncates, or `in_place` says otherwise (a new object made without O_TRUNC). A
        `past` version (of a versioned bucket's history) is read as it is: it never
        changes, and its entry is none of the namespace's."""
        if self.meta.shared and not past:  # close-to-open: what other hosts closed last
            current = await self.meta.get(entry.kernel_inode, current=True)
            if current is None:  # ESTALE: the kernel looks the path up again, and retries
                raise Refused(Reason.STALE, (entry, None), "removed by another host")
            entry = current
        siblings = self._by_inode.setdefault(entry.kernel_inode, set())
        handle = Handle(next(self._fhs), entry, writable, process=process, uid=uid, key=key)
        handle.in_place = writable and (not truncate if in_place is None else in_place)
        if handle.in_place:
            # Writers that update an object in place share one working copy, as on a local
            # disk: what one writes, the others read at once (SQLite's processes share a
            # database this way). A writer that replaces the whole object (O_TRUNC) works
            # alone, and its close replaces it atomically.
            handle.follows = next((h for h in siblings if h.in_place and h.follows is None), None)
        elif not writable:
            # Programs like git's index-pack write a file and read it back through a second
            # descriptor before closing the first: a process sees its own writes.
            handle.follows = next(
                (h for h in siblings if h.writable and h.process == process and process), None
            )
        if handle.follows is None:
            # What a journaled `fsync` made durable is the object's content for anyone who
            # opens it afresh, as on a local disk.
            for working in [h for h in siblings if h.journal is not None]:
                await self._commit_journaled(working)
        self.meta.hold(entry.inode)  # the handle changes this very entry object
        try:
            await self._attach(handle, truncate, staged)
        except BaseException:
            self.meta.let_go(entry.inode)
            raise
        siblings.add(handle)
        self._handles[handle.fh] = handle
        return handle

    async def _attach(self, handle: Handle, truncate: bool, staged: Staging | None) -> None:
        """Give a new handle what it reads from: the current blob, or a staging file (one
        that follows another reads and writes through it); a replacing writer may start
        with content `staged` already (a whole upload)."""
        entry = handle.entry
        if handle.follows is not None:
            return
        while entry.object_id is not None and not (handle.writable and truncate):
            version = Version.of(entry)
            try:
                await self.data.ensure_local(version.object_id, version.size, version.checksums)
            except FileNotFoundError:
                if self.meta.shared:  # another host may have replaced it: ask
                    await self.meta.get(entry.kernel_inode, current=True)
                if entry.object_id == version.object_id:
                    raise self.reader.damaged(version, entry.name, "is missing") from None
            if entry.object_id == version.object_id:  # else replaced meanwhile: the new one
                # Opened on the loop, with no await since reading object_id: a commit that
                # replaces the blob cannot unlink it in between.
                handle.version = version
                handle.blob = self._open_blob(version, entry.name, handle.key)
                self.reader.opened(handle)
                break
        if handle.writable and truncate:
            handle.staging = staged or await self.data.stage(None, md5=False)
            handle.dirty = True
            handle.modified_ns = time.time_ns()
            self._last_writer[entry.kernel_inode] = handle

    async def _pin(
        self, handle: Handle, version: Version | None, opened: BlobFile | None = None
    ) -> None:
        """Make the handle read `version` (None: an object with no content yet), from its
        blob `opened` already if given."""
        if handle.blob is not None:
            handle.blob.close()
        handle.version, handle.blob = version, opened
        self.reader.drop_ahead(handle)
        if version is not None and opened is None:
            await self.data.ensure_local(version.object_id, version.size, version.checksums)
            handle.blob = self._open_blob(version, handle.entry.name, handle.key)

    def _open_blob(self, version: Version, name: str, key: bytes | None) -> BlobFile:
        """A version's blob, open; it must exist and have the right size."""
        try:
            return self.data.open_blob(version.object_id, version.size, key)
        except FileNotFoundError:
            raise self.reader.damaged(version, name, "is missing") from None
        except DamagedBlob as error:
            raise self.reader.damaged(version, name, str(error)) from None

    def working(self, handle: Handle) -> Handle:
        """The handle that holds what `handle` writes: itself, or for a writer in place,
        the first one of the object still open (they share one working copy)."""
        return handle.follows if handle.writable and handle.follows else handle

    async def replace(
        self,
        entry: Entry,
        staged: Staging,
        uid: int,
        metadata: dict[str, bytes] | None = None,
        expects: Expected | None = None,
        seal: Seal | None = None,
    ) -> None:
        """Make content received whole (an upload) the object's new version, durably, as a
        writer that replaces the object would on close and fsync; durably alone (see
        `commit`): what others committed becomes durable at the next durability point.
        `metadata` replaces the object's user metadata in the same transaction; the
        commit fails (CONDITION) unless the key holds what `expects` says then; `seal`:
        how its blob is sealed (None: as the bucket says)."""
        key = seal.customer_key if seal is not None else None
        handle = await self.open(entry, True, truncate=True, uid=uid, staged=staged, key=key)
        handle.metadata = metadata
        handle.expects = expects
        handle.seal = seal
        try:
            await self.commit(handle, durable=True, alone=True)
        finally:
            await self.release(handle)

    async def share(
        self,
        entry: Entry,
        source: Entry,
        metadata: dict[str, bytes],
        restores: tuple[int, str, str] | None = None,
        expects: Expected | None = None,
    ) -> None:
        """Make `source`'s version `entry`'s too, durably: blobs never change, so a copy
        shares the blob and copies no data (a blob goes when no entry names it), with
        `metadata` as its user metadata, in one transaction. `restores` (bucket, key,
        version id): the source is that past version, which becomes current again, with
        its id, and leaves the history."""
        assert source.object_id is not None
        await self.durability.make_content_durable(source)
        kept: tuple[Archive | None, dict[str, bytes] | None] = (None, metadata)
        if not restores:  # a restored version keeps its own id and metadata
            kept = await self.new_version(entry, metadata)
        commit = sharing_commit(entry, source, kept, restores, expects)
        previous = await self.group.record(entry, commit)
        self.committed(entry.kernel_inode)
        self.retire(previous)
        await self.durability.make_all_durable()

    async def release(self, handle: Handle) -> None:
        if not handle.writable:  # nothing to commit, nothing to wait for
            self._close(handle)
            return
        try:
            # Changes still running (a write of another writer in place) land first.
            async with self._working_copy(handle, commit=True) as working:
                if working.dirty:
                    await self._commit(working, durable=False)
        finally:
            self._close(handle)

    def _close(self, handle: Handle) -> None:
        self._discard_staging(handle)
        self.reader.drop_ahead(handle)
        if self._handles.pop(handle.fh, None) is not None:
            self.meta.let_go(handle.entry.inode)
        inode = handle.entry.kernel_inode
        siblings = self._by_inode.get(inode, set())
        siblings.discard(handle)
        if self._last_writer.get(inode) is handle:
            del self._last_writer[inode]
        # The next writer to have opened it takes the working copy over (what is left of
        # it: release committed it), and the version the closing one pinned.
        heirs = [h for h in siblings if h.follows is handle and h.writable]
        heir = min(heirs, key=lambda h: h.fh, default=None)
        if heir is not None:
            heir.failed, heir.modified_ns = handle.failed, handle.modified_ns
        for follower in siblings:
            if follower.follows is not handle:
                continue
            if (
                heir is not None
                and follower is not heir
                and (follower.writable or follower.process == heir.process)
            ):
                follower.follows = heir
                continue
            follower.follows = None  # from now on: the version the writer left
            follower.version = handle.version
            if handle.blob is not None:
                follower.blob = handle.blob.dup()
        if handle.blob is not None:
            handle.blob.close()
        if not siblings:
            self._by_inode.pop(inode, None)
            self._orphans.pop(inode, None)

    # -- reading and writing ------------------------------------------------------------

    async def read(self, handle: Handle, offset: int, size: int) -> bytes:
        source = handle.follows or handle
        if source.gate.committing is not None:  # the content moves to its blob meanwhile
            await source.gate.wait_for_commit()
            return await self.read(handle, offset, size)  # whom it follows may be closed now
        if handle.follows is not None:
            return await self.read(handle.follows, offset, size)
        if handle.staging is not None:
            if size <= SMALL_READ or handle.staging.memory is not None:
                with contextlib.suppress(BlockingIOError):  # on the loop (versions.py)
                    return handle.staging.read_cached(offset, size)
            return await trio.to_thread.run_sync(handle.staging.read, offset, size)
        if handle.blob is None or (handle.version is not None and offset >= handle.version.size):
            return b""  # a blob never changes size: the read that finds the end needs no I/O
        with contextlib.suppress(BlockingIOError):
            return self.reader.read_on_loop(handle, offset, size)
        return await self.reader.read(handle, offset, size)

    async def _staging(self, handle: Handle, end: int) -> Staging:
        """The handle's staged content, ready for a change that reaches byte `end`."""
        if handle.staging is None or (
            handle.staging.memory is not None and end > handle.staging.size and self._too_big(end)
        ):
            async with handle.gate.staging:  # one change makes it; the others wait for it
                if handle.staging is None:
                    known = handle.version.checksums if handle.version else None
                    staging = None
                    blob = handle.blob
                    # A small copy in memory, made here: no file, no hop to a thread (a
                    # journal records writes to a file only).
                    if blob and blob.size <= SMALL_BLOB and not handle.journaling:
                        staging = self.data.stage_cached(blob, known)
                    if staging is None:
                        staging = await self.data.stage(blob, False, known)
                    try:
                        handle.journal = await self.journals.begin(handle)
                    except BaseException:
                        self._drop(staging)
                        raise
                    handle.staging = staging
                staging = handle.staging
                if staging.memory is not None and end > staging.size and self._too_big(end):
                    await self._change(handle, False, staging.spill, self.data.staging_path())
        handle.dirty = True
        handle.modified_ns = time.time_ns()
        self._last_writer[handle.entry.kernel_inode] = handle
        return handle.staging

    async def write(self, handle: Handle, offset: int, data: bytes) -> int:
        self._check_size(self.working(handle), offset + len(data))
        async with self._working_copy(handle) as working:
            staging = await self._staging(working, offset + len(data))
            if staging.memory is None:  # a file: written behind, in order
                if staging.behind > WRITE_BEHIND:
                    await self._change(working, False, staging.settle, WRITE_BEHIND)
                if working.journal is not None:  # no await from here: in the same order
                    await self._change(working, True, working.journal.wrote, offset, data)
                return await self._change(working, True, staging.write_behind, offset, data)
            inline = len(data) <= INLINE_WRITE
            return await self._change(working, inline, staging.write, offset, data)

    async def truncate(self, handle: Handle, size: int) -> None:
        self._check_size(self.working(handle), size)
        async with self._working_copy(handle) as working:
            staging = await self._staging(working, size)
            if working.journal is not None:
                await self._change(working, True, working.journal.truncated, size)
            await self._change(working, staging.memory is not None, staging.truncate, size)

    @contextlib.asynccontextmanager
    async def _working_copy(self, handle: Handle, commit: bool = False) -> AsyncIterator[Handle]:
        """The working copy that `handle` changes, held for a change (or a commit, alone).
        A handle that waited while the one it follows committed and closed follows its
        heir, or holds the working copy itself now: what it changes or commits is that
        one's, never the closed one's (whose staging went with it)."""
        while True:
            working = self.working(handle)
            async with working.gate.commit() if commit else working.gate.change():
                if working is handle or working.fh in self._handles:
                    yield working
                    return

    def _check_size(self, handle: Handle, size: int) -> None:
        """Refuse a change past the largest object; like any failed change, it spoils
        the upload, so that close reports it and commits nothing."""
        try:
            check_object_size(size)
        except Refused as refusal:
            handle.failed = refusal
            raise

    def _too_big(self, end: int) -> bool:
        """Whether staged content growing to `end` bytes should leave memory."""
        return leaves_memory(end, lambda: sum(h.staged_in_memory() for h in self._handles.values()))

    async def _change(self, handle: Handle, inline: bool, change: Any, *args: Any) -> Any:
        """Apply a change to the staged content; a failure spoils the handle's upload."""
        try:
            if inline:
                return change(*args)
            return await trio.to_thread.run_sync(change, *args)
        except OSError as error:
            handle.failed = error
            raise

    def _discard_staging(self, handle: Handle) -> None:
        if handle.staging is not None:
            self._drop(handle.staging)
            handle.staging = None
        self.journals.abandoned(handle)
        handle.dirty = False

    @staticmethod
    def _drop(staging: Staging) -> None:
        staging.close()
        if staging.path is not None:
            staging.path.unlink(missing_ok=True)

    # -- committing ---------------------------------------------------------------------

    async def commit(self, handle: Handle, durable: bool, alone: bool = False) -> None:
        """Make the handle's staged content the object's new immutable version; with
        `durable`, everything committed so far durable (a durability point); with
        `alone` too, only this commit: its blob is synced and its transaction synced by
        itself (3 syncs, where a durability point takes 5)."""
        async with self._working_copy(handle, commit=True) as handle:
            if handle.dirty or handle.failed is not None:
                await self._commit(handle, durable, alone)
            elif durable:  # another close committed it meanwhile
                await self.durability.make_all_durable()

    async def _commit(self, handle: Handle, durable: bool, alone: bool = False) -> None:
        start = time.monotonic()
        await self._commit_now(handle, durable, alone)
        measures.timed(COMMITTED, time.monotonic() - start)

    async def _commit_now(self, handle: Handle, durable: bool, alone: bool) -> None:
        if handle.failed is not None:
            self._discard_staging(handle)
            lost = "a write to it failed: nothing is committed"
            if isinstance(handle.failed, Refused):
                raise Refused(handle.failed.reason, (handle.entry, None), lost)
            raise OSError(handle.failed.errno, f"{lost} ({handle.failed.strerror})")
        staging = handle.staging
        assert staging is not None
        journal = handle.journal
        if journal is not None:  # it goes once the commit is durable: now
            durable = alone = True
        object_id = await self.meta.new_blob_id()
        asked = handle.seal
        if asked is None and handle.blob is not None and handle.blob.sealed:
            asked = Seal()  # a writer in place: what was sealed stays sealed
        seal = await self.sealing(handle.entry, asked)
        # A new object's blob is left to the page cache, and the next group sync makes it
        # durable with all the others (GroupSync): a crash before that can only take the
        # object back to not existing, which recovery checks. Any other commit replaces a
        # version, so its blob is durable before the metadata moves on.
        fresh = handle.entry.object_id is None and not durable and not self.data.durable_at_commit
        # From before the blob appears until the metadata names it, the collector must not
        # take it for garbage.
        self.committing.add(object_id)
        opened = None
        try:
            # The blob is written and checked before its metadata's transaction begins.
            blob, opened, sync_first = await write_blob(
                self.data, staging, object_id, seal, fresh, alone
            )
            # The staged content is the blob's, whatever happens to the metadata.
            handle.staging = None
            handle.dirty = False
            try:
                previous, commit = await self._record(
                    handle, object_id, blob, seal, fresh, alone, sync_first
                )
            except BaseException:
                staging.close()
                if opened is not None:
                    opened.close()
                await self.remove_blob(object_id)  # no metadata names it: the old one stays
                raise
        except (OSError, Refused) as error:
            # Like a failed write, a failed commit spoils the upload (a later release must
            # not commit what close reported as lost), and the handle, with any reader of
            # its process, is back on the committed version.
            handle.failed = error
            self._discard_staging(handle)
            with contextlib.suppress(OSError):  # a missing blob is reported when read
                await self._pin(
                    handle, Version.of(handle.entry) if handle.entry.object_id else None
                )
            raise
        finally:
            self.committing.discard(object_id)
        if journal is not None:
            handle.journal = None
            await self.journals.finished(handle, journal)
        if commit.etag is None:
            self.etags.later(handle.entry)
        # Later reads and copy-on-write through this handle start from what it committed.
        await self._pin(handle, Version(object_id, commit.size, commit.checksums), opened)
        self.committed(handle.entry.kernel_inode)
        self.retire(previous)
        if durable and not alone:
            await self.durability.make_all_durable()

    async def _record(
        self,
        handle: Handle,
        object_id: str,
        blob: Blob,
        seal: Seal | None,
        fresh: bool,
        synced: bool = False,
        before: Before | None = None,
    ) -> tuple[str | None, Commit]:
        """Point the object at its new blob, written already; returns the blob that is no
        longer needed and the commit, recorded in a group commit (group_commit.py); a
        `synced` record makes its group's transaction durable by itself, after `before`."""
        entry = handle.entry
        kept = await self.new_version(entry, handle.metadata)
        # Read once the blob is written: the group sync that covers this generation
        # starts after that.
        unsynced = self.durability.left_unsynced(object_id) if fresh else 0
        commit = commit_of(handle, object_id, blob, seal, kept, unsynced)
        if entry.kernel_inode in self._orphans:  # unlinked while open: the content goes with it
            return object_id, commit
        previous = await self.group.record(entry, commit, synced, before)
        if entry.kernel_inode in self._orphans:
            return object_id, commit  # unlinked while the record waited
        return previous, commit

    def times_set(self, inode: int) -> None:
        """An explicit mtime was set: pending commits must not replace it."""
        for handle in self._by_inode.get(inode, ()):
            handle.modified_ns = None

    async def commit_all(self) -> None:
        """Commit every handle still dirty (at unmount, when the kernel has not released)."""
        for handle in list(self._handles.values()):
            if handle.dirty:
                try:
                    await self.commit(handle, durable=True)
                except (OSError, Refused) as error:
                    log.warning("%s: not committed at unmount: %s", handle.entry.name, error)

    async def make_durable(self, handle: Handle) -> None:
        """`fsync`: what the handle wrote is committed durably alone, as a PUT is (databases
        fsync at every transaction, and a whole durability point each made that 1.5
        times as slow), and the next ones sync a journal (service/journaled.py); with
        nothing to commit, everything committed so far is made durable."""
        if self.working(handle).journal is not None:
            async with self._working_copy(handle) as working:
                journal = working.journal
                if (
                    journal is not None
                    and not journal.full
                    and working.failed is None
                    and await self._change(working, False, self.journals.sync_now, working)
                ):
                    self.journals.synced(working)
                    return
        if self.working(handle).dirty:
            await self.commit(handle, durable=True, alone=True)
            self.journals.start(self.working(handle))
            return
        await self.durability.make_all_durable()

    async def _commit_journaled(self, working: Handle) -> None:
        if working.journal is not None:
            await self.commit(working, durable=True, alone=True)

    # -- objects going away ---------------------------------------------------------------

    def retire(self, object_id: str | None) -> None:
        """The metadata no longer names this blob (that change is committed)."""
        if object_id is not None:
            self.reader.forget(object_id)
            self.durability.retire(object_id)

    def busy_blobs(self) -> set[str]:
        """Blobs the collector must leave alone although no metadata names them."""
        return self.committing | self.durability.retired()

    def unlinked(self, entry: Entry) -> None:
        """The object lost its name (committed): unless other names (hard links) keep
        it, its blob is retired; while it is open, its entry outlives the name."""
        if entry.links > 1:
            return
        self.retire(entry.object_id)
        if self.is_open(entry.kernel_inode):
            self._orphans[entry.kernel_inode] = entry

    async def remove_blob(self, object_id: str) -> None:
        self.reader.forget(object_id)
        await self.data.remove_blobs([object_id])
