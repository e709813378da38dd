"""Reading committed versions: each chunk checked against its CRC-32 the first time it is
read, and sequential readers read ahead in threads.

A handle reads the version it pinned (handles.py); a blob never changes, so a chunk
verified once stays verified, and reads ahead stay valid for as long as the handle keeps
that version.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import os
from typing import TYPE_CHECKING

import trio

from fsobj.datastore.blob_file import CHUNK, BlobFile, DamagedBlob, checked_chunk, chunk_sums
from fsobj.datastore.store import DataStore
from fsobj.metadata.store import Entry

if TYPE_CHECKING:
    from fsobj.service.working_copy import Handle

# Blobs whose verified chunks are remembered; past that the memory is cleared.
VERIFIED_BLOBS = 100_000
# A reader reading on from where its last read ended has its next ranges (this many, of
# the size it reads) read and checked ahead in threads, while the kernel copies out the
# current one; at most this many bytes are read ahead for all readers together.
READ_AHEAD = 3
READ_AHEAD_TOTAL = 32 << 20
# Reads up to this size of what is in the page cache are served on the loop, checking
# as much of their chunks as is left unchecked, up to this size too: the hop to a thread
# costs more than such a copy (grep reads 96 KiB at a time; a program that maps a large
# file faults its pages in by reads of up to 128 KiB, as git does its packs).
SMALL_READ = 128 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Version:
    """One committed content of an object: its blob and what is recorded about it."""

    object_id: str
    size: int
    checksums: bytes | None

    @classmethod
    def of(cls, entry: Entry) -> Version:
        assert entry.object_id is not None
        return cls(entry.object_id, entry.size, entry.checksums)


@dataclasses.dataclass(frozen=True, slots=True)
class Ahead:
    """A range being read ahead for a handle."""

    offset: int
    size: int
    future: concurrent.futures.Future


class VersionReader:
    """Reads of committed versions for every handle: the verified chunks of each blob,
    and the reads ahead of sequential readers."""

    def __init__(self, data: DataStore):
        self.data = data
        # Chunks of each blob whose checksum has been verified by a read.
        self._verified: dict[str, set[int]] = {}
        self._threads = concurrent.futures.ThreadPoolExecutor(
            READ_AHEAD, thread_name_prefix="read-ahead"
        )
        self.ahead_bytes = 0  # what all handles' read aheads hold or are reading

    def opened(self, handle: Handle) -> None:
        """A handle opened its version: a small one's blob is asked of the disk at once
        (WILLNEED starts reading it, without waiting), so that its first read, which
        comes a round trip later, may find it in the page cache, on the loop."""
        version, blob = handle.version, handle.blob
        if version is not None and blob is not None and 0 < version.size <= SMALL_READ:
            with contextlib.suppress(OSError):
                os.posix_fadvise(blob.fd, 0, 0, os.POSIX_FADV_WILLNEED)

    def unchecked(self, version: Version, offset: int, size: int) -> int:
        """How many bytes of the chunks a read touches are still to be checked (the read
        reads them whole)."""
        if version.checksums is None:
            return 0
        verified = self._verified.get(version.object_id, ())
        return sum(
            min(CHUNK, version.size - index * CHUNK)
            for index in _chunks(version, offset, size)
            if index not in verified
        )

    def read_on_loop(self, handle: Handle, offset: int, size: int) -> bytes:
        """A small read served on the loop, from the page cache, its chunks checked
        already or small. BlockingIOError: read it in a thread (it waits for the disk,
        checks a large chunk, opens a large sealed one, or a sequential reader reads
        ahead)."""
        version, blob = handle.version, handle.blob
        if (
            version is None
            or blob is None
            or min(size, version.size - offset) > SMALL_READ  # what it can get
            or handle.ahead
            or self.unchecked(version, offset, size) > SMALL_READ
            or (blob.sealed and version.size > SMALL_READ)  # a chunk opened costs more
        ):
            raise BlockingIOError(errno.EAGAIN, "a read for a thread")
        return self._read_verified(*_blob(handle), offset, size, cached_only=True)

    async def read(self, handle: Handle, offset: int, size: int) -> bytes:
        """Read a committed version, and if the reader is reading sequentially, keep the
        next ranges being read, so that their disk reads and checksums overlap the kernel's
        round trips."""
        if handle.ahead and (handle.ahead[0].offset, handle.ahead[0].size) == (offset, size):
            ahead = handle.ahead.pop(0)
            self.ahead_bytes -= ahead.size
            if not ahead.future.done():
                await _wait(ahead.future)
            data = ahead.future.result()
        else:
            self.drop_ahead(handle)
            # On its own descriptor, as a read ahead: a commit of a writer of the same
            # process may re-pin the handle (closing its descriptor) while the read runs.
            version, blob, name = _blob(handle)
            data = await trio.to_thread.run_sync(
                self._read_own, version, blob.dup(), name, offset, size
            )
        sequential = offset == handle.read_end
        handle.read_end = end = offset + len(data)
        if sequential and len(data) == size:
            version, blob, name = _blob(handle)
            following = handle.ahead[-1].offset + size if handle.ahead else end
            while (
                len(handle.ahead) < READ_AHEAD
                and following < version.size
                and self.ahead_bytes + size <= READ_AHEAD_TOTAL
            ):
                # On its own descriptor: the handle may close or re-pin before it finishes.
                future = self._threads.submit(
                    self._read_own, version, blob.dup(), name, following, size
                )
                handle.ahead.append(Ahead(following, size, future))
                self.ahead_bytes += size
                following += size
        return data

    def drop_ahead(self, handle: Handle) -> None:
        """Forget the handle's read aheads (those still running finish unseen)."""
        self.ahead_bytes -= sum(ahead.size for ahead in handle.ahead)
        handle.ahead.clear()

    def forget(self, object_id: str) -> None:
        """The blob is gone: what was verified of it goes too."""
        self._verified.pop(object_id, None)

    def damaged(self, version: Version, name: str, problem: str) -> DamagedBlob:
        path = self.data.blob_path(version.object_id)
        return DamagedBlob(f"object {version.object_id} ({name}): blob {path} {problem}")

    def _read_own(
        self, version: Version, blob: BlobFile, name: str, offset: int, size: int
    ) -> bytes:
        """Read on a descriptor of the read's own, then close it."""
        try:
            return self._read_verified(version, blob, name, offset, size)
        finally:
            blob.close()

    def _read_verified(
        self,
        version: Version,
        blob: BlobFile,
        name: str,
        offset: int,
        size: int,
        cached_only: bool = False,
    ) -> bytes:
        """Read committed content from the blob open as `blob`, checking each chunk it
        touches against its CRC-32 the first time (a blob never changes, so once is enough)."""
        touched = _chunks(version, offset, size)
        if version.checksums is None or not touched:
            return blob.read(size, offset, cached_only)
        sums = chunk_sums(version.checksums)
        if len(self._verified) > VERIFIED_BLOBS:
            self._verified.clear()  # forgetting only means checking again
        verified = self._verified.setdefault(version.object_id, set())
        fresh = []
        for index in touched:
            if index in verified:
                continue
            data = checked_chunk(blob, index, sums[index], cached_only)
            if data is None:
                raise self.damaged(
                    version,
                    name,
                    f"fails its checksum at bytes {index * CHUNK}..{(index + 1) * CHUNK - 1}",
                )
            verified.add(index)
            fresh.append(data)
        if len(fresh) == len(touched):  # every chunk was just read: no second read
            start = offset - touched.start * CHUNK
            whole = fresh[0] if len(fresh) == 1 else b"".join(fresh)
            return whole[start : start + size]
        return blob.read(size, offset, cached_only)


def _chunks(version: Version, offset: int, size: int) -> range:
    """The chunks a read of `size` bytes at `offset` touches (none past the end)."""
    end = min(offset + size, version.size)
    first = offset // CHUNK
    return range(first, (end - 1) // CHUNK + 1 if end > offset else first)


async def _wait(future: concurrent.futures.Future) -> None:
    """Wait on the trio loop, without holding a thread, for a future to finish."""
    done = trio.Event()
    token = trio.lowlevel.current_trio_token()
    future.add_done_callback(lambda _: token.run_sync_soon(done.set))
    await done.wait()


def _blob(handle: Handle) -> tuple[Version, BlobFile, str]:
    """What a read of the handle's committed version needs."""
    assert handle.version is not None and handle.blob is not None
    return handle.version, handle.blob, handle.entry.name
