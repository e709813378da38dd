"""fsobj against a native directory on the same disk, workload by workload, in one run.

Run through bench/run (which sets up what is missing). Prints one table and writes JSON.
Ratios are fsobj/native for rates and native/fsobj for durations: higher is better, 1.0
means as fast as the native directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FSOBJ = [str(ROOT / ".venv/bin/python"), "-m", "fsobj"]

# (workload, unit, higher is better, target ratio or None)
TARGETS = {
    "sequential write incl. fsync": 0.70,
    "sequential read, cold": 0.70,
    "sequential read, warm": 0.40,
    "create 4 KiB files, one process": 0.20,
    "ls -l": 0.25,
    "stat each": 0.80,
    "read back 4 KiB files": 0.20,
    "unlink": 0.25,
    "list a large bucket": 0.10,
}

SMALL_FILES = """
import os, sys, time
root, count, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
prefix = sys.argv[4] if len(sys.argv) > 4 else "f"
names = [os.path.join(root, f"{prefix}{i:06d}") for i in range(count)]
data = b"x" * 4096
start = time.perf_counter()
if mode == "create":
    for name in names:
        with open(name, "wb") as f:
            f.write(data)
elif mode == "stat":
    for name in names:
        os.stat(name)
elif mode == "read":
    for name in names:
        with open(name, "rb") as f:
            f.read()
elif mode == "unlink":
    for name in names:
        os.unlink(name)
