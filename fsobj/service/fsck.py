"""fsck: check an unmounted store, and optionally repair it.

Checks: the SQLite database's integrity and the namespace's invariants (usage among
them: what each bucket holds, as recorded, against what its rows hold); every object's
blob exists with the recorded size (and, with `verify`, matches its checksums); staging
leftovers of a crash; blobs that no object names. Repair counts usage anew where it was
wrong, removes leftovers, unreferenced blobs and never-committed objects, and moves
damaged objects into the `lost-and-found` bucket, keeping their blob, so that nothing is
deleted that may be the last copy of data.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import trio

from fsobj.metadata import transactions
from fsobj.metadata.schema import ROOT_INODE
from fsobj.metadata.store import Entry
from fsobj.service import gc
from fsobj.service.gc import progress_bar
from fsobj.service.store import Store, run_offline

log = logging.getLogger(__name__)

LOST_AND_FOUND = "lost-and-found"
PAGE = 10_000  # objects checked per query: memory holds a page, never the store


@dataclasses.dataclass
class Report:
    problems: list[str] = dataclasses.field(default_factory=list)
    repairs: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


async def check(store: Store, repair: bool = False, verify: bool = False) -> Report:
    report = Report()
    meta, data = store.meta, store.data

    # On a shared store that other hosts serve now, an object not committed yet may be
    # one they are writing: not a problem, and not for removal.
    others = await meta.other_sessions() if meta.shared else 0
    for problem in await meta.check():
        if others and problem.startswith(transactions.NEVER_COMMITTED):
            report.notes.append(f"{problem}, or one that {others} other host(s) write now")
        else:
            report.problems.append(problem)
    miscounted = (transactions.MISPLACED, transactions.MISCOUNTED)
    if repair and any(problem.startswith(miscounted) for problem in report.problems):
        await meta.recount_usage()
        report.repairs.append("placed every entry in its bucket and counted usage anew")
    if repair and not others and (removed := await meta.remove_pending_objects()):
        report.repairs.append(f"removed {len(removed)} never-committed objects: {removed}")
    if repair:
        for name, problem in await store.settle_new_objects():
            report.problems.append(f"new object {name}: {problem}")
            report.repairs.append(f"removed new object {name}, which had no earlier version")

    if repair:
        for name in await store.recover_journals():
            report.repairs.append(f"{name}: committed what its last fsync made durable")
    leftovers = sorted(p.name for p in data.staging.iterdir())
    if leftovers:
        report.problems.append(f"{len(leftovers)} uncommitted writes left in staging/")
        if repair:
            data.clear_staging()
            report.repairs.append(f"removed {len(leftovers)} staging leftovers")

    for problem in await _damaged_past_versions(store, verify):
        report.problems.append(problem)
    damaged = await _damaged_objects(store, verify)
    for entry, why in damaged:
        report.problems.append(f"object {await store.service.path_of(entry)}: {why}")
    if repair and damaged:
        moved = await _move_to_lost_and_found(store, [entry for entry, _ in damaged])
        report.repairs.append(f"moved {moved} damaged objects to bucket {LOST_AND_FOUND}")

    orphans = await gc.unreferenced_blobs(meta, data)
    if orphans:
        report.problems.append(f"{len(orphans)} blobs that no object names")
        if repair:
            report.repairs.append(str(await gc.collect(meta, data)))
    return report


async def _damaged_objects(store: Store, verify: bool) -> list[tuple[Entry, str]]:
    """Objects whose blob is missing, resized or (with `verify`) corrupt; those already
    moved to lost-and-found were reported when they were moved, and are left alone."""
    lost = await store.meta.lookup(ROOT_INODE, LOST_AND_FOUND)
    skip = lost.inode if lost else None
    progress = progress_bar(
        "verifying blobs" if verify else "checking blobs", await store.meta.count_objects()
    )
    damaged: list[tuple[Entry, str]] = []
    done, after = 0, 0
    while versions := await store.meta.object_versions(after, PAGE, skip):
        for inode, object_id, size, checksums in versions:
            if object_id is not None:
                why = await trio.to_thread.run_sync(
                    store.data.blob_problem, object_id, size, checksums, verify
                )
                if why:
                    entry = await store.meta.get(inode)
                    assert entry is not None
                    damaged.append((entry, f"blob {object_id} {why}"))
        done, after = done + len(versions), versions[-1][0]
        progress.update(len(versions))
    progress.close()
    return damaged


async def _damaged_past_versions(store: Store, verify: bool) -> list[str]:
    """Past versions (of versioned buckets) whose blob is missing, resized or corrupt:
    reported, never removed (their blob may be the last copy of that version)."""
    problems: list[str] = []
    after: tuple[int, str, str] = (0, "", "")
    progress = progress_bar("checking past versions", None)
    while page := await store.meta.every_past_version(after, PAGE):
        progress.update(len(page))
        for bucket, past in page:
            if past.object_id is not None:
                why = await trio.to_thread.run_sync(
                    store.data.blob_problem, past.object_id, past.size, past.checksums, verify
                )
                if why:
                    problems.append(
                        f"past version {past.version_id} of key {past.key!r} (bucket inode"
                        f" {bucket}): blob {past.object_id} {why}"
                    )
        last_bucket, last = page[-1]
        after = (last_bucket, last.key, last.version_id)
    progress.close()
    return problems


async def _move_to_lost_and_found(store: Store, entries: list[Entry]) -> int:
    meta = store.meta
    bucket = await meta.lookup(ROOT_INODE, LOST_AND_FOUND)
    if bucket is None:
        now = time.time_ns()
        bucket = Entry(
            0, ROOT_INODE, LOST_AND_FOUND, "bucket", 0o700, os.getuid(), os.getgid(), now, now, now
        )
        await meta.insert(bucket, bucket_owner=os.getuid())
    for entry in entries:
        origin = await store.service.path_of(entry)
        name = f"{entry.inode}-{entry.name}".encode()[:255].decode("utf-8", "ignore")
        await meta.move(entry, bucket.inode, name, time.time_ns(), None)
        await meta.set_user_metadata(entry.inode, "lost-from", origin.encode())
    return len(entries)


def run(store_root: Path, repair: bool, verify: bool, say: Callable[[str], None]) -> int:
    """fsck as a command: report, and exit status 0 (clean) or 1 (problems found)."""
    report = run_offline(store_root, lambda store: check(store, repair, verify))
    for problem in report.problems:
        say(f"problem: {problem}")
    for repair_done in report.repairs:
        say(f"repaired: {repair_done}")
    for note in report.notes:
        say(f"note: {note}")
    if not report.problems:
        say("store is clean")
        return 0
    if not repair:
        say("run with --repair to fix what can be fixed")
    return 1
