"""Staged content: what is being written to an object until it is committed as a blob.

Content stays in memory while small, and moves to a file of the store's staging area once
it grows. Its digests (the per-chunk CRC-32s, and the MD5 etag where it is computed here)
are computed as the data arrives while it arrives in order; the commit (datastore/store.py)
turns it into a blob.
"""

from __future__ import annotations

import array
import collections
import concurrent.futures
import errno
import hashlib
import os
import threading
from pathlib import Path

from fsobj.datastore.blob_file import CHUNK, chunk_sums, pread, stored_sums
from fsobj.datastore.crc import crc32

# One thread hashes large writes while their writers go on, where they compute an MD5
# (S3 PUTs): at 470 MiB/s on one core here, inline it would halve sequential writes.
_hasher = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest")
HASH_IN_BACKGROUND = 256 * 1024  # pieces at least this big are hashed by that thread
HASH_LAG = 8 * CHUNK  # how far hashing may fall behind the writes before they wait

# Writes to staging files, taken over from the loop (Staging.write_behind): each file's
# writes run in order on one of these threads while its writer sends the next piece.
_writers = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="staging")
_DRAIN_TURN = 8  # pieces a file's writes take before the next file's have their turn


class Digest:
    """S3's etag (MD5 of the content) and the per-chunk CRC-32s, fed the content in order;
    without `md5`, the CRC-32s alone (the etag is computed after the commit)."""

    def __init__(self, md5: bool = True) -> None:
        self.md5 = hashlib.md5() if md5 else None
        self.sums = array.array("I")
        self._crc = 0
        self._filled = 0  # bytes of the current chunk seen so far
        self._queued: collections.deque[tuple[concurrent.futures.Future, int]] = collections.deque()
        self._lag = 0

    def feed(self, data: bytes | memoryview) -> None:
        """`update`, by the hashing thread for large pieces when there is an MD5 to
        compute, which block while hashing lags more than HASH_LAG behind. The CRC-32s
        alone are computed here: at 45 GB/s, quicker than handing the piece over."""
        if not self._queued and (len(data) < HASH_IN_BACKGROUND or self.md5 is None):
            self.update(data)
            return
        self._queued.append((_hasher.submit(self.update, data), len(data)))
        self._lag += len(data)
        # Small pieces may come from the event loop: only large ones (from worker
        # threads) wait.
        while self._lag > HASH_LAG and len(data) >= HASH_IN_BACKGROUND:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, size = self._queued.popleft()
        self._lag -= size
        future.result()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self.md5 is not None:
            self.md5.update(data)
        view = memoryview(data)
        while view:
            take = min(len(view), CHUNK - self._filled)
            self._crc = crc32(view[:take], self._crc)
            self._filled += take
            view = view[take:]
            if self._filled == CHUNK:
                self.sums.append(self._crc)
                self._crc, self._filled = 0, 0

    def finish(self) -> tuple[str | None, bytes]:
        """(etag, checksums): the checksums are little-endian uint32, one per chunk."""
        while self._queued:
            self._wait_oldest()
        if self._filled:
            self.sums.append(self._crc)
            self._crc, self._filled = 0, 0
        etag = self.md5.hexdigest() if self.md5 is not None else None
        return etag, stored_sums(self.sums)


