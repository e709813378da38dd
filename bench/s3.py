"""fsobj's S3 API beside SeaweedFS's S3 gateway and rclone's `serve s3`, through boto3, in
one run on this machine.

Run through `bench/run --s3 [--quick]`. Each server gets a fresh store in a temporary
directory on the same disk, listens on loopback, and is driven by the same boto3 client
code: PUT and GET of a large object (boto3's managed transfer: 8 MiB parts, 10 threads),
small objects PUT, GET and HEAD one at a time, and ListObjectsV2 over many keys. A copy
of the large object to and from a native directory is measured as a reference. Prints one
table (higher is better) and writes JSON.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import DEVNULL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from s3_fixtures import free_port, parse_key, s3_client, wait_for_port  # noqa: E402
from services import seaweedfs_port  # noqa: E402

BIN = ROOT / ".venv/bin"
KEY_ID, SECRET = "BENCHKEY", "bench-secret-bench-secret"


def progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)


def start_fsobj(work: Path) -> tuple[subprocess.Popen, int, tuple[str, str]]:
    store, port = work / "fsobj-store", free_port()
    made = subprocess.run(
        [BIN / "fsobj", "key", "create", "--store", str(store), "--uid", "0"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    key = parse_key(made)
    server = subprocess.Popen(
        [BIN / "fsobj", "--log-level", "WARNING", "serve", "--store", str(store), "--s3",
         f"127.0.0.1:{port}"],
        stdout=DEVNULL, stderr=open(work / "fsobj.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    return server, port, key


def start_seaweedfs(work: Path) -> tuple[subprocess.Popen, int, tuple[str, str]]:
    data, port = work / "seaweedfs", seaweedfs_port()
    data.mkdir()
    ports = [seaweedfs_port() for _ in range(4)]
    server = subprocess.Popen(
        [BIN / "weed", "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={ports[0]}", f"-volume.port={ports[1]}", f"-filer.port={ports[2]}",
         "-s3", f"-s3.port={port}", "-master.volumeSizeLimitMB=1024",
         "-s3.port.iceberg=0", "-s3.port.lance=0"],  # fixed ports otherwise
        stdout=DEVNULL, stderr=open(work / "seaweedfs.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    return server, port, (KEY_ID, SECRET)


def start_rclone(work: Path) -> tuple[subprocess.Popen, int, tuple[str, str]]:
    data, port = work / "rclone", free_port()
    data.mkdir()
    (work / "rclone.conf").touch()
    server = subprocess.Popen(
        [BIN / "rclone", "serve", "s3", str(data), "--addr", f"127.0.0.1:{port}",
         "--auth-key", f"{KEY_ID},{SECRET}", "--config", str(work / "rclone.conf")],
        stdout=DEVNULL, stderr=open(work / "rclone.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    return server, port, (KEY_ID, SECRET)


SERVERS: dict[str, Callable[[Path], tuple[subprocess.Popen, int, tuple[str, str]]]] = {
    "fsobj": start_fsobj,
    "seaweedfs": start_seaweedfs,
    "rclone": start_rclone,
}


def ready(s3, timeout: float = 60.0) -> None:
    """Until the server answers S3 (SeaweedFS listens before its filer is up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            s3.create_bucket(Bucket="bench")
            s3.put_object(Bucket="bench", Key="probe", Body=b"x")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def workloads(s3, work: Path, sizes: dict) -> dict[str, float]:
    """Each workload's rate (MB/s or operations/s): higher is better."""
    results = {}
    big = work / "big.bin"
    mb = sizes["large"] / 1e6
    start = time.perf_counter()
    s3.upload_file(str(big), "bench", "big")
    results["PUT large object (MB/s)"] = mb / (time.perf_counter() - start)
    start = time.perf_counter()
    s3.download_file("bench", "big", str(work / "big.back"))
    results["GET large object (MB/s)"] = mb / (time.perf_counter() - start)
    (work / "big.back").unlink()
    body, count = b"x" * 4096, sizes["small"]
    for name, call in (
        ("PUT 4 KiB objects (/s)", lambda k: s3.put_object(Bucket="bench", Key=k, Body=body)),
        ("GET 4 KiB objects (/s)", lambda k: s3.get_object(Bucket="bench", Key=k)["Body"].read()),
        ("HEAD (/s)", lambda k: s3.head_object(Bucket="bench", Key=k)),
    ):
        start = time.perf_counter()
        for i in range(count):
            call(f"small/{i:06d}")
        results[name] = count / (time.perf_counter() - start)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:  # not timed: the listing is
        list(pool.map(lambda i: s3.put_object(Bucket="bench", Key=f"list/{i:06d}", Body=b""),
                      range(sizes["listed"])))  # fmt: skip
    start = time.perf_counter()
    listed = sum(
        len(page.get("Contents", []))
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix="list/")
    )
    assert listed == sizes["listed"], listed
    results["ListObjectsV2 (keys/s)"] = listed / (time.perf_counter() - start)
    return results


def native(work: Path, sizes: dict) -> dict[str, float]:
    """The large object copied into and out of a native directory: the disk's own pace."""
    mb = sizes["large"] / 1e6
    target = work / "native"
    target.mkdir()
    start = time.perf_counter()
    shutil.copyfile(work / "big.bin", target / "big")
    os.sync()
    put = mb / (time.perf_counter() - start)
    start = time.perf_counter()
    shutil.copyfile(target / "big", work / "big.back")
    get = mb / (time.perf_counter() - start)
    (work / "big.back").unlink()
    return {"PUT large object (MB/s)": put, "GET large object (MB/s)": get}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    parser.add_argument("--json", default=str(ROOT / "bench/results/s3.json"))
    args = parser.parse_args()
    sizes = (
        {"large": 128 << 20, "small": 200, "listed": 2_000}
        if args.quick
        else {"large": 1 << 30, "small": 1_000, "listed": 10_000}
    )
    report: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fsobj-bench-s3-", dir="/var/tmp") as where:
        work = Path(where)
        with open(work / "big.bin", "wb") as f:
            for _ in range(sizes["large"] >> 20):
                f.write(os.urandom(1 << 20))
        report["native"] = native(work, sizes)
        for name, start in SERVERS.items():
            progress(f"{name} ...")
            server, port, key = start(work)
            try:
                wait_for_port(port, 60.0, server, work / f"{name}.log")
                s3 = s3_client(f"http://127.0.0.1:{port}", key, max_pool_connections=20)
                ready(s3)
                report[name] = workloads(s3, work, sizes)
            finally:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
    progress("")
    print_report(report)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"sizes": sizes, "results": report}, indent=2) + "\n")


def print_report(report: dict[str, dict[str, float]]) -> None:
    sides = list(report)
    rows = list(report["fsobj"])
    width = max(map(len, rows))
    print(f"{'workload':<{width}}  " + "  ".join(f"{s:>10}" for s in sides) + "  fsobj/best peer")
    for row in rows:
        cells = [report[s].get(row) for s in sides]
        peers = [report[s][row] for s in ("seaweedfs", "rclone") if row in report[s]]
        ratio = report["fsobj"][row] / max(peers) if peers else float("nan")
        print(
            f"{row:<{width}}  "
            + "  ".join(f"{c:>10.1f}" if c is not None else f"{'-':>10}" for c in cells)
            + f"  {ratio:>6.2f}"
        )


if __name__ == "__main__":
    main()
