"""The local cache of a store whose blobs live at an S3 service: whole blobs on disk,
bounded in size, least recently opened out first.

The cached files are the data store's usual blob files (`blobs/ab/UUID`), so reading a
cached blob is reading a local one. A blob is filled whole, in a worker thread, into a
staging file; it is checked against its size and chunk checksums before it takes its name,
so the cache never holds a damaged copy under a blob's name. The bookkeeping runs on the
trio loop only: a blob that a request has just filled, or just committed, is opened before
the loop can run an eviction, and a descriptor stays valid after its file goes.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from fsobj import measures

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 10 << 30


class BlobCache:
    """Which blobs are on disk and how large, in order of last use."""

    def __init__(self, path_of: Callable[[str], Path], limit: int = DEFAULT_CACHE_BYTES):
        self.path_of = path_of
        self.limit = limit
        self.used = 0
        self._sizes: collections.OrderedDict[str, int] = collections.OrderedDict()

    def scan(self, blobs: Path) -> None:
        """Learn what an earlier run left in the cache, oldest use first (by atime)."""
        found = []
        for shard in blobs.iterdir():
            if shard.is_dir():
                for blob in os.scandir(shard):
                    info = blob.stat()
                    found.append((info.st_atime_ns, blob.name, info.st_size))
        for _, name, size in sorted(found):
            self._sizes[name] = size
            self.used += size
        self._evict()

    def __contains__(self, object_id: str) -> bool:
        return object_id in self._sizes

    def used_now(self, object_id: str) -> None:
        if object_id in self._sizes:
            self._sizes.move_to_end(object_id)

    def added(self, object_id: str, size: int) -> None:
        """A blob now on disk (filled or committed); older ones go while over the limit.
        The one just added stays, even when it alone is larger than the limit."""
        self.used += size - self._sizes.pop(object_id, 0)
        self._sizes[object_id] = size
        self._evict()

    def removed(self, object_id: str) -> None:
        self.used -= self._sizes.pop(object_id, 0)

    def _evict(self) -> None:
        while self.used > self.limit and len(self._sizes) > 1:
            object_id, size = self._sizes.popitem(last=False)
            self.used -= size
            measures.BLOB_CACHE_EVICTIONS.inc()
            with contextlib.suppress(FileNotFoundError):
                self.path_of(object_id).unlink()
            log.debug("cache: evicted blob %s (%d bytes)", object_id, size)
