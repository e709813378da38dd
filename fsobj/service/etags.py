"""ETags computed after the commit.

An object that the mount writes beyond what staging keeps in memory (1 MiB) is committed
without its MD5: MD5 runs at 470 MiB/s on one core here, and computing it as the data
arrived bounded how fast a large file could be written and how long an `fsync` of a
database file took. Its etag is computed from the blob instead: by the daemon's
background task soon after the commit (`run`), or soon after the next start if the
daemon stopped first, or at once by the first request that needs it (`fill`: S3's HEAD,
GET, listings and conditions, the mount's user.fsobj.etag).
Either way it is the MD5 of the content, checked against the blob's CRC-32s as it is
read, and recorded once for every name and past version of the blob.
"""

from __future__ import annotations

import collections
import hashlib
import logging

import trio

from fsobj.datastore.blob_file import CHUNK, DamagedBlob, checked_chunk, chunk_sums
from fsobj.datastore.store import DataStore
from fsobj.metadata.entries import Entry
from fsobj.metadata.store import MetadataStore

log = logging.getLogger(__name__)

KNOWN = 4096  # etags computed here, remembered for the other entries naming the blob
QUIET = 1.0  # seconds after its commit before the background task reads a blob


class Etags:
    def __init__(self, meta: MetadataStore, data: DataStore):
        self.meta = meta
        self.data = data
        # Objects committed without an etag, for the background task, by blob id, with
        # when their turn comes (in order: each arrives QUIET after its commit).
        self._waiting: dict[str, tuple[Entry, float]] = {}
        self._arrived = trio.Event()
        self._known: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._computing: dict[str, trio.Event] = {}  # blob ids being read, for their etag

    def later(self, entry: Entry) -> None:
        """An object was committed without its etag: compute it soon."""
        if entry.object_id is not None:
            self._waiting[entry.object_id] = (entry, trio.current_time() + QUIET)
            self._arrived.set()

    async def fill(self, entry: Entry) -> None:
        """Give an object committed without an etag its etag, now."""
        while entry.etag is None and entry.object_id is not None and entry.kind == "object":
            object_id = entry.object_id
            etag = await self.of_blob(object_id, entry.size, entry.checksums)
            if entry.object_id == object_id:  # else replaced meanwhile: the new one's
                entry.etag = etag

    async def run(self) -> None:
        """Compute the etags of blobs committed without one, one at a time, each QUIET
        after its commit, until cancelled. A blob replaced meanwhile needs none: a file
        that is committed again and again (a database's, at every fsync) has its etag
        computed once it rests, not once per version. Those that an earlier run left
        without one (it stopped first) come first."""
        try:
            for inode in await self.meta.objects_without_etag():
                entry = await self.meta.get(inode)
                if entry is not None:
                    self.later(entry)
        except OSError as error:  # they are still computed when first asked for
            log.warning("could not look for etags left to compute: %s", error)
        while True:
            await self._arrived.wait()
            self._arrived = trio.Event()
            while self._waiting:
                object_id = next(iter(self._waiting))
                entry, due = self._waiting[object_id]
                await trio.sleep_until(due)
                if self._waiting.pop(object_id, None) is None or entry.object_id != object_id:
                    continue  # asked for meanwhile (of_blob took it), or replaced
                try:
                    await self.fill(entry)
                except FileNotFoundError:
                    pass  # replaced meanwhile, and its blob removed
                except (OSError, DamagedBlob) as error:
                    log.warning(
                        "the etag of blob %s is left to its first reader: %s",
                        entry.object_id,
                        error,
                    )

    async def of_blob(self, object_id: str, size: int, checksums: bytes | None) -> str:
        """The etag of a blob, computed (and recorded) unless known (a past version's
        record is not an entry: `fill` is for entries)."""
        while (etag := self._known.get(object_id)) is None:
            computing = self._computing.get(object_id)
            if computing is not None:
                # Another request is reading this blob: its answer serves this one too.
                # Should it fail, the loop tries again itself.
                await computing.wait()
                continue
            self._computing[object_id] = done = trio.Event()
            try:
                self._waiting.pop(object_id, None)
                await self.data.ensure_local(object_id, size, checksums)
                etag = await trio.to_thread.run_sync(self._md5, object_id, size, checksums)
                await self.meta.record_etag(object_id, etag)
                self._known[object_id] = etag
                while len(self._known) > KNOWN:
                    self._known.popitem(last=False)
            finally:
                del self._computing[object_id]
                done.set()
        return etag

    def _md5(self, object_id: str, size: int, checksums: bytes | None) -> str:
        """The MD5 of the blob's content, each chunk checked as it is read. Blocking."""
        blob = self.data.open_blob(object_id, size)
        try:
            sums = chunk_sums(checksums) if checksums is not None else None
            digest = hashlib.md5()
            for index in range(-(-size // CHUNK)):
                if sums is not None:
                    content = checked_chunk(blob, index, sums[index])
                else:
                    content = blob.chunk(index)
                if content is None:
                    raise DamagedBlob(
                        f"blob {object_id} fails its checksum at byte {index * CHUNK}"
                    )
                digest.update(content)
            return digest.hexdigest()
        finally:
            blob.close()
