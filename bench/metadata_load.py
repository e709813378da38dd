"""What one PostgreSQL primary sustains of fsobj's metadata work: bench/run --metadata-load.

Starts a private PostgreSQL cluster (tests/services.py: default settings, fsync on),
makes a shared store's schema in a database of its own, and runs 1, 2 and 4 processes at
once, each standing for one host: a metadata store of its own (one connection, a session,
inode ranges, pinned blob ids), doing for SECONDS seconds what a close of a new small
object costs the database (the row written with its first commit: one transaction, with
its pin released) and, separately, what an open's check of its object's row costs
(close-to-open: one SELECT by inode). No FUSE and no blob service: the database's share
alone, measured on this machine, where the database and the clients share two cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import trio
import trio_asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench import progress  # noqa: E402
from fsobj.metadata.entries import Entry  # noqa: E402
from fsobj.metadata.schema import ROOT_INODE  # noqa: E402
from fsobj.metadata.store import Sharing, open_metadata_store  # noqa: E402

SECONDS = 10.0
WRITERS = 8  # concurrent closes per host (a daemon groups those that meet)


def _entry(parent: int, name: str, kind: str = "object") -> Entry:
    now = time.time_ns()
    return Entry(0, parent, name, kind, 0o644, 0, 0, now, now, now)


async def _host(url: str, tag: str, work: str, seconds: float) -> int:
    async with trio_asyncio.open_loop():
        meta = await open_metadata_store(url, sharing=Sharing())
        try:
            directory = await meta.lookup(ROOT_INODE, "load")
            assert directory is not None
            done = 0
            deadline = trio.current_time() + seconds

            async def closes(writer: int) -> None:
                nonlocal done
                count = 0
                while trio.current_time() < deadline:
                    entry = await meta.insert(
                        _entry(directory.inode, f"{tag}-{writer}-{count}"), deferred=True
                    )
                    changes = {
                        "object_id": await meta.new_blob_id(),
                        "size": 4096,
                        "etag": "0" * 32,
                        "checksums": b"\0" * 4,
                        "ctime_ns": time.time_ns(),
                    }
                    (result,) = await meta.update_many([(entry, changes)])
                    assert not isinstance(result, OSError), result
                    count += 1
                    done += 1

            probe = await meta.lookup(directory.inode, "probe")
            assert probe is not None

            async def lookups(writer: int) -> None:
                nonlocal done
                while trio.current_time() < deadline:
                    await meta.get(probe.inode, current=True)  # as an open asks, each time
                    done += 1

            task = closes if work == "closes" else lookups
            async with trio.open_nursery() as nursery:
                for writer in range(WRITERS):
                    nursery.start_soon(task, writer)
            return done
        finally:
            await meta.close()


def _run_host(url: str, tag: str, work: str, seconds: float, out: multiprocessing.Queue) -> None:
    out.put(trio.run(_host, url, tag, work, seconds))


async def _prepare(url: str) -> None:
    async with trio_asyncio.open_loop():
        meta = await open_metadata_store(url, sharing=Sharing())
        try:
            bucket = await meta.insert(_entry(ROOT_INODE, "load", "bucket"), bucket_owner=0)
            await meta.insert(_entry(bucket.inode, "probe"))
        finally:
            await meta.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    args = parser.parse_args()
    from services import PG_PASSWORD, postgresql

    os.environ["PGPASSWORD"] = PG_PASSWORD
    results: dict[str, dict[int, float]] = {"closes": {}, "lookups": {}}
    with postgresql() as cluster:
        for work in results:
            for hosts in (1, 2, 4):
                url = cluster.new_database()
                trio.run(_prepare, url)
                progress(f"{work}: {hosts} host(s), {WRITERS} at once each, {args.seconds:g} s")
                out: multiprocessing.Queue = multiprocessing.Queue()
                processes = [
                    multiprocessing.Process(
                        target=_run_host, args=(url, f"h{h}", work, args.seconds, out)
                    )
                    for h in range(hosts)
                ]
                for process in processes:
                    process.start()
                total = sum(out.get() for _ in processes)
                for process in processes:
                    process.join()
                results[work][hosts] = round(total / args.seconds)
    print(json.dumps(results, indent=2))
    (ROOT / "bench" / "results" / "metadata_load.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
