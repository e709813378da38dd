"""An open blob, read as the content it holds: a plain blob's file is that content, a
sealed one's (sealing.py) is opened chunk by chunk."""

from __future__ import annotations

import array
import errno
import os
import threading
from pathlib import Path

from fsobj.datastore import sealing
from fsobj.datastore.crc import crc32
from fsobj.datastore.sealing import HEADER, SEALED_CHUNK, KeyMissing, KeyStore, Unsealer
from fsobj.refusals import Reason, Refused

CHUNK = sealing.CHUNK  # checksum granularity, and the unit of copies and scans


class DamagedBlob(Exception):
    """A blob that is missing, of the wrong size, or whose content fails its checksum."""


def _little_endian() -> bool:
    return array.array("I", [1]).tobytes()[0] == 1


def _swapped(values: array.array) -> array.array:
    copy = array.array("I", values)
    copy.byteswap()
    return copy


def chunk_sums(checksums: bytes) -> array.array:
    """The CRC-32 of each chunk, from their stored form (little-endian uint32s)."""
    sums = array.array("I")
    sums.frombytes(checksums)
    return sums if _little_endian() else _swapped(sums)


def stored_sums(sums: array.array) -> bytes:
    """The stored form of chunk CRC-32s (`chunk_sums` reads it)."""
    return (sums if _little_endian() else _swapped(sums)).tobytes()


_nowait_works = True


def pread(fd: int, size: int, offset: int, cached_only: bool = False) -> bytes:
    """Read from a file; with `cached_only`, raise BlockingIOError instead of waiting for
    the disk (the caller is on the event loop and will retry in a thread)."""
    global _nowait_works
    if not cached_only:
        return os.pread(fd, size, offset)
    if not _nowait_works:
        raise BlockingIOError(errno.EAGAIN, "this filesystem cannot say what is cached")
    buffer = bytearray(size)
    try:
        got = os.preadv(fd, [buffer], offset, os.RWF_NOWAIT)
    except OSError as error:
        if error.errno != errno.EOPNOTSUPP:  # tmpfs, for one
            raise
        _nowait_works = False
        raise BlockingIOError(errno.EAGAIN, "this filesystem cannot say what is cached") from None
    if got < size and got < os.fstat(fd).st_size - offset:  # partly in the page cache
        raise BlockingIOError(errno.EAGAIN, "not all in the page cache")
    return bytes(memoryview(buffer)[:got])


class Opened:
    """The last few chunks of a sealed blob opened, for every descriptor on it (readers
    ahead and the reader they run ahead of)."""

    KEPT = 4

    def __init__(self) -> None:
        self._chunks: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def get(self, index: int) -> bytes | None:
        return self._chunks.get(index)

    def put(self, index: int, content: bytes) -> None:
        with self._lock:
            self._chunks[index] = content
            while len(self._chunks) > self.KEPT:
                del self._chunks[next(iter(self._chunks))]


class BlobFile:
    """A descriptor on a blob, which stays valid after the blob is removed, and what it
    takes to read the content: nothing for a plain blob, its data key for a sealed one."""

    def __init__(
        self, fd: int, size: int, unsealer: Unsealer | None = None, opened: Opened | None = None
    ):
        self.fd = fd
        self.size = size
        self.unsealer = unsealer
        # A sealed blob's chunks opened last, shared with its `dup`s: reads come in pieces
        # of 128 KiB, each on a descriptor of its own, and a chunk is opened once for all.
        self._opened = opened if opened is not None else Opened()

    @property
    def sealed(self) -> bool:
        return self.unsealer is not None

    def chunk(self, index: int, cached_only: bool = False) -> bytes | None:
        """Chunk `index` of the content (None: a sealed chunk that fails to open)."""
        if self.unsealer is None:
            return pread(self.fd, CHUNK, index * CHUNK, cached_only)
        content = self._opened.get(index)
        if content is not None:
            return content
        stored = pread(self.fd, SEALED_CHUNK, HEADER + index * SEALED_CHUNK, cached_only)
        content = self.unsealer.chunk(index, stored, index == (self.size - 1) // CHUNK)
        if content is not None:
            self._opened.put(index, content)
        return content

    def read(self, size: int, offset: int, cached_only: bool = False) -> bytes:
        if self.unsealer is None:
            return pread(self.fd, size, offset, cached_only)
        end = min(offset + size, self.size)
        pieces = []
        for index in range(offset // CHUNK, (end - 1) // CHUNK + 1 if end > offset else 0):
            content = self.chunk(index, cached_only)
            if content is None:
                raise DamagedBlob(f"fails its checksum at byte {index * CHUNK} (sealed)")
            pieces.append(content)
        start = offset - (offset // CHUNK) * CHUNK
        return b"".join(pieces)[start : start + end - offset]

    def dup(self) -> BlobFile:
        """The same blob on a descriptor of its own (closed apart from this one)."""
        return BlobFile(os.dup(self.fd), self.size, self.unsealer, self._opened)

    def close(self) -> None:
        os.close(self.fd)


def open_blob_file(
    path: Path, size: int, keys: KeyStore, customer_key: bytes | None = None
) -> BlobFile:
    """The blob at `path`, recorded as `size` bytes of content. Raises FileNotFoundError,
    DamagedBlob (another size, a header that does not open), or a refusal: a blob sealed
    with a client's key opened without it or with another, or a client's key given for a
    blob that was not sealed with one."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        found = os.fstat(fd).st_size
        unsealer = None
        if found == sealing.sealed_size(size):
            try:
                unsealer = Unsealer(os.pread(fd, HEADER, 0), keys, customer_key)
            except (ValueError, KeyMissing) as error:
                raise DamagedBlob(f"cannot be opened: {error}") from None
        elif found != size:
            raise DamagedBlob(f"has {found} bytes, not {size}")
        if customer_key is not None and not (unsealer and unsealer.customer):
            raise Refused(Reason.INVALID, None, "not encrypted with a key its client keeps")
        return BlobFile(fd, size, unsealer)
    except BaseException:
        os.close(fd)
        raise


def checked_chunk(
    blob: BlobFile, index: int, expected: int, cached_only: bool = False
) -> bytes | None:
    """Chunk `index` of the blob's content if it matches its recorded CRC-32, else None."""
    data = blob.chunk(index, cached_only)
    return data if data is not None and crc32(data) == expected else None


def blob_file_problem(path: Path, size: int, checksums: bytes | None) -> str:
    """What is wrong with the blob file at `path` ("" if nothing): another size, or (given
    `checksums`) content that does not match them; a sealed blob is checked without its
    key, chunk by chunk as stored. Blocking: for a thread."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        found = os.fstat(fd).st_size
        if found == sealing.sealed_size(size):
            return sealing.sealed_problem(fd, size) if checksums is not None else ""
        if found != size:
            return f"has {found} bytes, not {size}"
        blob = BlobFile(fd, size)
        for index, expected in enumerate(chunk_sums(checksums or b"")):
            if checked_chunk(blob, index, expected) is None:
                return f"fails its checksum at byte {index * CHUNK}"
        return ""
    finally:
        os.close(fd)
