"""Crash harness: real workloads against a mounted fsobj, SIGKILL at seeded random moments,
remount, compare every object with a model of what was committed, then gc and fsck.

    .venv/bin/python tests/crash_harness.py [--seed N] [--iterations N] [--long] [--s3]

The workload runs in a forked process and journals each operation before it starts
("B ...") and after it returned ("E"): through the mount, or (--s3) through the S3 API
the mount serves (PUTs, multipart uploads, copies and deletes). After the crash, an
operation that ended must be visible in full; the one in flight may show its old or its
new state, nothing else: no torn content, no empty object that was never written as one.
A file rewritten in place and fsynced (a database's way) counts each `fsync` as an
operation; those past the second are journaled, and a versioned bucket need not keep
their content as versions of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import boto3
from botocore.exceptions import ClientError
from conftest import Mount
from s3_fixtures import S3Mount, free_port, wait_for_port

NAMES = [f"obj-{i}" for i in range(10)]
SIZES = [0, 1, 4096, 100_000, 1_500_000, 4_000_000]
S3_SIZES = [*SIZES, 11_000_000]  # past 5 MiB: a multipart upload of three parts
SEALED = b"fsobj sealed v1\n"  # how every blob of a sealed run begins (datastore/sealing.py)


def content(name: str, version: int, size: int) -> bytes:
    pattern = f"{name}:{version}:".encode()
    return (pattern * (size // len(pattern) + 1))[:size]


def workload(bucket: Path, seed: int, journal: Path) -> None:
    """Run operations until the mount goes away; never returns."""
    rng = random.Random(seed)
    log = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    version = seed * 1_000_000

    def note(line: str) -> None:
        os.write(log, (line + "\n").encode())

    try:
        while True:
            kinds = ["put", "small-files", "rename", "delete", "link", "clone", "in-place"]
            kind = rng.choices(kinds, [5, 2, 2, 2, 3, 1, 2])[0]
            if kind == "put":
                name, size = rng.choice(NAMES), rng.choice(SIZES)
                version += 1
                note(f"B put {name} {version} {size}")
                data = content(name, version, size)
                with open(bucket / name, "wb") as f:
                    for start in range(0, len(data), 128 * 1024):
                        f.write(data[start : start + 128 * 1024])
            elif kind == "small-files":
                for _ in range(10):
                    name = f"small-{rng.randrange(40)}"
                    version += 1
                    note(f"B put {name} {version} 300")
                    (bucket / name).write_bytes(content(name, version, 300))
                    note("E")
                continue
            elif kind == "in-place":  # a database's way: rewrites fsynced, the file open
                name = rng.choice(NAMES)
                try:
                    fd = os.open(bucket / name, os.O_RDWR)
                except FileNotFoundError:
                    continue
                try:  # past the second fsync, each is journaled (service/journaled.py):
                    # a rewrite, which a versioned bucket need not keep as a version
                    for step in range(5):
                        size = rng.choice(SIZES)
                        version += 1
                        note(f"B {'put' if step < 2 else 'rewrite'} {name} {version} {size}")
                        os.pwrite(fd, content(name, version, size), 0)
                        os.ftruncate(fd, size)
                        os.fsync(fd)
                        note("E")
                finally:
                    os.close(fd)
                continue
            elif kind == "rename":
                a, b = rng.choice(NAMES), rng.choice(NAMES)
                note(f"B rename {a} {b}")
                with contextlib.suppress(FileNotFoundError):
                    os.rename(bucket / a, bucket / b)
            elif kind == "link":  # a second name for a file: a put through either writes it
                a, b = rng.choice(NAMES), rng.choice(NAMES)
                note(f"B link {a} {b}")
                with contextlib.suppress(FileNotFoundError, FileExistsError):
                    os.link(bucket / a, bucket / b)
            elif kind == "clone":  # an independent copy by metadata alone (fsobj clone)
                a, b = rng.choice(NAMES), rng.choice(NAMES)
                note(f"B clone {a} {b}")
                with contextlib.suppress(FileNotFoundError, FileExistsError):
                    os.setxattr(bucket, "user.fsobj.clone", f"{bucket.name}/{a}\0{b}".encode())
                    # As `fsobj clone` does: the kernel may have remembered the name as
                    # missing, and the daemon drops that just after its answer.
                    while not os.path.lexists(bucket / b):
                        time.sleep(0.001)
            else:
                name = rng.choice(NAMES)
                note(f"B delete {name}")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(bucket / name)
            note("E")
    except OSError:
        pass  # the mount went away: the crash
    finally:
        os._exit(0)


def s3_workload(s3: S3Mount, seed: int, journal: Path) -> None:
    """The same model of operations over S3; never returns."""
    from boto3.s3.transfer import TransferConfig

    rng = random.Random(seed)
    log = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    version = seed * 1_000_000
    five = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)

    def note(line: str) -> None:
        os.write(log, (line + "\n").encode())

    try:
        client = s3.client(0, retries={"max_attempts": 1})
        while True:
            kind = rng.choices(["put", "deep", "copy", "delete"], [6, 2, 2, 1])[0]
            if kind in ("put", "deep"):
                name, size = rng.choice(NAMES), rng.choice(S3_SIZES)
                version += 1
                if kind == "deep":  # a key below directories that the PUT makes
                    name = f"d{version}/{rng.randrange(3)}/{name}"
                note(f"B put {name} {version} {size}")
                data = content(name, version, size)
                client.upload_fileobj(io.BytesIO(data), "crash", name, Config=five)
            elif kind == "copy":
                a, b = rng.choice(NAMES), rng.choice(NAMES)
                note(f"B copy {a} {b}")
                with contextlib.suppress(ClientError):
                    client.copy_object(Bucket="crash", Key=b, CopySource=f"crash/{a}")
            else:
                name = rng.choice(NAMES)
                note(f"B delete {name}")
                client.delete_object(Bucket="crash", Key=name)
            note("E")
    except Exception:
        pass  # the server went away: the crash
    finally:
        os._exit(0)


# A state maps each name to its file: [name written as, version, size] of its content. The
# names of one file (hard links) share one list, which a put through any of them changes.
State = dict[str, list]


def replay(journal: Path, state: State) -> list[State]:
    """The states the bucket may be in: the committed one, and with the op in flight."""
    lines = journal.read_text().splitlines() if journal.exists() else []
    pending: list[str] | None = None
    for line in lines:
        if line == "E":
            assert pending is not None
            apply(pending, state)
            pending = None
        else:
            pending = line.split()[1:]
    if pending is None:
        return [state]
    after = copy.deepcopy(state)  # which keeps the names of a file sharing it
    apply(pending, after)
    return [state, after]


def apply(op: list[str], state: State) -> None:
    kind, *args = op
    if kind in ("put", "rewrite"):  # over S3 no name has another: a new object and a
        # rewrite agree
        written = [args[0], int(args[1]), int(args[2])]
        if args[0] in state:
            state[args[0]][:] = written
        else:
            state[args[0]] = written
    elif kind == "rename":
        a, b = args
        if a in state and state.get(b) is not state[a]:  # two names of a file: nothing
            state[b] = state.pop(a)
    elif kind == "link":
        a, b = args
        if a in state and b not in state:
            state[b] = state[a]
    elif kind == "copy":
        a, b = args
        if a in state and a != b:
            state[b] = list(state[a])
    elif kind == "clone":
        a, b = args
        if a in state and b not in state:
            state[b] = list(state[a])
    elif kind == "delete":
        state.pop(args[0], None)


def observed(bucket: Path) -> dict[str, bytes]:
    """Every object by its key; an empty directory as its key with a `/`, which no state
    has: what a PUT's crash left half made."""
    seen = {}
    for directory, subdirectories, files in os.walk(bucket):
        prefix = os.path.relpath(directory, bucket)
        prefix = "" if prefix == "." else prefix + "/"
        for name in files:
            seen[prefix + name] = (Path(directory) / name).read_bytes()
        if prefix and not subdirectories and not files:
            seen[prefix] = b""
    return seen


