"""Garbage collection: remove blobs that no object names.

In normal operation a blob is removed once the commit or unlink that left it unreferenced
is durable (open descriptors keep its data readable until they close). What remains for
the collector is what a crash leaves: a blob written whose metadata update never happened,
or an old blob whose removal did not. The collector never removes a blob that the metadata
names, nor one the daemon is busy with (`busy`: being committed, or waiting for the change
that stopped naming it to be durable), nor one an open file reads (those are named by the
metadata, or are already unlinked).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from fsobj.datastore.store import DataStore
from fsobj.metadata.store import MetadataStore

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Collection:
    blobs: int = 0
    bytes: int = 0

    def __str__(self) -> str:
        return f"removed {self.blobs} unreferenced blobs ({self.bytes} bytes)"


async def unreferenced_blobs(
    meta: MetadataStore, data: DataStore, busy: Callable[[], set[str]] | None = None
) -> list[str]:
    """Blob ids on disk that no object names and the daemon is not busy with. The ids on
    disk go to the database a shard at a time, and the comparison runs there."""
    batches = iter(await trio.to_thread.run_sync(data.blob_batches))
    found: list[str] = []
    progress = progress_bar("looking for unnamed blobs", None, "blobs")
    while (batch := await trio.to_thread.run_sync(next, batches, None)) is not None:
        progress.update(len(batch))
        # Asked before the query (a commit missing then had already recorded its blob)
        # and after it (a blob that lost its name meanwhile waits for that to be durable).
        left_alone = busy() if busy else set()
        unnamed = await meta.unnamed_blobs(batch)
        if busy:
            left_alone |= busy()
        found += [blob for blob in unnamed if blob not in left_alone]
    progress.close()
    return found


async def collect(
    meta: MetadataStore, data: DataStore, busy: Callable[[], set[str]] | None = None
) -> Collection:
    found = Collection()
    await meta.fold_usage()
    for blob in await unreferenced_blobs(meta, data, busy):
        size = await trio.to_thread.run_sync(data.blob_size, blob)
        if size is None:
            continue
        await data.remove_blobs([blob])
        found.blobs += 1
        found.bytes += size
    if found.blobs:
        log.info("garbage collection: %s", found)
    return found


def progress_bar(what: str, total: int | None, unit: str = "objects") -> tqdm:
    """Progress of long work (fsck, gc) on a terminal, as tqdm shows it; nothing when the
    output is no terminal (a daemon's periodic gc, a pipe)."""
    # Imported here: every daemon and command imports this module, few show progress
    # (tqdm took 28 ms of each one's start).
    from tqdm import tqdm

    # A terminal that says it is 0 by 0 (a new pty) gets the usual 80 by 24: tqdm would
    # show nothing there.
    size = shutil.get_terminal_size()
    return tqdm(
        total=total,
        desc=what,
        unit=f" {unit}",
        ncols=size.columns,
        nrows=size.lines,
        disable=not sys.stderr.isatty(),
    )
