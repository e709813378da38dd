"""The daemon's memory at scale: bench/run --memory [--objects N].

Makes a store of N objects (1,000,000 by default) in one directory through the metadata
store (not through FUSE: minutes, not hours), mounts it shared, stats objects spread
evenly over the directory (every one, up to `--stat`: a million uncached stats take five
minutes, ten million an hour), lists the directory, and reports the daemon's resident
memory after each step and at its peak. The objects' blobs are not written: stat and
listing never read them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import DEVNULL

from bench import FSOBJ, ROOT, progress
from fsobj.metadata.schema import ROOT_INODE
from fsobj.metadata.store import Entry
from fsobj.service.store import Store, run_offline

BATCH = 100_000
TARGET_MIB = 250

STAT_SPREAD = """
import os, sys
directory, count, stride = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(0, count, stride):
    os.stat(os.path.join(directory, f"object-{i:08d}"))
"""


def make_store(store: Path, count: int, bucket_name: str = "big", directory: str = "") -> None:
    """`count` objects in the bucket `bucket_name`, or in `directory` inside it."""

    async def fill(opened: Store) -> None:
        now = time.time_ns()
        bucket = Entry(0, ROOT_INODE, bucket_name, "bucket", 0o700, 0, 0, now, now, now)
        await opened.meta.insert(bucket, bucket_owner=0)
        if directory:
            bucket = Entry(0, bucket.inode, directory, "dir", 0o755, 0, 0, now, now, now)
            await opened.meta.insert(bucket)
        for start in range(0, count, BATCH):
            progress(f"making the store: {start}/{count} objects")
            await opened.meta.insert_objects(
                [
                    Entry(0, bucket.inode, f"object-{i:08d}", "object", 0o644, 0, 0, now, now,
                          now, str(uuid.uuid4()), 4096, "0" * 32)
                    for i in range(start, min(start + BATCH, count))
                ]
            )  # fmt: skip

    run_offline(store, fill)


@contextlib.contextmanager
def made_and_mounted(
    prefix: str, make: Callable[[Path], None]
) -> Iterator[tuple[Path, Path, float]]:
    """A store that `make` fills, mounted shared in a new temporary directory: the store,
    the mount point and the seconds `make` took. Unmounted and removed after, but never
    removed through a mount that would not unmount."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    store, mountpoint = work / "store", work / "mnt"
    mountpoint.mkdir()
    try:
        started = time.perf_counter()
        make(store)
        made = time.perf_counter() - started
        subprocess.run(
            [*FSOBJ, "--log-level", "WARNING", "mount", "--store", str(store), str(mountpoint)],
            check=True,
            stdout=DEVNULL,
        )
        try:
            yield store, mountpoint, made
        finally:
            subprocess.run([*FSOBJ, "umount", str(mountpoint)], check=True)
    finally:
        if not os.path.ismount(mountpoint):
            shutil.rmtree(work, ignore_errors=True)


def listed(directory: Path) -> int:
    """How many entries `ls -f` lists in `directory`, `.` and `..` aside."""
    out = subprocess.run(
        f"ls -f {directory} | wc -l", shell=True, check=True, capture_output=True, text=True
    ).stdout
    return int(out) - 2


def daemon_memory(store: Path) -> dict[str, int]:
    """Resident memory now and at its peak, in MiB."""
    pid = int((store / "lock").read_text().split()[0])
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) // 1024
    return {"now": fields["VmRSS"], "peak": fields["VmHWM"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--stat", type=int, default=1_000_000, help="objects to stat, at most")
    parser.add_argument("--json", default=str(ROOT / "bench/results/memory.json"))
    args = parser.parse_args()
    steps = []
    making = made_and_mounted("fsobj-memory-", lambda store: make_store(store, args.objects))
    with making as (store, mountpoint, made):
        steps.append(("make the store", made, None))
        steps.append(("mounted", 0.0, daemon_memory(store)))
        directory = mountpoint / "big"
        stride = max(1, -(-args.objects // args.stat))
        statted = len(range(0, args.objects, stride))
        progress(f"stat of {statted} objects, one in {stride}")
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", STAT_SPREAD, str(directory), str(args.objects), str(stride)],
            check=True,
        )
        seconds = time.perf_counter() - started
        steps.append((f"stat {statted} objects", seconds, daemon_memory(store)))
        progress(f"listing {args.objects} entries")
        started = time.perf_counter()
        found = listed(directory)
        assert found == args.objects, found
        steps.append(("list the directory", time.perf_counter() - started, daemon_memory(store)))
    progress("")
    peak = max(memory["peak"] for _, _, memory in steps if memory)
    print(f"{args.objects} objects in one directory, shared mount")
    stat_rate, listing_rate = statted / steps[2][1], args.objects / steps[3][1]
    print(f"stat: {stat_rate:,.0f} a second; listing: {listing_rate:,.0f} entries a second")
    print(f"{'step':24} {'seconds':>8} {'RSS MiB':>8} {'peak MiB':>9}")
    for name, seconds, memory in steps:
        rss = f"{memory['now']:8d} {memory['peak']:9d}" if memory else ""
        print(f"{name:24} {seconds:8.1f} {rss}")
    print(f"peak resident memory: {peak} MiB (target: at most {TARGET_MIB} MiB)")
    report = {"objects": args.objects, "statted": statted, "peak_mib": peak,
              "target_mib": TARGET_MIB, "steps": steps,
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