def matches(state: State, seen: dict[str, bytes]) -> bool:
    return set(state) == set(seen) and all(
        seen[name] == content(*version) for name, version in state.items()
    )


def describe(candidates: list[dict], seen: dict[str, bytes]) -> str:
    """How the bucket differs from the closest acceptable state, for the failure message."""
    best = candidates[-1]
    lines = []
    for name in sorted(set(best) | set(seen)):
        if name not in seen:
            lines.append(f"{name}: missing, expected version {best[name]}")
        elif name not in best:
            lines.append(f"{name}: present ({len(seen[name])} bytes), expected absent")
        elif seen[name] != content(*best[name]):
            head = seen[name][:40]
            lines.append(f"{name}: {len(seen[name])} bytes {head!r}, expected {best[name]}")
    return "after the crash: " + "; ".join(lines)


def run(
    seed: int,
    iterations: int,
    workdir: Path,
    say=print,
    s3: bool = False,
    blobs_at: tuple[str, str] | None = None,
    meta: str | None = None,
    versioned: bool = False,
    sealed: bool = False,
) -> None:
    """`blobs_at` (endpoint, s3://BUCKET/PREFIX): the store keeps its blobs at that S3
    service (credentials from the environment); after each crash and gc, the service
    must hold exactly the blobs that objects name: no orphan upload is left. `meta`: the
    store keeps its metadata in that PostgreSQL database (password from PGPASSWORD).
    `versioned`: the bucket keeps every version, and after each crash and gc every
    content a finished put wrote is still there, current or past (the mount's view).
    `sealed`: the bucket seals every new object with the store's keys (its default
    encryption), and the blobs on disk hold none of the content."""
    rng = random.Random(seed)
    mountpoint = Path(tempfile.mkdtemp(prefix="fsobj-crash-"))
    port = free_port()
    options = ("--s3", f"127.0.0.1:{port}") if s3 else ()
    mount = Mount(workdir / "store", mountpoint, workdir / "fsobj.log", options)
    backends = [] if meta is None else ["--meta", meta]
    if blobs_at is not None:
        endpoint, url = blobs_at
        backends += ["--data", url, "--endpoint", endpoint, "--cache-size", "8M"]
    if backends:
        subprocess.run(
            [sys.executable, "-m", "fsobj", "format", "--store", str(mount.store), *backends],
            check=True, capture_output=True,
        )  # fmt: skip
    mount.start()
    server = S3Mount(mount, port)
    state: State = {}
    try:
        bucket = mountpoint / "crash"
        bucket.mkdir()
        written: set[bytes] = set()  # digests of what finished puts wrote
        if versioned:
            os.setxattr(bucket, "user.fsobj.versioning", b"Enabled")
        if sealed:
            os.setxattr(bucket, "user.fsobj.encryption", b"AES256")
        for iteration in range(iterations):
            journal = workdir / f"journal-{iteration}"
            if s3:
                wait_for_port(port)
                server.key(0)  # made before the fork: the child only uses it
            child = os.fork()
            if child == 0:
                if s3:
                    s3_workload(server, seed * 1000 + iteration, journal)
                workload(bucket, seed * 1000 + iteration, journal)
            time.sleep(rng.uniform(0.05, 1.2))
            mount.process.send_signal(signal.SIGKILL)
            mount.process.wait()
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            mount.stop()
            logged = len(mount.log_text())
            mount.start()
            recovered = mount.log_text()[logged:].count("recovered what its last fsync")
            candidates = replay(journal, state)
            seen = observed(bucket)
            good = [c for c in candidates if matches(c, seen)]
            assert good, f"iteration {iteration}: " + describe(candidates, seen)
            state = good[-1]
            subprocess.run(
                [sys.executable, "-m", "fsobj", "gc", str(mountpoint)],
                check=True,
                capture_output=True,
            )
            if versioned:
                written |= finished_puts(journal)
                kept = every_version(bucket)
                lost = len(written - kept)
                assert not lost, f"iteration {iteration}: {lost} finished puts lost their version"
            if blobs_at is not None:
                named = named_blobs(bucket)
                held = set(remote_blob_ids(*blobs_at))
                assert held == named, f"iteration {iteration}: the service holds {held - named}"
            if sealed:  # the blobs objects name (a commit cut short leaves garbage)
                blobs = [mount.store / "blobs" / name[:2] / name for name in named_blobs(bucket)]
                plain = [p.name for p in blobs if p.exists() and not _sealed(p)]
                assert not plain, f"iteration {iteration}: blobs not sealed: {plain}"
            mount.stop()
            fsck = subprocess.run(
                [sys.executable, "-m", "fsobj", "fsck", "--verify", "--store", str(mount.store)],
                capture_output=True,
                text=True,
            )
            assert fsck.returncode == 0, f"iteration {iteration}: fsck:\n{fsck.stdout}"
            mount.start()
            linked = len(state) - len({id(file) for file in state.values()})
            say(
                f"iteration {iteration}: {len(state)} objects as committed"
                f" ({linked} more names than files: hard links; {recovered} from journals"
                " of fsyncs); fsck clean"
            )
    finally:
        mount.stop()
        mountpoint.rmdir()


