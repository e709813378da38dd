"""The data store: immutable blobs named by UUID, and the staging area where writes wait.

An object's content is staged in memory while small, in a staging file once it grows;
committing it computes the object's digests and writes or renames it to `blobs/ab/UUID`
(256 shard directories, made with the store). Unless it is a new object's blob, which the
next group sync makes durable (docs/durability.md), the data is made durable
(fdatasync) and then its name (fsync of the directory) before the metadata store records
the new version, so a crash can never leave metadata pointing at a blob that is not fully
on disk. A blob never changes after that. All calls that touch the disk at length run in a
worker thread, off the trio loop.

Every blob has a CRC-32 per 1 MiB chunk, recorded with the object's metadata; reads verify
each chunk once before serving bytes from it, so damaged data is an error, never a wrong
answer.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import trio

from fsobj.datastore.blob_file import (
    CHUNK,
    BlobFile,
    DamagedBlob,
    blob_file_problem,
    checked_chunk,
    chunk_sums,
    open_blob_file,
)
from fsobj.datastore.files import fsync_dir
from fsobj.datastore.journal import Journal
from fsobj.datastore.sealing import KeyStore, Seal, Sealer
from fsobj.datastore.staging import Staging, new_file
from fsobj.refusals import Reason, Refused

log = logging.getLogger(__name__)

LAYOUT = "blobs/ab/UUID\n"  # recorded in STORE/layout
# Object size limit, as in S3: writes or truncates past it fail with EFBIG.
MAX_OBJECT_SIZE = 5 * (1 << 40)

_libc = ctypes.CDLL(None, use_errno=True)


def new_object_id() -> str:
    return str(uuid.uuid4())


def _data_segments(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The (start, end) ranges of a file that hold data; its holes are left out."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:  # nothing but a hole up to the end
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        offset = end


class Blob(NamedTuple):
    """A committed blob: its size, MD5 etag, chunk checksums, and the 512-byte blocks it
    occupies when it is sparse (None: as many as its size)."""

    size: int
    etag: str | None  # None: computed after the commit (Staging's `md5`)
    checksums: bytes
    blocks: int | None = None


class DataStore:
    """Blobs in the store's own directory (the default backend; datastore/remote.py keeps
    them at an S3 service instead, with this directory as their cache)."""

    # A small blob committed without a sync is a local file written into the page cache:
    # quicker on the caller's loop than a hop to a thread (handles.OpenObjects._commit).
    small_commits_inline = True
    durable_at_commit = False  # a commit's blob is durable once it returns (no group sync)

    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs"
        self.staging = root / "staging"
        # The store's keys for sealed blobs (encryption at rest), made on first need.
        self.keys = KeyStore(root / "keys")
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        self._settle_layout()

    def _settle_layout(self) -> None:
        """Make the 256 shard directories of a new store, or move the blobs of a store made
        before them (`blobs/ab/cd/UUID`) to theirs: once, recorded by the `layout` file.
        Every step can be repeated, so a crash part-way is finished by the next open."""
        marker = self.root / "layout"
        if marker.exists():
            return
        moved = 0
        for index in range(256):
            shard = self.blobs / f"{index:02x}"
            shard.mkdir(exist_ok=True)
            olds = [sub for sub in shard.iterdir() if sub.is_dir()]
            for old in olds:
                for blob in old.iterdir():
                    os.rename(blob, shard / blob.name)
                    moved += 1
                old.rmdir()
            if olds:
                fsync_dir(shard)
        fsync_dir(self.blobs)  # the shards' names
        marker.write_text(LAYOUT)
        fsync_dir(self.root)
        if moved:
            log.info("moved %d blobs to the layout %s", moved, LAYOUT.strip())

    def clear_staging(self) -> int:
        """Remove writes left by a process that ended before committing them."""
        removed = 0
        for leftover in self.staging.iterdir():
            leftover.unlink()
            removed += 1
        return removed

    def open_journal(self, inode: int, base: str) -> Journal:
        """A new journal of synced writes (journal.py) for a working copy of the object
        `inode` made from its blob `base`. Blocking."""
        return Journal.create(self.staging, uuid.uuid4().hex, inode, base)

    def blob_path(self, object_id: str) -> Path:
        return self.blobs / object_id[:2] / object_id

    def open_blob(self, object_id: str, size: int, customer_key: bytes | None = None) -> BlobFile:
        """The blob of `size` bytes of content, open for reading (datastore/blob_file.py
        says what it raises); it stays readable even after the blob is removed. Call
        `ensure_local` first, with no await in between."""
        return open_blob_file(self.blob_path(object_id), size, self.keys, customer_key)

    async def ensure_local(self, object_id: str, size: int, checksums: bytes | None) -> None:
        """Make the blob openable by `open_blob` (here, it always is)."""

    def blob_size(self, object_id: str) -> int | None:
        """The blob's size where it is kept (None: it is not there). Blocking."""
        try:
            return os.stat(self.blob_path(object_id)).st_size
        except FileNotFoundError:
            return None

    async def stage(
        self, source: BlobFile | None, md5: bool = True, checksums: bytes | None = None
    ) -> Staging:
        """New staged content: empty and in memory, or a staging file holding a copy of
        the content of the blob open as `source`, whose recorded chunk `checksums` the
        commit keeps for the chunks left unchanged. Files are created in a thread: under
        concurrent commits, creating one waits for the directory that renames are using
        (measured: 78% of the loop's time when done on the loop)."""
        if source is None:
            return Staging(md5=md5)
        return await trio.to_thread.run_sync(self._stage, source, md5, checksums)

    @staticmethod
    def stage_cached(source: BlobFile, checksums: bytes | None) -> Staging | None:
        """`stage`'s copy of a plain blob, in memory and at once (for a small one, which
        the caller says): None unless its content is all in the page cache and matches
        its recorded `checksums`; `stage` then copies it in a thread, as a file."""
        if source.sealed or checksums is None:
            return None
        sums = chunk_sums(checksums)
        if len(sums) != -(-source.size // CHUNK):
            return None
        staging = Staging(md5=False)
        for index, expected in enumerate(sums):
            try:
                content = checked_chunk(source, index, expected, cached_only=True)
            except BlockingIOError:
                return None
            if content is None:
                return None  # damaged: found where the copy is read, as for any other
            staging.write(index * CHUNK, content)
        return staging if staging.size == source.size else None

    def staging_path(self) -> Path:
        """A new name in the staging area."""
        return self.staging / uuid.uuid4().hex

    def _stage(self, source: BlobFile, md5: bool, checksums: bytes | None) -> Staging:
        path = self.staging_path()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            if source.sealed:
                for index in range(-(-source.size // CHUNK)):
                    content = source.chunk(index)
                    if content is None:
                        raise DamagedBlob(f"fails its checksum at byte {index * CHUNK} (sealed)")
                    os.pwrite(fd, content, index * CHUNK)
            else:
                for start, end in _data_segments(source.fd, source.size):  # holes stay holes
                    offset = start
                    while offset < end:
                        n = os.copy_file_range(source.fd, fd, end - offset, offset, offset)
                        if n == 0:
                            break
                        offset += n
            os.ftruncate(fd, source.size)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        return Staging(path, fd, source.size, md5, checksums)

    async def commit(
        self, staging: Staging, object_id: str, sync: bool = True, seal: Seal | None = None
    ) -> Blob:
        """Turn staged content into the blob `object_id`, sealed as `seal` says (None:
        plain), durably unless `sync` is False and the content is in memory."""
        return await trio.to_thread.run_sync(self.commit_now, staging, object_id, sync, seal)

    def commit_now(
        self, staging: Staging, object_id: str, sync: bool, seal: Seal | None = None
    ) -> Blob:
        """`commit`, blocking."""
        return self._commit(staging, object_id, sync, seal, keep_open=False)[0]

    def commit_open(
        self, staging: Staging, object_id: str, seal: Seal | None = None
    ) -> tuple[Blob, BlobFile | None]:
        """`commit_now` without a sync; a blob written from memory is left open for
        reading (the caller's to close), so that its writer reads on without opening it
        again."""
        return self._commit(staging, object_id, False, seal, keep_open=True)

    def _commit(
        self, staging: Staging, object_id: str, sync: bool, seal: Seal | None, keep_open: bool
    ) -> tuple[Blob, BlobFile | None]:
        etag, checksums = staging.digests()
        path = self.blob_path(object_id)
        blocks = None
        opened = None
        if seal is not None:
            self._seal_blob(path, staging, seal, sync)
            if staging.path is not None:
                staging.path.unlink()
        elif staging.memory is not None:
            # Small content goes straight to its blob: until the metadata names it, a
            # partial blob is only garbage, like any blob no metadata names.
            fd = self._write_blob(path, staging.memory, sync, keep_open)
            if fd is not None:
                opened = BlobFile(fd, staging.size)
        else:
            if sync:
                os.fdatasync(staging.fd)
            os.fchmod(staging.fd, 0o400)
            assert staging.path is not None  # content out of memory lives in a file
            os.rename(staging.path, path)
            allocated = os.fstat(staging.fd).st_blocks
            if allocated * 512 < staging.size:  # sparse: holes take no space
                blocks = allocated
        if sync:
            fsync_dir(path.parent)
        size = staging.size
        staging.close()
        return Blob(size, etag, checksums, blocks), opened

    @staticmethod
    def _write_blob(path: Path, content: bytearray, sync: bool, keep_open: bool) -> int | None:
        fd = new_file(path, content, 0o400)
        if keep_open:  # commit_open's, which never syncs
            return fd
        try:
            if sync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        return None

    def _seal_blob(self, path: Path, staging: Staging, seal: Seal, sync: bool) -> None:
        """Write the staged content to its blob sealed (datastore/sealing.py)."""
        sealer = Sealer(seal, self.keys)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
        try:
            pieces = [sealer.header]
            chunks = -(-staging.size // CHUNK)
            for index in range(chunks):
                content = staging.read(index * CHUNK, CHUNK)
                pieces.append(sealer.chunk(index, content, index == chunks - 1))
                if len(pieces) >= 8 or index == chunks - 1:
                    data = b"".join(pieces)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    pieces = []
            if pieces:
                os.write(fd, pieces[0])  # an empty blob: its header alone
            if sync:
                os.fdatasync(fd)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)

    async def sync_blob(self, object_id: str) -> None:
        """Make a blob committed without a sync durable, under its name."""
        await self.sync_blobs([object_id])

    async def sync_blobs(self, object_ids: list[str]) -> None:
        """Make blobs committed without a sync durable under their names, each on its
        own: a few files cost less than `sync_all`, which also waits for everything else
        written to the filesystem. A blob removed meanwhile needs nothing."""
        await trio.to_thread.run_sync(self.sync_blobs_now, object_ids)

    def sync_blobs_now(self, object_ids: list[str]) -> None:
        """`sync_blobs`, blocking."""
        directories = set()
        for object_id in object_ids:
            path = self.blob_path(object_id)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
            directories.add(path.parent)
        for directory in directories:
            fsync_dir(directory)

    def blob_problem(self, object_id: str, size: int, checksums: bytes | None, verify: bool) -> str:
        """What is wrong with a blob ("" if nothing): missing, of another size, or (with
        `verify`) not matching its checksums. Blocking: for a thread."""
        try:
            return blob_file_problem(self.blob_path(object_id), size, checksums if verify else None)
        except FileNotFoundError:
            return "is missing"

    async def remove_blobs(self, object_ids: list[str]) -> None:
        """Remove blobs no metadata points at; open descriptors keep reading them."""

        def remove() -> None:
            for object_id in object_ids:
                self.blob_path(object_id).unlink(missing_ok=True)

        await trio.to_thread.run_sync(remove)

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

    def blob_batches(self) -> Iterator[list[str]]:
        """The ids of all blobs on disk, one shard directory at a time (a directory scan,
        for the collector and fsck: memory holds one shard's names)."""
        for shard in sorted(os.scandir(self.blobs), key=lambda shard: shard.name):
            with os.scandir(shard.path) as entries:
                yield [entry.name for entry in entries if entry.is_file()]

    def capacity(self) -> os.statvfs_result:
        return os.statvfs(self.root)


def check_object_size(size: int) -> None:
    if size > MAX_OBJECT_SIZE:
        raise Refused(Reason.TOO_LARGE, None, "objects are at most 5 TiB")
