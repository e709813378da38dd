"""Garbage collection: remove blobs that no object names.

In normal operation a blob is removed as soon as a commit or an unlink leaves it
unreferenced (open descriptors keep its data readable until they close). What remains for
the collector is what a crash leaves: a blob renamed into place whose metadata update never
happened, or an old blob whose removal did not. The collector never removes a blob that
the metadata names, nor one being committed right now (`in_flight`), nor one an open file
reads (those are named by the metadata, or are already unlinked).
"""

from __future__ import annotations

import dataclasses
import logging
import os

import trio

from .datastore import DataStore
from .metadata import MetadataStore

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Collection:
    blobs: int = 0
    bytes: int = 0

    def __str__(self) -> str:
        return f"removed {self.blobs} unreferenced blobs ({self.bytes} bytes)"


async def unreferenced_blobs(
    meta: MetadataStore, data: DataStore, in_flight: set[str] | None = None
) -> list[str]:
    """Blob ids on disk that no object names and no commit in progress is about to."""
    on_disk = await trio.to_thread.run_sync(data.blob_ids)
    # Taken before the query: a commit missing from this set had already recorded its blob.
    busy = set(in_flight or ())
    referenced = await meta.object_ids()
    return [blob for blob in on_disk if blob not in referenced and blob not in busy]


async def collect(
    meta: MetadataStore, data: DataStore, in_flight: set[str] | None = None
) -> Collection:
    found = Collection()
    for blob in await unreferenced_blobs(meta, data, in_flight):
        try:
            size = os.stat(data.blob_path(blob)).st_size
        except FileNotFoundError:
            continue
        await data.remove_blob(blob)
        found.blobs += 1
        found.bytes += size
    if found.blobs:
        log.info("garbage collection: %s", found)
    return found