def named_blobs(bucket: Path) -> set[str]:
    """The ids of the blobs the bucket's objects name."""
    named = {
        os.getxattr(Path(directory) / name, "user.fsobj.id").decode()
        for directory, _, files in os.walk(bucket)
        for name in files
    }
    named.discard("")
    return named


def _sealed(blob: Path) -> bool:
    with open(blob, "rb") as stored:
        return stored.read(len(SEALED)) == SEALED


def finished_puts(journal: Path) -> set[bytes]:
    """Digests of the content of every put that finished (journaled "E")."""
    done, pending = set(), None
    for line in journal.read_text().splitlines() if journal.exists() else []:
        if line == "E":
            if pending is not None and pending[0] == "put":
                name, version, size = pending[1], int(pending[2]), int(pending[3])
                done.add(hashlib.sha256(content(name, version, size)).digest())
            pending = None
        else:
            pending = line.split()[1:]
    return done


def every_version(bucket: Path) -> set[bytes]:
    """Digests of every version a versioned bucket keeps: its objects, and through the
    mount's view (`.fsobj-versions`) the past versions of every key."""
    files = [p for p in bucket.rglob("*") if p.is_file()]
    files += [p for p in (bucket / ".fsobj-versions").rglob("*") if p.is_file()]
    return {hashlib.sha256(p.read_bytes()).digest() for p in files}


def remote_blob_ids(endpoint: str, url: str) -> list[str]:
    """The blob ids the S3 service at `endpoint` holds under `url` (s3://BUCKET/PREFIX),
    read with the credentials the environment gives."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    pages = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").get_paginator(
        "list_objects_v2"
    )
    return [
        item["Key"].rsplit("/", 1)[-1]
        for page in pages.paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
        for item in page.get("Contents", [])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--long", action="store_true", help="50 iterations")
    parser.add_argument("--s3", action="store_true", help="through the S3 API")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fsobj-crash-store-") as workdir:
        run(args.seed, 50 if args.long else args.iterations, Path(workdir), s3=args.s3)


if __name__ == "__main__":
    main()
