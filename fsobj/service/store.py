"""A store on disk: its layout, the lock that gives one process ownership, and opening it.

STORE/
  meta.sqlite3   metadata store
  blobs/         data store: immutable blobs, blobs/ab/UUID
  layout         the blob layout, once its 256 shard directories exist
  staging/       writes not yet committed
  lock           held (flock) by the process that owns the store: "pid\\nmountpoint"
  fsobj.log      the log of a mount running in the background
  backends.json  where metadata and blobs live, when not here (`fsobj format`; backends.py)
  session        on a shared store: the session of the last process that served it from here
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import trio
import trio_asyncio

from fsobj.datastore import journal
from fsobj.datastore.blob_file import DamagedBlob
from fsobj.datastore.store import DataStore
from fsobj.iam.policy import Policy
from fsobj.metadata.cache import DEFAULT_CAPACITY
from fsobj.metadata.entries import Entry
from fsobj.metadata.store import MetadataStore, Sharing, open_metadata_store
from fsobj.refusals import Refused
from fsobj.service import backends
from fsobj.service.core import Service

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreError(Exception):
    """A store that cannot be opened; the message says why, for the user."""


def default_store() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "fsobj"


@dataclasses.dataclass
class Store:
    root: Path
    meta: MetadataStore
    data: DataStore
    service: Service  # the core, which the front ends hold

    @property
    def _mounted_marker(self) -> Path:
        return self.root / "mounted"

    def begin_mount(self) -> bool:
        """Mark the store as mounted; returns whether the last mount ended uncleanly."""
        unclean = self._mounted_marker.exists()
        self._mounted_marker.touch()
        return unclean

    def end_mount(self) -> None:
        self._mounted_marker.unlink(missing_ok=True)

    async def recover(self) -> None:
        """The cheap recovery steps after a crash: writes that were never committed, but
        for what `fsync`s made durable in journals."""
        for name in await self.recover_journals():
            log.warning("%s: recovered what its last fsync made durable", name)
        if leftovers := self.data.clear_staging():
            log.warning("removed %d uncommitted writes left by an earlier run", leftovers)
        # On a shared store, objects in progress may be other hosts' (fsck reports them).
        if not self.meta.shared and (pending := await self.meta.remove_pending_objects()):
            log.warning(
                "removed %d objects whose writer died before close: %s",
                len(pending),
                ", ".join(pending[:10]),
            )
        for name, problem in await self.settle_new_objects():
            log.warning(
                "new object %s: %s; it is removed, as it had no earlier version", name, problem
            )

    async def recover_journals(self) -> list[str]:
        """Commit what the journals left in the staging area made durable (datastore/
        journal.py): each journal, replayed on its base blob, up to its last `fsync`, is
        its object's new version, unless the object moved past that blob meanwhile (its
        commit landed, or another writer's); returns the objects' names. Only for a
        store nobody has open; the journals stay for `clear_staging`."""
        newest = {}  # a failed commit leaves a journal, and the next copy starts another
        for found in await trio.to_thread.run_sync(journal.found, self.data.staging):
            newest[found.inode, found.base] = found
        recovered = []
        for found in newest.values():
            entry = await self.meta.get(found.inode)
            if entry is None or entry.object_id != found.base:
                continue
            try:
                if await self._replay(found, entry):
                    recovered.append(await self.service.path_of(entry))
            except (OSError, DamagedBlob, Refused) as error:
                log.error("journal %s: not recovered: %s", found.path.name, error)
        return recovered

    async def _replay(self, found: journal.Found, entry: Entry) -> bool:
        blob = self.data.open_blob(found.base, entry.size)
        try:
            staging = await self.data.stage(blob, False, entry.checksums)
        finally:
            blob.close()
        try:
            replay = functools.partial(journal.replay, found.path)
            marks = await trio.to_thread.run_sync(replay, staging.write, staging.truncate)
            if marks:
                await self.service.objects.replace(entry, staging, uid=0)
        finally:
            staging.close()
        return bool(marks)

    async def settle_new_objects(self) -> list[tuple[str, str]]:
        """After a crash: verify the new objects whose blobs were not synced yet. Those whose
        blob did not survive (a power loss) go back to not existing, and are returned with
        what was wrong; the rest are made durable. Only for a store nobody has open."""
        candidates = await self.meta.unsynced_objects()
        if not candidates:
            return []
        lost, problems = [], []
        for inode, name, object_id, size, checksums in candidates:
            assert object_id is not None  # an object committed with a blob
            problem = await trio.to_thread.run_sync(
                self.data.blob_problem, object_id, size, checksums, True
            )
            if problem:
                lost.append(inode)
                problems.append((name, f"its blob {object_id} {problem} after the crash"))
        await self.data.sync_all()
        await self.meta.settle_unsynced(lost)
        return problems


async def _agree_on_blobs(root: Path, meta: MetadataStore, chosen: backends.Backends) -> None:
    """Every host of a shared store must keep its blobs at the same place, the one that
    `fsobj format` recorded (and hosts that join read: backends.join_store)."""
    here = chosen.blob_location()
    recorded = await meta.settle_setting(backends.BLOB_LOCATION, here)
    if recorded != here:
        raise StoreError(
            f"cannot open store {root}: its backends.json puts blobs at {here}, but the"
            f" store's database says they are at {recorded}"
        )


async def _end_last_session(root: Path, meta: MetadataStore) -> None:
    """The session of the last process that served the store from this directory is over
    (this one holds the directory's lock): its pins go now, not when it would lapse, so
    what a crash here left unnamed is collected at once."""
    record = root / "session"
    with contextlib.suppress(FileNotFoundError, ValueError):
        await meta.end_session(int(record.read_text()))
    record.write_text(f"{meta.session}\n")


def run_offline(root: Path, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run `work` on an unmounted store, from synchronous code (the command line)."""

    async def main() -> T:
        async with trio_asyncio.open_loop(), open_store(root) as store:
            return await work(store)

    try:
        return trio.run(main)
    except BaseExceptionGroup as group:
        raise single_error(group) from None


def single_error(group: BaseExceptionGroup) -> BaseException:
    """The one exception inside nested task groups, or the group when there are several."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def lock_owner(root: Path) -> tuple[int, str] | None:
    """(pid, mountpoint) of the process that holds the store, if any."""
    try:
        text = (root / "lock").read_text()
        pid, mountpoint = text.split("\n")[:2]
        return int(pid), mountpoint
    except (OSError, ValueError):
        return None


def store_is_free(root: Path) -> bool:
    """Whether no process holds the store's lock."""
    try:
        fd = os.open(root / "lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _take_lock(root: Path, mountpoint: str) -> int:
    fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        owner = lock_owner(root)
        where = f" (pid {owner[0]}, mounted at {owner[1]})" if owner else ""
        raise StoreError(f"store {root} is in use by another fsobj process{where}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n{mountpoint}\n".encode())
    return fd


@contextlib.asynccontextmanager
async def open_store(
    root: Path,
    mountpoint: str = "",
    cache_entries: int = DEFAULT_CAPACITY,
    sharing: Sharing | None = None,
) -> AsyncIterator[Store]:
    """Own the store at `root` (creating it when absent) for the duration of the block. A
    store whose metadata is in PostgreSQL and whose blobs are at an S3 service is shared:
    other hosts serve it too, and this process serves it as `sharing` says.

    Must run inside `trio_asyncio.open_loop()`.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK):
            raise StoreError(f"store {root} is not writable")
        lock_fd = _take_lock(root, mountpoint)
        # Access control is the API service's: nobody else may read the store's files.
        root.chmod(0o700)
    except OSError as error:
        raise StoreError(f"cannot open store {root}: {error.strerror}") from None
    try:
        try:
            chosen = backends.read(root)
            data = await trio.to_thread.run_sync(backends.open_data_store, root, chosen)
        except backends.BackendError as error:
            raise StoreError(f"cannot open store {root}: {error}") from None
        shared = (sharing or Sharing()) if chosen.shared else None
        try:
            meta = await open_metadata_store(chosen.metadata_location(root), cache_entries, shared)
        except Exception as error:
            raise StoreError(f"cannot open the metadata of store {root}: {error}") from None
        try:
            if shared is not None:
                await _agree_on_blobs(root, meta, chosen)
                await _end_last_session(root, meta)
            policy = Policy(admins={0, os.getuid()})
            yield Store(root, meta, data, Service(meta, data, policy))
        finally:
            await meta.close()
    finally:
        os.close(lock_fd)