class Staging:
    """The content of an object being written, of one working copy: in memory while it
    is small (most objects are), in a file of the staging area once it grows (`spill`).

    Digests are computed as the data arrives while writes are sequential from offset 0;
    any other write pattern falls back to reading the content once at commit. Without
    `md5`, content that leaves memory gets no MD5 here: MD5 is what bounds how fast a
    large object is written (470 MiB/s on one core here), so the mount's objects have
    their etag computed after the commit (service/etags.py).
    """

    def __init__(
        self,
        path: Path | None = None,
        fd: int = -1,
        size: int = 0,
        md5: bool = True,
        base: bytes | None = None,
    ):
        self.path = path
        self.fd = fd
        self.size = size
        self.memory: bytearray | None = bytearray() if path is None else None
        self.md5 = md5
        self._digest: Digest | None = Digest(md5) if size == 0 else None
        # An ETag other than the MD5 (a multipart upload's), and checksums known already
        # (its parts'): with both, committing reads nothing back.
        self.etag: str | None = None
        self.checksums: bytes | None = None
        # Writes may run in several threads at once (writers share a working copy): the
        # size and the digest's order of data are kept under this lock.
        self._lock = threading.Lock()
        self._fed = size  # how far the digest has seen the content, from offset 0
        # Writes handed over by `write_behind`, in order, and the first that failed.
        self._behind: collections.deque[tuple[int, bytes]] = collections.deque()
        self.behind = 0  # bytes handed over and not yet written
        self._draining = False  # a thread has this staging's writes to do, or will have
        self._writing = False  # one of them is being written
        self._failure: OSError | None = None
        self._settled = threading.Condition(self._lock)
        # The chunk checksums of the content copied in (`base`: a blob's, as recorded),
        # and the chunks changed since: without an MD5 to compute, a commit reads only
        # those (a database changes little of itself between two fsyncs).
        self._base = chunk_sums(base) if base is not None else None
        self._changed: set[int] = set()

    def write(self, offset: int, data: bytes) -> int:
        with self._lock:
            if self.memory is None:
                written = os.pwrite(self.fd, data, offset)
            else:
                if offset > len(self.memory):
                    self.memory.extend(bytes(offset - len(self.memory)))
                self.memory[offset : offset + len(data)] = data
                written = len(data)
            self._written(offset, memoryview(data)[:written])
        return written

    def _written(self, offset: int, data: memoryview) -> None:
        """Account for `data` written at `offset` (under the lock)."""
        self._change(offset, offset + len(data))
        if self._digest is not None:
            if offset == self._fed:
                self._digest.feed(data)
                self._fed += len(data)
            else:
                self._digest = None
        self.size = max(self.size, offset + len(data))

    def write_behind(self, offset: int, data: bytes) -> int:
        """`write` to a staging file, done by a thread of its own after this returns, so
        that the writer's next piece arrives meanwhile (every hop to a thread and back
        costs 0.3 ms on this machine, as much as writing 1 MiB into the page cache).
        Every other call waits for the writes handed over, and a write that failed fails
        the next call of any kind; its upload is then spoiled (nothing is committed)."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            self._behind.append((offset, data))
            self.behind += len(data)
            self.size = max(self.size, offset + len(data))
            if not self._draining:
                self._draining = True
                _writers.submit(self._drain)
        return len(data)

    def _drain(self) -> None:
        """Write what `write_behind` handed over, in order, until none is left; after a
        few pieces, in turn with the other files' writes (the threads are few)."""
        for _ in range(_DRAIN_TURN):
            with self._lock:
                if not self._behind:  # the last write's accounting woke every waiter
                    self._draining = False
                    return
                offset, data = self._behind.popleft()
                self._writing = True
            failure = None
            try:  # outside the lock: the loop hands the next piece over meanwhile
                _write_all(self.fd, memoryview(data), offset)
            except OSError as error:
                failure = error
            with self._lock:
                self._writing = False
                self.behind -= len(data)
                if failure is None:
                    self._written(offset, memoryview(data))
                else:
                    self._failure = failure
                    self._drop_behind()
                self._settled.notify_all()
        _writers.submit(self._drain)

    def _drop_behind(self) -> None:
        self.behind -= sum(len(data) for _, data in self._behind)
        self._behind.clear()

    def settle(self, behind: int = 0) -> None:
        """Wait until no more than `behind` bytes handed over are left to write; raise
        the failure of any of them. Blocking."""
        with self._lock:
            while self.behind > behind:
                self._settled.wait()
            if self._failure is not None:
                raise self._failure

    def read(self, offset: int, size: int) -> bytes:
        if self.memory is None:
            self.settle()
            return os.pread(self.fd, size, offset)
        return bytes(self.memory[offset : offset + size])

    def read_cached(self, offset: int, size: int) -> bytes:
        """`read` on the event loop: BlockingIOError if it would wait, for writes handed
        over or for the disk (then `read` it in a thread)."""
        memory = self.memory  # a spill in a thread may move it to a file meanwhile
        if memory is not None:
            return bytes(memory[offset : offset + size])
        with self._lock:
            if self.behind or self._failure is not None:
                raise BlockingIOError(errno.EAGAIN, "writes are still being written")
        return pread(self.fd, size, offset, cached_only=True)

    def truncate(self, size: int) -> None:
        self.settle()
        with self._lock:
            if self.memory is None:
                os.ftruncate(self.fd, size)
            elif size < len(self.memory):
                del self.memory[size:]
            else:
                self.memory.extend(bytes(size - len(self.memory)))
            if size != self.size:
                self._digest = None
                self._change(min(size, self.size), max(size, self.size))
            self.size = size

    def _change(self, start: int, end: int) -> None:
        """Bytes `start` to `end` changed: their chunks' checksums must be computed."""
        if self._base is not None and end > start:
            self._changed.update(range(start // CHUNK, (end - 1) // CHUNK + 1))

    def spill(self, path: Path) -> None:
        """Move the content from memory to a new file at `path` (blocking: run in a thread)."""
        with self._lock:  # no write may land in memory once it is copied
            assert self.memory is not None
            self.fd = new_file(path, self.memory, 0o600)
            self.path, self.memory = path, None

    def digests(self) -> tuple[str | None, bytes]:
        """(etag, checksums) of the staged content; no etag for content out of memory
        staged without `md5`."""
        self.settle()
        if self.etag is not None and self.checksums is not None:
            return self.etag, self.checksums
        digest = self._digest
        in_memory = self.memory is not None
        if digest is None and self._base is not None and not self.md5 and not in_memory:
            return self.etag, self._sums_since_base()
        if digest is None or (digest.md5 is None and in_memory):  # small: MD5 costs little
            digest = Digest(self.md5 or in_memory)
            if self.memory is not None:
                digest.update(self.memory)
            else:
                offset = 0
                while chunk := os.pread(self.fd, CHUNK, offset):
                    digest.update(chunk)
                    offset += len(chunk)
        md5, checksums = digest.finish()
        return self.etag or md5, checksums

    def _sums_since_base(self) -> bytes:
        """The chunk checksums: the base's where a chunk did not change, computed where it
        did (or lies past the base's end)."""
        assert self._base is not None
        sums = array.array("I")
        for index in range(-(-self.size // CHUNK)):
            if index < len(self._base) and index not in self._changed:
                sums.append(self._base[index])
            else:
                sums.append(crc32(os.pread(self.fd, CHUNK, index * CHUNK)))
        return stored_sums(sums)

    def close(self) -> None:
        """Drop the content (the caller removes the file, if any, once it is not needed).
        Writes handed over and not begun are dropped; one under way is waited for."""
        with self._lock:
            self._drop_behind()
            while self._writing:
                self._settled.wait()
            self.memory = None
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        if written == 0:  # a file that takes no more without an error: as good as full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        offset, data = offset + written, data[written:]


def new_file(path: Path, content: bytearray, mode: int) -> int:
    """A descriptor on a new file at `path` holding `content`; no file if writing fails."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        _write_all(fd, memoryview(content), 0)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd
