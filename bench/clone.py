"""An instant clone at scale: bench/run --clone [--objects N].

Makes a store of N objects (100,000 by default) in one directory of a bucket through the
metadata store, as bench/memory.py does, mounts it, and times `fsobj clone` of that
directory, then of the whole bucket; each copy is listed to check that it holds every
object. A copy shares its blobs, so its time depends on the number of entries alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from subprocess import DEVNULL

from memory import listed, made_and_mounted, make_store

from bench import FSOBJ, ROOT, progress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--json", default=str(ROOT / "bench/results/clone.json"))
    args = parser.parse_args()
    times: dict[str, float] = {}
    making = made_and_mounted(
        "fsobj-clone-", lambda store: make_store(store, args.objects, "bkt", "big")
    )
    with making as (_, mountpoint, made):
        times["make the store"] = made
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
