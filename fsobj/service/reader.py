"""What a GET reads: one version of an object, pinned by an open handle (the same as a
reader on the mount has) until the reader is closed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fsobj import measures
from fsobj.metadata.entries import Entry
from fsobj.service.handles import OpenObjects

EMPTY_ETAG = "d41d8cd98f00b204e9800998ecf8427e"  # the MD5 of no content: a marker's
_READ = measures.READ_BYTES.labels("s3")


class Reader:
    """What a GET reads: one pinned version of an object (or a marker's nothing)."""

    def __init__(self, objects: OpenObjects, entry: Entry, fh: int | None):
        self.objects = objects
        self.entry = entry
        self.fh = fh
        self.size = entry.size if fh is not None else 0
        self.etag = entry.etag or EMPTY_ETAG

    async def chunks(self, start: int, end: int, size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The bytes from `start` up to `end` (exclusive), in pieces."""
        if self.fh is None:
            return
        objects = self.objects
        handle = objects.get(self.fh)
        offset = start
        while offset < end:
            data = await objects.read(handle, offset, min(size, end - offset))
            if not data:
                return
            offset += len(data)
            _READ.inc(len(data))
            yield data

    async def close(self) -> None:
        """Let the version go (at once, if nothing else holds it)."""
        if self.fh is not None:
            objects = self.objects
            await objects.release(objects.get(self.fh))
            self.fh = None
