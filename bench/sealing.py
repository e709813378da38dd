"""What encryption at rest costs: bench/run --sealing [--mib N].

One mount, two buckets, one plain and one sealing every object with the store's keys
(its default encryption), beside a native directory, in the same run: a sequential
write of N MiB with fsync, its read with cold caches and again warm, and 2,000 files of
4 KiB written and read. Each figure is a ratio to the native directory (higher is
better), and the sealed bucket's to the plain one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from subprocess import DEVNULL

from bench import FSOBJ, ROOT, drop_caches, progress

SMALL = 2000


def _write(path: Path, mib: int) -> float:
    block = os.urandom(1 << 20)
    started = time.perf_counter()
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return mib / (time.perf_counter() - started)


def _read(path: Path, mib: int) -> float:
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as source:
        while source.read(1 << 20):
            pass
    return mib / (time.perf_counter() - started)


def _small(directory: Path, write: bool) -> float:
    started = time.perf_counter()
    for index in range(SMALL):
        path = directory / f"f{index}"
        if write:
            path.write_bytes(os.urandom(4096))
        else:
            path.read_bytes()
    return SMALL / (time.perf_counter() - started)


def measure(side: Path, mib: int) -> dict[str, float]:
    figures = {}
    progress(f"{side}: write")
    figures["sequential write + fsync, MiB/s"] = _write(side / "big", mib)
    drop_caches()
    figures["sequential read cold, MiB/s"] = _read(side / "big", mib)
    figures["sequential read warm, MiB/s"] = _read(side / "big", mib)
    (side / "small").mkdir()
    figures["create 4 KiB files, files/s"] = _small(side / "small", True)
    drop_caches()
    figures["read 4 KiB files cold, files/s"] = _small(side / "small", False)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--json", default=str(ROOT / "bench/results/sealing.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fsobj-sealing-"))
    mountpoint, native = work / "mnt", work / "native"
    for path in (mountpoint, native):
        path.mkdir()
    mount = [*FSOBJ, "--log-level", "WARNING", "mount", "--store", str(work / "store")]
    subprocess.run([*mount, str(mountpoint)], check=True, stdout=DEVNULL)
    try:
        (mountpoint / "plain").mkdir()
        (mountpoint / "sealed").mkdir()
        os.setxattr(mountpoint / "sealed", "user.fsobj.encryption", b"AES256")
        sides = {"native": native, "plain": mountpoint / "plain", "sealed": mountpoint / "sealed"}
        measured = {name: measure(path, args.mib) for name, path in sides.items()}
    finally:
        subprocess.run([*FSOBJ, "umount", str(mountpoint)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for workload, native_figure in measured["native"].items():
        plain, sealed = measured["plain"][workload], measured["sealed"][workload]
        rows.append(
            {
                "workload": workload,
                "native": native_figure,
                "plain": plain / native_figure,
                "sealed": sealed / native_figure,
                "sealed / plain": sealed / plain,
            }
        )
    print(f"\n{'workload':34} {'native':>9} {'plain':>7} {'sealed':>7} {'sealed/plain':>13}")
    for row in rows:
        print(
            f"{row['workload']:34} {row['native']:9.0f} {row['plain']:7.2f}"
            f" {row['sealed']:7.2f} {row['sealed / plain']:13.2f}"
        )
    report = {"mib": args.mib, "results": rows, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
