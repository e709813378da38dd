"""fsobj against a native directory on the same disk, workload by workload, in one run.

Run through bench/run (which sets up what is missing). Prints one table and writes JSON.
Ratios are fsobj/native for rates and native/fsobj for durations: higher is better, 1.0
means as fast as the native directory.

`--backend shared` puts fsobj's store on a private PostgreSQL cluster (metadata) and a
SeaweedFS S3 gateway (blobs), both on loopback, started as the tests start them
(tests/services.py), and measures JuiceFS formatted on the same two services beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from subprocess import DEVNULL

ROOT = Path(__file__).resolve().parent.parent
FSOBJ = [str(ROOT / ".venv/bin/python"), "-m", "fsobj"]
sys.path.insert(0, str(ROOT / "tests"))  # services.py: the services the tests start too

# (workload, unit, higher is better, target ratio or None)
# Issue 22's targets where it names one, else the earlier issues'.
TARGETS = {
    "sequential write incl. fsync": 0.70,
    "sequential read, cold": 0.70,
    "sequential read, warm": 0.80,
    "create 4 KiB files, one process": 0.10,
    "ls -l": 0.25,
    "stat each": 0.80,
    "read back 4 KiB files": 0.20,
    "unlink": 0.25,
    "list a large bucket": 0.10,
    "cp in": 0.30,
    "extract a source tree (tar x)": 0.12,
    "grep -r over it": 0.20,
    "rm -rf of it": 0.20,
}

# SQLite as applications use it: one row per transaction, in a journal mode (argv[2]).
SQLITE_COMMITS = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute(f"PRAGMA journal_mode={sys.argv[2]}")
conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
start = time.perf_counter()
for i in range(int(sys.argv[3])):
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t (v) VALUES (?)", (bytes(100),))
    conn.execute("COMMIT")
print(time.perf_counter() - start)
conn.close()
"""

GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]

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
    subprocess.run(cmd, check=True, stdout=DEVNULL, shell=isinstance(cmd, str), **kwargs)
    return time.perf_counter() - start


