"""`fsobj stats MOUNT` as a live view: a line each interval with the rates and average
latencies of what the daemon served since the line before, and what it holds, from its
counters (`user.fsobj.stats`: fsobj/measures.py)."""

from __future__ import annotations

import os
import time

from fsobj.cli.main import os_call
from fsobj.fuse import xattr_names

MIB = 1 << 20
HEADER_EVERY = 20


def _read(mountpoint: str) -> dict[str, int]:
    text = os_call(os.getxattr, mountpoint, xattr_names.STATS).decode()
    return {name: int(value) for name, value in (line.split() for line in text.splitlines())}


def _rate(now: dict, before: dict, name: str, seconds: float) -> float:
    return (now.get(name, 0) - before.get(name, 0)) / seconds


def _average_ms(now: dict, before: dict, micros: str, count: str) -> float:
    done = now.get(count, 0) - before.get(count, 0)
    return (now.get(micros, 0) - before.get(micros, 0)) / done / 1000 if done else 0.0


# Each column's title and width, in the order `line` gives the values.
COLUMNS = (
    ("fuse/s", 8), ("ms", 7), ("s3/s", 7), ("ms", 7), ("read MiB/s", 11),
    ("write MiB/s", 12), ("commits/s", 10), ("ms", 7), ("syncs/s", 8), ("open", 6),
    ("cached", 9), ("memory MiB", 11),
)  # fmt: skip


def line(now: dict[str, int], before: dict[str, int], seconds: float) -> list[float]:
    """One line's values, in the order of COLUMNS."""
    return [
        _rate(now, before, "fuse_requests", seconds),
        _average_ms(now, before, "fuse_request_us", "fuse_requests"),
        _rate(now, before, "s3_requests", seconds),
        _average_ms(now, before, "s3_request_us", "s3_requests"),
        _rate(now, before, "read_bytes", seconds) / MIB,
        _rate(now, before, "written_bytes", seconds) / MIB,
        _rate(now, before, "commits", seconds),
        _average_ms(now, before, "commit_us", "commits"),
        _rate(now, before, "durability_points", seconds),
        now.get("open_handles", 0),
        now.get("cached_entries", 0),
        now.get("resident_bytes", 0) / MIB,
    ]


def watch(mountpoint: str, every: float, count: int | None) -> None:
    before, then = _read(mountpoint), time.monotonic()
    shown = 0
    while count is None or shown < count:
        time.sleep(every)
        now, when = _read(mountpoint), time.monotonic()
        if shown % HEADER_EVERY == 0:
            print(" ".join(f"{title:>{width}}" for title, width in COLUMNS), flush=True)
        values = line(now, before, when - then)
        print(
            " ".join(
                f"{value:>{width}.1f}" for value, (_, width) in zip(values, COLUMNS, strict=True)
            ),
            flush=True,
        )
        before, then, shown = now, when, shown + 1
