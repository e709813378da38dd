"""Where the daemon's time goes during one workload: bench/run --profile WORKLOAD.

Mounts a fresh store as bench/run does, prepares what the workload needs, then samples
the daemon with py-spy (every thread, idle ones included) while the workload runs, and
prints how the daemon's main thread divided its time and how busy its other threads were.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from subprocess import DEVNULL

from bench import FSOBJ, ROOT, SMALL_FILES, SQLITE_COMMITS, Shared, daemon_rss

PY_SPY = str(ROOT / ".venv/bin/py-spy")


def small(mode: str, prepare: str | None = "create"):
    def workload(bucket: Path, count: int) -> tuple[str | None, list[str]]:
        return prepare, [sys.executable, "-c", SMALL_FILES, str(bucket / "small"), str(count), mode]

    return workload


def listing(bucket: Path, count: int) -> tuple[str | None, list[str]]:
    return "create", ["sh", "-c", f"for i in 1 2 3; do ls -l {bucket / 'small'}; done"]


def four_creating(bucket: Path, count: int) -> tuple[str | None, list[str]]:
    parts = [bucket / "small" / f"part{i}" for i in range(4)]
    script = " ".join(
        f"mkdir -p {part} && {sys.executable} -c '{SMALL_FILES}' {part} {count // 4} create &"
        for part in parts
    )
    return None, ["sh", "-c", script + " wait"]


def copy_in(bucket: Path, count: int) -> tuple[str | None, list[str]]:
    source = Path(tempfile.gettempdir()) / "fsobj-profile-64m"
    if not source.exists():
        source.write_bytes(os.urandom(64 << 20))
    return None, ["sh", "-c", f"for i in 1 2 3 4; do cp {source} {bucket}/copy-$i; done"]


def write_fsync(bucket: Path, count: int) -> tuple[str | None, list[str]]:
    """256 MiB written in 1 MiB writes, then fsync: bench.py's sequential write."""
    source = Path(tempfile.gettempdir()) / "fsobj-profile-64m"
    if not source.exists():
        source.write_bytes(os.urandom(64 << 20))
    script = (
        "import os, sys; data = open(sys.argv[1], 'rb').read() * 4;"
        " fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n"
        "for i in range(0, len(data), 1 << 20): os.write(fd, data[i:i + (1 << 20)])\n"
        "os.fsync(fd); os.close(fd)"
    )
    return None, [sys.executable, "-c", script, str(source), str(bucket / "written")]


def warm_read(bucket: Path, count: int) -> tuple[str | None, list[str]]:
    read = f"dd if={bucket / 'big'} of=/dev/null bs=1M status=none"
    return "big", ["sh", "-c", f"for i in $(seq 16); do {read}; done"]


def sqlite_rollback(bucket: Path, count: int) -> tuple[str | None, list[str]]:
    """bench.py's SQLite with a rollback journal: 500 transactions, each fsyncs a new
    journal, the directory and the database."""
    database = str(bucket / "rollback.db")
    return None, [sys.executable, "-c", SQLITE_COMMITS, database, "DELETE", "500"]


def git_clone(bucket: Path, count: int) -> tuple[str | None, list[str]]:
    """bench.py's git clone of this repository over file://."""
    return None, ["git", "clone", "-q", f"file://{ROOT}", str(bucket / "clone")]


WORKLOADS = {
    "create": small("create", prepare=None),
    "stat": small("stat"),
    "ls-l": listing,
    "read": small("read"),
    "unlink": small("unlink"),
    "warm-read": warm_read,
    "create-4": four_creating,
    "cp-in": copy_in,
    "write-fsync": write_fsync,
    "sqlite-rollback": sqlite_rollback,
    "git-clone": git_clone,
}


ENTRY = ("fsobj/cli/daemon.py", "fsobj/cli/main.py", "fsobj/__main__.py")
SCHEDULING = ("trio/", "trio_asyncio/", "asyncio/", "outcome/", "contextlib", "abc>", "inspect")


def ours(frame: str) -> bool:
    return "(fsobj/" in frame and not any(entry in frame for entry in ENTRY)


