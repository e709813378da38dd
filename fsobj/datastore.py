"""The data store: immutable blobs named by UUID, and the staging area where writes wait.

An object's content is written to a staging file; committing it fsyncs (when durability is
asked for) and renames it to `blobs/ab/cd/UUID`, after which it never changes. Staging and
blobs share one filesystem, so the commit is a rename. All calls that touch the disk at
length run in a worker thread, off the trio loop.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import uuid
from pathlib import Path

import trio

COPY_CHUNK = 1 << 20
# Object size limit, as in S3: writes or truncates past it fail with EFBIG.
MAX_OBJECT_SIZE = 5 * (1 << 40)

_libc = ctypes.CDLL(None, use_errno=True)


class Staging:
    """The content of an object being written: a private file in the staging area.

    The MD5 (S3's etag) is computed as the data arrives while writes are sequential from
    offset 0; any other write pattern falls back to hashing the file once at commit.
    """

    def __init__(self, path: Path, fd: int, size: int = 0):
        self.path = path
        self.fd = fd
        self.size = size
        self._md5: hashlib._Hash | None = hashlib.md5() if size == 0 else None
        self._hashed = 0

    def write(self, offset: int, data: bytes) -> int:
        written = os.pwrite(self.fd, data, offset)
        if self._md5 is not None:
            if offset == self._hashed and offset == self.size:
                self._md5.update(data[:written])
                self._hashed += written
            else:
                self._md5 = None
        self.size = max(self.size, offset + written)
        return written

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        if size != self._hashed:
            self._md5 = None
        self.size = size

    def etag(self) -> str:
        if self._md5 is not None and self._hashed == self.size:
            return self._md5.hexdigest()
        md5 = hashlib.md5()
        offset = 0
        while chunk := os.pread(self.fd, COPY_CHUNK, offset):
            md5.update(chunk)
            offset += len(chunk)
        return md5.hexdigest()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class DataStore:
    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs"
        self.staging = root / "staging"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)

    def clear_staging(self) -> int:
        """Remove writes left by a process that ended before committing them."""
        removed = 0
        for leftover in self.staging.iterdir():
            leftover.unlink()
            removed += 1
        return removed

    def blob_path(self, object_id: str) -> Path:
        return self.blobs / object_id[:2] / object_id[2:4] / object_id

    def open_blob(self, object_id: str) -> int:
        """A read-only descriptor on a blob; it stays valid even after the blob is removed."""
        return os.open(self.blob_path(object_id), os.O_RDONLY | os.O_CLOEXEC)

    async def stage(self, source_fd: int | None) -> Staging:
        """A new staging file, holding a copy of the blob open at `source_fd` if given."""
        return await trio.to_thread.run_sync(self._stage, source_fd)

    def _stage(self, source_fd: int | None) -> Staging:
        path = self.staging / uuid.uuid4().hex
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        staging = Staging(path, fd)
        try:
            if source_fd is not None:
                size = os.fstat(source_fd).st_size
                copied = 0
                while copied < size:
                    n = os.copy_file_range(source_fd, fd, size - copied, copied, copied)
                    if n == 0:
                        break
                    copied += n
                staging = Staging(path, fd, copied)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        return staging

    async def commit(self, staging: Staging, durable: bool) -> tuple[str, int, str]:
        """Turn a staging file into a new immutable blob; returns (object_id, size, etag)."""
        return await trio.to_thread.run_sync(self._commit, staging, durable)

    def _commit(self, staging: Staging, durable: bool) -> tuple[str, int, str]:
        etag = staging.etag()
        if durable:
            os.fsync(staging.fd)
        object_id = str(uuid.uuid4())
        path = self.blob_path(object_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.fchmod(staging.fd, 0o400)
        os.rename(staging.path, path)
        if durable:
            _fsync_dir(path.parent)
        size = staging.size
        staging.close()
        return object_id, size, etag

    async def discard(self, staging: Staging) -> None:
        def discard() -> None:
            staging.close()
            staging.path.unlink(missing_ok=True)

        await trio.to_thread.run_sync(discard)

    async def remove_blob(self, object_id: str) -> None:
        """Remove a blob no metadata points at; open descriptors keep reading it."""
        await trio.to_thread.run_sync(self.blob_path(object_id).unlink, True)

    async def make_durable(self, object_id: str) -> None:
        def sync() -> None:
            path = self.blob_path(object_id)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(path.parent)

        await trio.to_thread.run_sync(sync)

    async def sync_all(self) -> None:
        """Flush everything the store's filesystem holds for us (syncfs)."""

        def syncfs() -> None:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _libc.syncfs(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)

        await trio.to_thread.run_sync(syncfs)

    def capacity(self) -> os.statvfs_result:
        return os.statvfs(self.root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_object_size(size: int) -> None:
    if size > MAX_OBJECT_SIZE:
        raise OSError(errno.EFBIG, "objects are at most 5 TiB")