def small_files(root: Path, count: int, mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", SMALL_FILES, str(root), str(count), mode],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out)


def at_once(argvs) -> None:
    """Run the small-files script once per argument list, all at the same time."""
    procs = [
        subprocess.Popen([sys.executable, "-c", SMALL_FILES, *argv], stdout=DEVNULL)
        for argv in argvs
    ]
    assert all(p.wait() == 0 for p in procs)


def drop_caches() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        print("warning: cannot drop caches (needs root): cold reads are warm", file=sys.stderr)


def workloads(sides: dict[str, Path], work: Path, sizes: dict) -> dict[str, dict]:
    """Run every workload on each side (native directory, then the bucket) before the
    next workload; returns {side: {workload: (figure, unit)}}.

    One workload at a time on both sides, rather than one side after the other, because
    this disk's ext4 has no journal: the kernel then skips inodes freed in the last 60 s
    (6 minutes while their inode table block is dirty) when it allocates one, scanning
    past each of them on every create. Run side after side, the second side's creates
    paid for the first side's deletions; interleaved, each side's creates follow the
    same deletions as the other's.
    """
    results: dict[str, dict] = {side: {} for side in sides}
    mib = sizes["big_mib"]

    def each(name: str, unit: str, measure) -> None:
        for side, root in sides.items():
            progress(f"{side}: {name}")
            try:
                results[side][name] = (measure(root), unit)
            except (subprocess.CalledProcessError, OSError) as error:
                print(f"\n{side}: {name} failed: {error}", file=sys.stderr)
                results[side][name] = (None, unit)

    def read(root: Path) -> float:
        return mib / timed(["dd", f"if={root / 'big'}", "of=/dev/null", "bs=1M"], stderr=DEVNULL)

    write = ["dd", "if=/dev/zero", "bs=1M", f"count={mib}", "conv=fsync"]
    each(
        "sequential write incl. fsync",
        "MiB/s",
        lambda root: mib / timed([*write, f"of={root / 'big'}"], stderr=DEVNULL),
    )
    for side, root in sides.items():  # warm right after cold: a later drop would undo it
        progress(f"{side}: sequential read")
        drop_caches()
        results[side]["sequential read, cold"] = (read(root), "MiB/s")
        results[side]["sequential read, warm"] = (read(root), "MiB/s")
    for root in sides.values():
        os.unlink(root / "big")

    out = work / "cp-out"
    each("cp in", "s", lambda root: timed(["cp", str(work / "cp-source"), str(root / "cp-file")]))
    each("cp out", "s", lambda root: timed(["cp", str(root / "cp-file"), str(out)]))
    for root in sides.values():
        os.unlink(root / "cp-file")
    out.unlink()

    count = sizes["small_files"]
    for root in sides.values():
        (root / "small").mkdir()

    def small(mode: str, drop: bool = False):
        def measure(root: Path) -> float:
            if drop:
                drop_caches()
            return count / small_files(root / "small", count, mode)

        return measure

    each("create 4 KiB files, one process", "files/s", small("create"))
    each("ls -l", "s", lambda root: timed(f"ls -l {root / 'small'}"))
    each("stat each", "stats/s", small("stat"))
    each("read back 4 KiB files", "files/s", small("read", drop=True))
    each("unlink", "files/s", small("unlink"))

    def parallel_create(root: Path) -> float:
        parts = [root / f"par{i}" for i in range(4)]
        for part in parts:
            part.mkdir()
        start = time.perf_counter()
        at_once([str(part), str(count // 4), "create"] for part in parts)
        return count / (time.perf_counter() - start)

    each("create 4 KiB files, 4 processes", "files/s", parallel_create)

    def extract(root: Path) -> float:
        (root / "tree").mkdir()
        return timed(["tar", "xf", str(work / "tree.tar"), "-C", str(root / "tree")])

    each("extract a source tree (tar x)", "s", extract)
    each("grep -r over it", "s", lambda root: timed(f"grep -r fsobj-absent {root / 'tree'}; true"))
    each("rm -rf of it", "s", lambda root: timed(["rm", "-rf", str(root / "tree")]))
    each(
        "python -m venv",
        "s",
        lambda root: timed([sys.executable, "-m", "venv", str(root / "venv")]),
    )
    each(
        f"git clone, {sizes['git_files']} files",
        "s",
        lambda root: timed(["git", "clone", "-q", f"file://{work / 'repo'}", str(root / "co")]),
    )

    def git_commit(root: Path) -> float:
        """git init, add and commit of 200 new small files (a new project)."""
        project = root / "project"
        project.mkdir()
        for i in range(200):
            (project / f"file{i:03d}.txt").write_bytes(b"line\n" * (i + 1))
        start = time.perf_counter()
        subprocess.run([*GIT, "-C", str(project), "init", "-q"], check=True)
        subprocess.run([*GIT, "-C", str(project), "add", "-A"], check=True)
        subprocess.run([*GIT, "-C", str(project), "commit", "-qm", "first"], check=True)
        return time.perf_counter() - start

    each("git init+add+commit, 200 files", "s", git_commit)

    def sqlite_commits(mode: str):
        def measure(root: Path) -> float:
            database = root / f"bench-{mode}.sqlite3"
            out = subprocess.run(
                [sys.executable, "-c", SQLITE_COMMITS, str(database), mode, "500"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            return float(out)

        return measure

    each("SQLite rollback journal, 500 tx", "s", sqlite_commits("DELETE"))
    each("SQLite WAL, 500 transactions", "s", sqlite_commits("WAL"))

    def git_status(root: Path) -> float:
        subprocess.run(["git", "-C", str(root / "co"), "status"], check=True, stdout=DEVNULL)
        return timed(["git", "-C", str(root / "co"), "status"])

    each("git status", "s", git_status)
    each(
        "git clone",
        "s",
        lambda root: timed(
            ["git", "clone", "-q", f"file://{ROOT}", str(root / "clone")], stderr=DEVNULL
        ),
    )

    many = sizes["listing"]
    for side, root in sides.items():
        progress(f"{side}: making a large bucket")
        (root / "large").mkdir()
        at_once([str(root / "large"), str(many // 4), "touch", f"p{i}-"] for i in range(4))
    each("list a large bucket", "s", lambda root: timed(f"ls -f {root / 'large'} | wc -l"))
    progress("")
    return results


def make_repository(path: Path, files: int) -> None:
    """A git repository of `files` small files in 100 directories, committed."""
    for i in range(files):
        directory = path / f"d{i % 100:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{i:05d}.txt").write_text(f"file {i}\n")
    git = ["git", "-C", str(path), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "files"], check=True)


def mount_peer(name: str, work: Path, shared: Shared | None = None) -> tuple[Path, list[str]]:
    """Mount a peer file system as users run it, shared like fsobj's default mount; returns
    its directory and the command that unmounts it."""
    mountpoint = work / f"{name}-mnt"
    mountpoint.mkdir()
    bin_dir = ROOT / ".venv/bin"
    if name == "juicefs":
        if shared is None:
            # SQLite metadata and blobs in a local directory, as fsobj's embedded store.
            meta = f"sqlite3://{work / 'juicefs.db'}"
            storage = ["--storage", "file", "--bucket", f"{work / 'juicefs-blobs'}/"]
        else:  # the same PostgreSQL and SeaweedFS as fsobj's store
            meta = shared.juicefs_meta
            storage = shared.juicefs_storage
        subprocess.run(
            [bin_dir / "juicefs", "format", *storage, meta, "bench"],
            check=True, stdout=DEVNULL, stderr=DEVNULL,
        )  # fmt: skip
        subprocess.run(
            [bin_dir / "juicefs", "mount", "-d", "--no-usage-report", "-o", "allow_other",
             "--cache-dir", str(work / "juicefs-cache"), meta, str(mountpoint)],
            check=True, stdout=DEVNULL, stderr=DEVNULL,
        )  # fmt: skip
        return mountpoint, [str(bin_dir / "juicefs"), "umount", str(mountpoint)]
    source = work / "rclone-source"
    source.mkdir()
    (work / "rclone.conf").touch()
    subprocess.run(
        [bin_dir / "rclone", "mount", str(source), str(mountpoint), "--daemon",
         "--vfs-cache-mode", "writes", "--links", "--allow-other",
         "--config", str(work / "rclone.conf"), "--cache-dir", str(work / "rclone-cache")],
        check=True, stdout=DEVNULL, stderr=DEVNULL,
    )  # fmt: skip
    return mountpoint, ["fusermount3", "-u", str(mountpoint)]


class Shared:
    """PostgreSQL and SeaweedFS for `--backend shared`: fsobj's store formatted on them
    (a database and a bucket of its own) and JuiceFS's arguments for the same services."""

    def __init__(self, stack: contextlib.ExitStack, work: Path):
        from services import KEY, PG_PASSWORD, PG_USER, postgresql, seaweedfs

        progress("starting PostgreSQL and SeaweedFS")
        self.postgres = stack.enter_context(postgresql())
        self.s3 = stack.enter_context(seaweedfs(work / "seaweedfs"))
        for bucket in ("fsobj", "juicefs"):
            self.s3.client().create_bucket(Bucket=bucket)
        # Secrets travel in the environment, as users would pass them.
        os.environ.update(
            PGPASSWORD=PG_PASSWORD, META_PASSWORD=PG_PASSWORD,
            AWS_ACCESS_KEY_ID=KEY[0], AWS_SECRET_ACCESS_KEY=KEY[1],
        )  # fmt: skip
        self.fsobj_meta = self.postgres.new_database()
        juicefs_db = self.postgres.new_database().rsplit("/", 1)[-1]
        self.juicefs_meta = (
            f"postgres://{PG_USER}@127.0.0.1:{self.postgres.port}/{juicefs_db}?sslmode=disable"
        )
        self.juicefs_storage = [
            "--storage", "s3", "--bucket", f"{self.s3.endpoint}/juicefs",
            "--access-key", KEY[0], "--secret-key", KEY[1],
        ]  # fmt: skip

    def format_fsobj(self, store: Path) -> None:
        subprocess.run(
            [*FSOBJ, "format", "--store", str(store), "--meta", self.fsobj_meta,
             "--data", "s3://fsobj/blobs", "--endpoint", self.s3.endpoint],
            check=True, stdout=DEVNULL,
        )  # fmt: skip


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
    parser.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes")
    parser.add_argument("--json", default=str(ROOT / "bench/results/latest.json"))
    parser.add_argument(
        "--private",
        action="store_true",
        help="measure a private mount (one user; the kernel caches entries)",
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="without JuiceFS and rclone beside fsobj"
    )
    parser.add_argument(
        "--backend",
        choices=["local", "shared"],
        default="local",
        help="shared: fsobj and JuiceFS on PostgreSQL and SeaweedFS (both on loopback)",
    )
    args = parser.parse_args()
    sizes = (
        {"big_mib": 256, "cp_mib": 64, "small_files": 2000, "listing": 10_000, "git_files": 2000}
        if args.quick
        else {
            "big_mib": 1024,
            "cp_mib": 256,
            "small_files": 10_000,
            "listing": 100_000,
            "git_files": 10_000,
        }
    )
    peers = [] if args.no_peers else ["juicefs", "rclone"]
    if args.backend == "shared":
        peers = [peer for peer in peers if peer == "juicefs"]  # rclone has no such mode

    work = Path(tempfile.mkdtemp(prefix="fsobj-bench-"))
    mountpoint = work / "mnt"
    native = work / "native"
    store = work / "store"
    for path in (mountpoint, native):
        path.mkdir()
    unmounts: list[list[str]] = []
    stack = contextlib.ExitStack()
    try:
        shared = Shared(stack, work) if args.backend == "shared" else None
        if shared is not None:
            shared.format_fsobj(store)
        with open(work / "cp-source", "wb") as f:
            for _ in range(sizes["cp_mib"]):
                f.write(os.urandom(1 << 20))
        subprocess.run(
            ["tar", "cf", str(work / "tree.tar"), "-C", "/usr/lib", "python3.11"],
            check=True,
            stderr=DEVNULL,
        )
        make_repository(work / "repo", sizes["git_files"])
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
            stdout=DEVNULL,
        )
        unmounts.append([*FSOBJ, "umount", str(mountpoint)])
        bucket = mountpoint / "bench"
        bucket.mkdir()
        sides = {"native": native, "fsobj": bucket}
        for peer in peers:
            sides[peer], unmount = mount_peer(peer, work, shared)
            unmounts.append(unmount)
        measured = workloads(sides, work, sizes)
        rss = daemon_rss(store)
    finally:
        for unmount in reversed(unmounts):
            subprocess.run(unmount, check=False)
        stack.close()
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for name, (theirs, unit) in measured["native"].items():
        row = {"workload": name, "unit": unit, "native": theirs, "target": TARGETS.get(name)}
        for side in list(sides)[1:]:
            value = measured[side][name][0]
            row[side] = value
            row[f"{side} ratio"] = (
                None
                if not value or not theirs
                else value / theirs
                if unit != "s"
                else theirs / value
            )
        row["ratio"] = row["fsobj ratio"]
        rows.append(row)
    report = {
        "private": args.private,
        "backend": args.backend,
        "machine": machine(),
        "quick": args.quick,
        "sizes": sizes,
        "peers": peers,
        "daemon_rss_mib": rss,
        "results": rows,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print_report(report, list(sides)[1:])
    print(f"results written to {args.json}")


def print_report(report: dict, sides: list[str]) -> None:
    m = report["machine"]
    print(f"mount: {'private' if report['private'] else 'shared (allow_other)'}", end="")
    shared = report.get("backend") == "shared"
    print("; metadata in PostgreSQL, blobs at SeaweedFS" if shared else "")
    print(
        f"machine: {m['cores']} cores, kernel {m['kernel']}, disk {m['disk']}, "
        f"Python {m['python']}; figures on a shared machine are noisy: the ratio of one "
        "run is what counts. Ratio: to native, higher is better."
    )
    header = f"{'workload':32} {'unit':8} {'native':>9}"
    for side in sides:
        header += f" {side:>9} {'ratio':>6}"
    print(header + f" {'target':>7}")
    for row in report["results"]:
        line = f"{row['workload']:32} {row['unit']:8} {row['native']:9.2f}"
        for side in sides:
            value, ratio = row[side], row[f"{side} ratio"]
            line += f" {value:9.2f} {ratio:6.2f}" if ratio is not None else f" {'failed':>9} {'':6}"
        target = row["target"]
        line += f" {target:7.2f}" if target else ""
        fsobj = row["fsobj ratio"]
        if target and (fsobj is None or fsobj < target):
            line += "  (below)"
        behind = [s for s in sides[1:] if row[f"{s} ratio"] and (fsobj or 0) < row[f"{s} ratio"]]
        if behind:
            line += f"  (behind {', '.join(behind)})"
        print(line)
    print(
        f"fsobj daemon resident memory after listing {report['sizes']['listing']} objects:"
        f" {report['daemon_rss_mib']} MiB"
    )


if __name__ == "__main__":
    main()