elif mode == "touch":
    for name in names:
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644))
print(time.perf_counter() - start)
"""


def progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)


def timed(cmd: list[str] | str, **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, shell=isinstance(cmd, str), **kwargs)
    return time.perf_counter() - start


def small_files(root: Path, count: int, mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", SMALL_FILES, str(root), str(count), mode],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out)


def drop_caches() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        print("warning: cannot drop caches (needs root): cold reads are warm", file=sys.stderr)


def workloads(root: Path, work: Path, sizes: dict) -> dict[str, tuple[float, str]]:
    """Run every workload under `root`; returns {name: (figure, unit)}."""
    results: dict[str, tuple[float, str]] = {}
    mib = sizes["big_mib"]

    progress(f"{root}: sequential write")
    seconds = timed(
        ["dd", "if=/dev/zero", f"of={root / 'big'}", "bs=1M", f"count={mib}", "conv=fsync"],
        stderr=subprocess.DEVNULL,
    )
    results["sequential write incl. fsync"] = (mib / seconds, "MiB/s")
    drop_caches()
    progress(f"{root}: sequential read")
    read = ["dd", f"if={root / 'big'}", "of=/dev/null", "bs=1M"]
    results["sequential read, cold"] = (mib / timed(read, stderr=subprocess.DEVNULL), "MiB/s")
    results["sequential read, warm"] = (mib / timed(read, stderr=subprocess.DEVNULL), "MiB/s")
    os.unlink(root / "big")

    progress(f"{root}: cp")
    results["cp in"] = (timed(["cp", str(work / "cp-source"), str(root / "cp-file")]), "s")
    results["cp out"] = (timed(["cp", str(root / "cp-file"), str(work / "cp-out")]), "s")
    os.unlink(work / "cp-out")
    os.unlink(root / "cp-file")

    count = sizes["small_files"]
    progress(f"{root}: small files")
    (root / "small").mkdir()
    results["create 4 KiB files, one process"] = (
        count / small_files(root / "small", count, "create"),
        "files/s",
    )
    results["ls -l"] = (timed(f"ls -l {root / 'small'}"), "s")
    results["stat each"] = (count / small_files(root / "small", count, "stat"), "stats/s")
    drop_caches()
    results["read back 4 KiB files"] = (
        count / small_files(root / "small", count, "read"),
        "files/s",
    )
    results["unlink"] = (count / small_files(root / "small", count, "unlink"), "files/s")

    progress(f"{root}: 4 processes creating")
    parts = [root / f"par{i}" for i in range(4)]
    for part in parts:
        part.mkdir()
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SMALL_FILES, str(p), str(count // 4), "create"],
            stdout=subprocess.DEVNULL,
        )
        for p in parts
    ]
    assert all(p.wait() == 0 for p in procs)
    results["create 4 KiB files, 4 processes"] = (count / (time.perf_counter() - start), "files/s")

    progress(f"{root}: source tree and git clone")
    (root / "tree").mkdir()
    results["extract a source tree (tar x)"] = (
        timed(["tar", "xf", str(work / "tree.tar"), "-C", str(root / "tree")]),
        "s",
    )
    results["git clone"] = (
        timed(
            ["git", "clone", "-q", f"file://{ROOT}", str(root / "clone")], stderr=subprocess.DEVNULL
        ),
        "s",
    )

    progress(f"{root}: large bucket")
    listing = root / "large"
    listing.mkdir()
    many = sizes["listing"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SMALL_FILES, str(listing), str(many // 4), "touch", f"p{i}-"],
            stdout=subprocess.DEVNULL,
        )
        for i in range(4)
    ]
    assert all(p.wait() == 0 for p in procs)
    results["list a large bucket"] = (timed(f"ls -f {listing} | wc -l"), "s")
    progress("")
    return results


def daemon_rss(store: Path) -> int:
    pid = int((store / "lock").read_text().split()[0])
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def machine() -> dict:
    disk = (
        subprocess.run(
            ["df", "-h", "--output=source,fstype,size", tempfile.gettempdir()],
            capture_output=True,
            text=True,
        )
        .stdout.splitlines()[-1]
        .split()
    )
    return {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "disk": " ".join(disk),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    parser.add_argument("--json", default=str(ROOT / "bench/results/latest.json"))
    parser.add_argument(
        "--private",
        action="store_true",
        help="measure a private mount (one user; the kernel caches entries)",
    )
    args = parser.parse_args()
    sizes = (
        {"big_mib": 256, "cp_mib": 64, "small_files": 2000, "listing": 10_000}
        if args.quick
        else {"big_mib": 1024, "cp_mib": 256, "small_files": 10_000, "listing": 100_000}
    )

    work = Path(tempfile.mkdtemp(prefix="fsobj-bench-"))
    mountpoint = work / "mnt"
    native = work / "native"
    store = work / "store"
    for path in (mountpoint, native):
        path.mkdir()
    try:
        with open(work / "cp-source", "wb") as f:
            for _ in range(sizes["cp_mib"]):
                f.write(os.urandom(1 << 20))
        subprocess.run(
            ["tar", "cf", str(work / "tree.tar"), "-C", "/usr/lib", "python3.11"],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        native_results = workloads(native, work, sizes)
        shutil.rmtree(native)
        subprocess.run(
            [
                *FSOBJ,
                "--log-level",
                "WARNING",
                "mount",
                *(["--private"] if args.private else []),
                "--store",
                str(store),
                str(mountpoint),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            bucket = mountpoint / "bench"
            bucket.mkdir()
            fsobj_results = workloads(bucket, work, sizes)
            rss = daemon_rss(store)
        finally:
            subprocess.run([*FSOBJ, "umount", str(mountpoint)], check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for name, (ours, unit) in fsobj_results.items():
        theirs = native_results[name][0]
        ratio = ours / theirs if unit != "s" else theirs / ours
        rows.append(
            {
                "workload": name,
                "unit": unit,
                "native": theirs,
                "fsobj": ours,
                "ratio": ratio,
                "target": TARGETS.get(name),
            }
        )
    report = {
        "private": args.private,
        "machine": machine(),
        "quick": args.quick,
        "sizes": sizes,
        "daemon_rss_mib": rss,
        "results": rows,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")

    m = report["machine"]
    print(f"mount: {'private' if args.private else 'shared (every request checked by IAM)'}")
    print(
        f"machine: {m['cores']} cores, kernel {m['kernel']}, disk {m['disk']}, "
        f"Python {m['python']}; figures on a shared machine are noisy: the ratio of one "
        "run is what counts"
    )
    print(f"{'workload':34} {'unit':8} {'native':>10} {'fsobj':>10} {'ratio':>7} {'target':>7}")
    for row in rows:
        target = f"{row['target']:.2f}" if row["target"] else ""
        mark = "" if row["target"] is None or row["ratio"] >= row["target"] else "  (below)"
        print(
            f"{row['workload']:34} {row['unit']:8} {row['native']:10.2f} "
            f"{row['fsobj']:10.2f} {row['ratio']:7.2f} {target:>7}{mark}"
        )
    print(
        f"daemon resident memory after listing {sizes['listing']} objects: {rss} MiB"
        f" (target: at most 200 MiB)"
    )
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