def classify(stack: list[str]) -> tuple[str, str]:
    """(thread, what it was doing) for one sampled stack, innermost frame last."""
    leaf = stack[-1]
    if any("serve (fsobj/cli/daemon.py" in frame for frame in stack):
        if "_epoll_wait" in leaf or "get_events" in leaf:
            return "main", "idle: waiting for the kernel (next request, or a thread's result)"
        if ours(leaf):
            return "main", "fsobj's own code"
        if "_pyfuse3.py" in leaf:
            return "main", "pyfuse3: reading requests from /dev/fuse, answering them"
        if any(module in leaf for module in SCHEDULING):
            return "main", "trio and trio-asyncio: scheduling tasks, bridging to aiosqlite"
        if any(ours(frame) for frame in stack):
            return "main", "fsobj's own code"  # the standard library, called by fsobj
        return "main", "other"
    text = ";".join(stack)
    if "remote_blobs.py" in text and not leaf.startswith("WorkerThread._work"):
        return "trio worker threads", "busy: uploading or fetching blobs (boto3)"
    if "metadata_postgres.py" in text and not leaf.startswith("WorkerThread._work"):
        return "trio worker threads", "busy: metadata transactions (psycopg)"
    if "_connection_worker_thread" in text:
        thread, idle = "metadata store thread (aiosqlite)", "_connection_worker_thread" in leaf
    elif "concurrent/futures" in text:
        thread, idle = "read-ahead threads", leaf.startswith("_worker ")
    else:
        thread, idle = "trio worker threads", leaf.startswith("WorkerThread._work")
    return thread, "idle" if idle else "busy"


def summarize(raw: Path) -> None:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    functions: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack_text, _, n = line.rpartition(" ")
        stack = [f for f in stack_text.split(";") if not f.startswith("thread (")]
        if not stack:  # a thread caught between frames
            continue
        thread, doing = classify(stack)
        counts[thread][doing] += int(n)
        if thread == "main":
            for frame in {f for f in stack if ours(f)}:
                functions[frame.split(" (")[0]] += int(n)
    for thread, doing in counts.items():
        total = sum(doing.values())
        print(f"{thread} ({total} samples):")
        for what, n in doing.most_common():
            print(f"  {100 * n / total:5.1f}%  {what}")
    main = sum(counts["main"].values()) or 1
    print("fsobj functions on the main thread, share of its time (inclusive):")
    for name, n in functions.most_common(12):
        print(f"  {100 * n / main:5.1f}%  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--private", action="store_true", help="profile a private mount")
    parser.add_argument("--count", type=int, default=10_000, help="small files (default 10,000)")
    parser.add_argument("--keep", help="also keep py-spy's raw samples in this file")
    parser.add_argument(
        "--backend", choices=["shared"], help="a store in PostgreSQL and SeaweedFS (as bench/run)"
    )
    args = parser.parse_args()

    with contextlib.ExitStack() as services:
        profile(args, services)


def profile(args: argparse.Namespace, services: contextlib.ExitStack) -> None:
    work = Path(tempfile.mkdtemp(prefix="fsobj-profile-"))
    mountpoint, store, raw = work / "mnt", work / "store", work / "samples.txt"
    mountpoint.mkdir()
    if args.backend == "shared":
        Shared(services, work).format_fsobj(store)
    mount = [*FSOBJ, "--log-level", "WARNING", "mount", "--store", str(store)]
    private = ["--private"] if args.private else []
    subprocess.run([*mount, *private, str(mountpoint)], check=True, stdout=DEVNULL)
    try:
        bucket = mountpoint / "profile"
        (bucket / "small").mkdir(parents=True)
        prepare, command = WORKLOADS[args.workload](bucket, args.count)
        if prepare == "create":
            subprocess.run(small("create", None)(bucket, args.count)[1], check=True, stdout=DEVNULL)
        elif prepare == "big":
            dd = ["dd", "if=/dev/zero", f"of={bucket / 'big'}", "bs=1M", "count=256"]
            subprocess.run(dd, check=True, stderr=DEVNULL)
        pid = int((store / "lock").read_text().split()[0])
        sampling = ["--idle", "--threads", "-r", "500", "-f", "raw", "-o", str(raw)]
        # Sampled only while the workload runs: py-spy starts with it and stops when it
        # ends, so idle time before or after does not count.
        start = time.perf_counter()
        running = subprocess.Popen(command, stdout=DEVNULL)
        spy = subprocess.Popen(
            [PY_SPY, "record", *sampling, "-p", str(pid)], stdout=DEVNULL, stderr=DEVNULL
        )
        if running.wait() != 0:
            raise SystemExit(f"the workload failed: {command}")
        seconds = time.perf_counter() - start
        spy.send_signal(signal.SIGINT)
        spy.wait()
        rss = daemon_rss(store)
    finally:
        subprocess.run([*FSOBJ, "umount", str(mountpoint)], check=True)
    kind = "private" if args.private else "shared"
    where = " (PostgreSQL and SeaweedFS)" if args.backend else ""
    print(f"{args.workload} on a {kind} mount{where}: {seconds:.2f} s; daemon RSS {rss} MiB")
    try:
        summarize(raw)
        if args.keep:
            shutil.copy(raw, args.keep)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
