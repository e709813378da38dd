"""Journals of synced writes: how a working copy's `fsync` is made durable without a new
blob.

A file written in place and fsynced at every transaction (a database's file or its log)
would otherwise be committed as a new blob at each `fsync`: its whole content copied,
synced and renamed, and its metadata synced. Instead, once such a file has been committed
by an `fsync`, its next working copy keeps a journal in the staging area: every write
and truncation made to the copy is appended to it, and an `fsync` appends a mark and syncs
the journal alone (the few bytes written since the last one). The copy is committed as a
blob later (service/handles.py says when), and the journal then removed.

After a crash, the object's blob that the journal names as its base, with the journal's
changes replayed up to its last mark, is exactly what the last `fsync` made durable;
changes after the mark, or torn by the crash, are not replayed (each record carries a
CRC-32).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

from fsobj.datastore.crc import crc32
from fsobj.datastore.files import fsync_dir

PREFIX = "journal-"  # how the staging area names journals (the rest of it is leftovers)
_HEAD = struct.Struct("<4sQ36sQ")  # magic, inode, base blob id, started (ns)
_MAGIC = b"FSJ1"
_RECORD = struct.Struct("<cQQI")  # kind, offset or size, payload length, CRC-32
_WRITE, _TRUNCATE, _MARK = b"W", b"T", b"S"
# Past this many bytes of changes a journal takes no more: the next `fsync` commits the
# copy instead (and recovery reads no more than this).
LIMIT = 64 << 20


def _checksum(kind: bytes, offset: int, payload: bytes | memoryview) -> int:
    """A record's CRC-32: of its kind, its offset and its payload."""
    return crc32(payload, crc32(kind + offset.to_bytes(8, "little")))


class Journal:
    """A working copy's journal, open for appending. Appends are buffered writes made
    in the order of the changes, on the caller's thread; `sync` makes all of them
    durable up to a mark."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd
        self.named = False  # whether its directory entry is synced yet
        self.size = _HEAD.size
        self.full = False  # it took no more changes: only a commit makes them durable

    @classmethod
    def create(cls, directory: Path, name: str, inode: int, base: str) -> Journal:
        path = directory / f"{PREFIX}{name}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, _HEAD.pack(_MAGIC, inode, base.encode(), time.time_ns()))
        except BaseException:
            os.close(fd)
            path.unlink()
            raise
        return cls(path, fd)

    def _append(self, kind: bytes, offset: int, payload: bytes | memoryview = b"") -> None:
        if kind != _MARK and (self.full or self.size + len(payload) > LIMIT):
            self.full = True
            return
        record = _RECORD.pack(kind, offset, len(payload), _checksum(kind, offset, payload))
        written = os.writev(self.fd, [record, payload])
        if written != len(record) + len(payload):  # what follows would not parse
            raise OSError(errno.ENOSPC, "the journal of synced writes is full")
        self.size += written

    def wrote(self, offset: int, data: bytes | memoryview) -> None:
        self._append(_WRITE, offset, data)

    def truncated(self, size: int) -> None:
        self._append(_TRUNCATE, size)

    def sync(self) -> bool:
        """Make every change appended so far durable; False, doing nothing, once the
        journal is full (changes past that are not in it). Blocking."""
        if self.full:
            return False
        self._append(_MARK, 0)
        os.fdatasync(self.fd)
        if not self.named:
            fsync_dir(self.path.parent)
            self.named = True
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True)
class Found:
    """A journal left in the staging area: of the object `inode`, on the blob `base`."""

    path: Path
    inode: int
    base: str
    started: int


def found(directory: Path) -> list[Found]:
    """The journals in the staging area, oldest first. Blocking."""
    journals = []
    for path in directory.glob(f"{PREFIX}*"):
        with open(path, "rb") as file:
            head = file.read(_HEAD.size)
        if len(head) < _HEAD.size:
            continue  # a crash while it was being made: it holds nothing yet
        magic, inode, base, started = _HEAD.unpack(head)
        if magic == _MAGIC:
            journals.append(Found(path, inode, base.rstrip(b"\0").decode(), started))
    return sorted(journals, key=lambda journal: journal.started)


def replay(
    path: Path, write: Callable[[int, bytes], object], truncate: Callable[[int], object]
) -> int:
    """Apply the journal's changes up to its last intact mark, in order; returns how many
    marks (synced `fsync`s) that covered. Blocking."""
    content = memoryview(path.read_bytes())
    position, marks = _HEAD.size, 0
    pending: list[tuple[bytes, int, memoryview]] = []
    while position + _RECORD.size <= len(content):
        kind, offset, length, crc = _RECORD.unpack_from(content, position)
        start = position + _RECORD.size
        payload = content[start : start + length]
        if len(payload) < length or crc != _checksum(kind, offset, payload):
            break  # torn by the crash: nothing past it was synced
        position = start + length
        if kind == _MARK:
            for change, where, data in pending:
                if change == _WRITE:
                    write(where, bytes(data))
                else:
                    truncate(where)
            pending.clear()
            marks += 1
        elif kind in (_WRITE, _TRUNCATE):
            pending.append((kind, offset, payload))
        else:
            break
    return marks
