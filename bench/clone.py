"""An instant clone at scale: bench/run --clone [--objects N].

Makes a store of N objects (100,000 by default) in one directory of a bucket through the
metadata store, as bench/memory.py does, mounts it, and times `fsobj clone` of that
directory, then of the whole bucket; each copy is listed to check that it holds every
object. A copy shares its blobs, so its time depends on the number of entries alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from subprocess import DEVNULL

from memory import make_store

from bench import FSOBJ, ROOT, progress


def listed(directory: Path) -> int:
    out = subprocess.run(
        f"ls -f {directory} | wc -l", shell=True, check=True, capture_output=True, text=True
    ).stdout
    return int(out) - 2  # . and ..


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--json", default=str(ROOT / "bench/results/clone.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fsobj-clone-"))
    store, mountpoint = work / "store", work / "mnt"
    mountpoint.mkdir()
    times: dict[str, float] = {}
    try:
        started = time.perf_counter()
        make_store(store, args.objects, "bkt", "big")
        times["make the store"] = time.perf_counter() - started
        subprocess.run(
            [*FSOBJ, "--log-level", "WARNING", "mount", "--store", str(store), str(mountpoint)],
            check=True,
            stdout=DEVNULL,
        )
        try:
            for what, source, copy, listing in (
                ("clone the directory", "bkt/big", "bkt/big-copy", "bkt/big-copy"),
                ("clone the bucket", "bkt", "bkt-copy", "bkt-copy/big"),
            ):
                progress(f"{what}: {args.objects} objects")
                started = time.perf_counter()
                subprocess.run(
                    [*FSOBJ, "clone", str(mountpoint / source), str(mountpoint / copy)],
                    check=True,
                    stdout=DEVNULL,
                )
                times[what] = time.perf_counter() - started
                found = listed(mountpoint / listing)
                assert found == args.objects, (what, found)
        finally:
            subprocess.run([*FSOBJ, "umount", str(mountpoint)], check=True)
    finally:
        if not os.path.ismount(mountpoint):  # never remove through a mount still there
            shutil.rmtree(work, ignore_errors=True)
    progress("")
    print(f"{args.objects} objects in one directory")
    for what, seconds in times.items():
        print(f"{what:24} {seconds:8.2f} s")
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    report = {"objects": args.objects, "seconds": times, "when": when}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
