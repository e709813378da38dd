"""Two versions of fsobj, workload by workload, in alternating rounds on fresh mounts.

    bench/run --compare BASE [--rounds N] [--mib N] [--files N]

BASE (any git revision) is checked out in a temporary worktree and measured against the
working tree as it stands, uncommitted changes included. Rounds run in the order A B B A
A B B A..., because on this shared machine neighbouring runs of the same code differ by
up to 40% and the second of a pair is more often the slower. Prints each round's figures
and the medians, with the daemon's CPU time, which moves less with the machine than rates.

Each side's daemon is started from a directory outside both trees with `PYTHONPATH` set
to its tree: `python -m` puts the current directory first on `sys.path`, so started from
the project's directory, both sides would run the project's own code. Before measuring,
each side's import of `fsobj` is checked to come from its tree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench import ROOT, SQLITE_COMMITS, drop_caches, progress, small_files

SQLITE_TRANSACTIONS = 300

PYTHON = str(ROOT / ".venv/bin/python")


class Side:
    """One version of fsobj: its tree, and how to start its daemon."""

    def __init__(self, name: str, tree: Path, workdir: Path):
        self.name, self.tree, self.workdir = name, tree, workdir
        self.env = {**os.environ, "PYTHONPATH": str(tree)}
        found = subprocess.run(
            [PYTHON, "-c", "import fsobj; print(fsobj.__file__)"],
            cwd=workdir, env=self.env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not Path(found).is_relative_to(tree):
            raise SystemExit(f"{name}: fsobj imports from {found}, not from {tree}")

    def round(self, mib: int, files: int) -> dict[str, float]:
        """Every workload once, on a fresh store and mount; {figure: value}."""
        with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="fsobj-compare-") as temp:
            mountpoint = Path(temp) / "mnt"
            mountpoint.mkdir()
            daemon = subprocess.Popen(
                [PYTHON, "-m", "fsobj", "mount", "--foreground", "--store", f"{temp}/store",
                 str(mountpoint)],
                cwd=self.workdir, env=self.env, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                while not os.path.ismount(mountpoint):
                    if daemon.poll() is not None:
                        raise SystemExit(f"{self.name}: the daemon exited ({daemon.returncode})")
                    time.sleep(0.01)
                return self._workloads(mountpoint / "bench", daemon.pid, mib, files)
            finally:
                subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False)
                daemon.wait()

    def _workloads(self, bucket: Path, pid: int, mib: int, files: int) -> dict[str, float]:
        bucket.mkdir()
        figures: dict[str, float] = {}

        def timed(label: str, cmd: list[str], drop: bool = False) -> None:
            if drop:
                drop_caches()
            cpu = _cpu_seconds(pid)
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            figures[f"{label}, MiB/s"] = mib / (time.perf_counter() - start)
            figures[f"{label}, daemon CPU s"] = _cpu_seconds(pid) - cpu

        big = bucket / "big"
        write = ["dd", "if=/dev/zero", f"of={big}", "bs=1M", f"count={mib}", "conv=fsync"]
        timed(f"write {mib} MiB + fsync", write)
        timed("read it cold", ["dd", f"if={big}", "of=/dev/null", "bs=1M"], drop=True)
        big.unlink()
        for mode, drop in (("create", False), ("read", True), ("unlink", False)):
            if drop:
                drop_caches()
            figures[f"{mode} 4 KiB files, files/s"] = files / small_files(bucket, files, mode)
        for mode in ("DELETE", "WAL"):  # a rollback journal: a new file fsynced twice per commit
            database, cpu = bucket / f"compare-{mode}.sqlite3", _cpu_seconds(pid)
            script = [PYTHON, "-c", SQLITE_COMMITS, str(database), mode, str(SQLITE_TRANSACTIONS)]
            seconds = float(subprocess.run(script, check=True, capture_output=True).stdout)
            figures[f"SQLite {mode}, transactions/s"] = SQLITE_TRANSACTIONS / seconds
            figures[f"SQLite {mode}, daemon CPU s"] = _cpu_seconds(pid) - cpu
        return figures


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base", help="the git revision to measure against the working tree")
    parser.add_argument("--rounds", type=int, default=4, help="runs of each side (default 4)")
    parser.add_argument("--mib", type=int, default=512, help="size of the large file")
    parser.add_argument("--files", type=int, default=2000, help="how many small files")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/run --compare drops the page cache: run it as root")
    with tempfile.TemporaryDirectory(prefix="fsobj-compare-") as temp:
        workdir, base_tree = Path(temp) / "cwd", Path(temp) / "base"
        workdir.mkdir()
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base_tree),
             args.base],
            check=True,
        )  # fmt: skip
        try:
            sides = [Side(f"A ({args.base})", base_tree, workdir),
                     Side("B (working tree)", ROOT, workdir)]  # fmt: skip
            results: dict[str, list[dict[str, float]]] = {side.name: [] for side in sides}
            order = [sides[i % 4 in (1, 2)] for i in range(2 * args.rounds)]
            for number, side in enumerate(order, 1):
                progress(f"run {number} of {len(order)}: {side.name}")
                figures = side.round(args.mib, args.files)
                results[side.name].append(figures)
                print(side.name, "  ".join(f"{k} {v:.2f}" for k, v in figures.items()))
            progress("")
            print("\nmedians")
            for label in results[sides[0].name][0]:
                values = [statistics.median(r[label] for r in results[s.name]) for s in sides]
                print(f"  {label:36} A {values[0]:10.2f}   B {values[1]:10.2f}")
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
                check=False,
            )


if __name__ == "__main__":
    main()
