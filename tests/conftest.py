"""Fixtures that mount a real fsobj in a temporary directory and always unmount it."""

from __future__ import annotations

import contextlib
import json
import os
import select
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import actor
import pytest
import trio_asyncio
from daemons import Daemon, ForkServer

from fsobj.metadata.entries import Commit
from fsobj.metadata.store import Entry, MetadataStore, open_metadata_store

MOUNT_TIMEOUT = 30.0
# Where the mounts of this test process fork their daemons (daemons.py; the `forks`
# fixture); None: each is `python -m fsobj`, as for the crash harness run alone.
FORKS: ForkServer | None = None


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


class Mount:
    """A running `fsobj mount --foreground` of `store` at `path`."""

    def __init__(self, store: Path, path: Path, log: Path, options: tuple[str, ...] = ()):
        self.store = store
        self.path = path
        self.log = log
        self.process: subprocess.Popen | Daemon | None = None
        self.expect_errors = False  # set by tests that damage the store on purpose
        self.options = options  # more `fsobj mount` options
        # What a user would see; a test that reads the daemon's debug lines asks for them
        # (every request's debug work costs the whole suite's time on two cores).
        self.log_level = "INFO"

    def start(self) -> None:
        """Mount, and return once the daemon says it serves (as `fsobj mount` waits): its
        services started and its log written, whatever the load on the machine."""
        read_end, write_end = os.pipe()
        argv = [
            "--log-level", self.log_level, "mount", "--foreground", "--ready-fd", "READY_FD",
            *self.options, "--store", str(self.store), str(self.path),
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            if FORKS is not None:
                self.process = FORKS.start(argv, log.fileno(), write_end)
            else:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "fsobj"]
                    + [str(write_end) if a == "READY_FD" else a for a in argv],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=[write_end],
                )
        os.close(write_end)
        with os.fdopen(read_end, "rb") as ready:
            answered = select.select([ready], [], [], MOUNT_TIMEOUT)[0]
            signalled = ready.read(1) if answered else b""
        if signalled != b"1":
            if answered:  # the pipe closed unsignalled: it is exiting
                self.process.wait(timeout=MOUNT_TIMEOUT)
                raise AssertionError(
                    f"fsobj exited with {self.process.returncode}:\n" + self.log.read_text()
                )
            self.stop()
            raise AssertionError("fsobj did not mount in time:\n" + self.log.read_text())
        assert is_mounted(self.path)

    def stop(self) -> None:
        """Unmount and wait for the daemon; forceful only when it will not go."""
        if self.process is None:
            return
        for _ in range(50):
            if not is_mounted(self.path):
                break
            if (
                subprocess.run(
                    ["fusermount3", "-u", str(self.path)], capture_output=True
                ).returncode
                == 0
            ):
                break
            time.sleep(0.1)  # busy: a process of the test may still be closing files
        else:
            subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True)
        try:
            self.process.wait(timeout=MOUNT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def commit_rarely(self) -> None:
        """Remount so that nothing becomes durable unless asked (fsync, unmount): tests of
        what waits for the next durability point must not race the periodic one."""
        self.options = (*self.options, "--commit-interval", "3600")
        self.restart()

    def make_durable(self) -> None:
        """What fsync does for a whole mount: every commit durable; the blobs that
        commits and unlinks left unnamed are removed just after (`blobs_left`)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def __truediv__(self, other: str) -> Path:
        return self.path / other


@pytest.fixture(scope="session", autouse=True)
def forks() -> Iterator[None]:
    """One fork server for the mounts of this test process (daemons.py)."""
    global FORKS
    FORKS = ForkServer()
    try:
        yield
    finally:
        FORKS.close()
        FORKS = None


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@contextlib.contextmanager
def mounted_at(store: Path, log: Path, options: tuple[str, ...] = ()) -> Iterator[Mount]:
    """A running mount of `store` on a fresh mount point, always unmounted afterwards."""
    # Other uids must be able to reach the mount point: pytest's tmp_path is private.
    path = Path(tempfile.mkdtemp(prefix="fsobj-mnt-"))
    path.chmod(0o755)
    mounted = Mount(store, path, log, options)
    mounted.start()
    try:
        yield mounted
    finally:
        mounted.stop()
        assert not is_mounted(path)
        path.rmdir()
    # Ordinary bad input must never produce a traceback or an error in the daemon's log.
    text = mounted.log_text()
    assert "Traceback" not in text, text
    assert mounted.expect_errors or " ERROR " not in text, text


# The mount tests run on the default store (metadata in SQLite, blobs on the local disk,
# a shared mount); those of the modules below run once more on each other kind of store,
# as `test_name[KIND]`:
#   private:    private mounts, where the kernel caches entries;
#   postgresql: metadata in PostgreSQL, blobs on the local disk: durability and versions
#               (the core's rules, S3's included, run on PostgreSQL in-process in
#               test_core, the metadata store's in test_stores);
#   shared:     metadata in PostgreSQL and blobs at an S3 service, a store that several
#               hosts may serve, served here by one: what the kernel sees of PostgreSQL's
#               rows, reads and writes of remote blobs through both front ends, and
#               access under the metadata timeout (what hosts see of each other is
#               test_shared's). The modules here ran on `postgresql` too until CI time
#               asked for less: each part (PostgreSQL, the local disk) is tested still.
#               So did test_posix: the kernel checks mode bits from attributes, whatever
#               store gave them (test_posix_acl keeps access under the timeout here, and
#               hard links run on PostgreSQL in-process in test_hard_links): 51 s of the
#               2,466 s that all tests took in a run.
# No HTTP parsing depends on the store (test_s3_protocol runs once).
ALSO_ON: dict[str, tuple[str, ...]] = {
    "private": ("test_objects", "test_tools", "test_random_ops"),
    "postgresql": ("test_durability", "test_versions"),
    "shared": (
        "test_objects", "test_tools", "test_faults", "test_random_ops", "test_posix_acl",
        "test_s3", "test_s3_access", "test_s3_conditions", "test_s3_encryption",
    ),
}  # fmt: skip
# A test marked `same_on_every_store` runs once: what it checks is decided above the
# stores (signatures, headers, access rules the core applies the same on each).

# tests/run runs four test processes; the tests of these modules, the longest, go first,
# so that none is left running alone at the end. The groups marked below (a module on one
# kind of store) no longer hold: pytest 9 keeps a test's id where pytest-xdist 3.8 cannot
# add its group, so each test goes to whichever process is free, and tests that share a
# machine-wide resource take turns themselves (test_fstab). Grouping back in force (pytest
# 8) measured slower: half the suite in 9:45, where the whole took 9:21 ungrouped.
LONGEST_FIRST = (
    "test_shared", "test_crash", "test_crash_versions", "test_large_bucket", "test_s3_load",
    "test_remote_blobs", "test_s3", "test_s3_access", "test_postgres", "test_objects",
    "test_durability", "test_console",
)  # fmt: skip


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_kind" in metafunc.fixturenames:
        module = metafunc.module.__name__
        again = [kind for kind, modules in ALSO_ON.items() if module in modules]
        if again and not metafunc.definition.get_closest_marker("same_on_every_store"):
            metafunc.parametrize("store_kind", ["local", *again])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def module(item: pytest.Item) -> str:
        return item.module.__name__ if item.module else ""

    for item in items:
        kind = getattr(item, "callspec", None) and item.callspec.params.get("store_kind")
        item.add_marker(pytest.mark.xdist_group(f"{module(item)}-{kind or 'local'}"))
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(module(item), len(LONGEST_FIRST)))


@pytest.fixture
def store_kind() -> str:
    """The kind of store a mount test runs on (ALSO_ON)."""
    return "local"


def mount_options(kind: str) -> tuple[str, ...]:
    return ("--private",) if kind == "private" else ()


def format_as_asked(store: Path, request, kind: str) -> None:
    """For the `postgresql` kind, make `store` keep its metadata in a new database; for
    `shared`, its blobs at an S3 service too."""
    if kind not in ("postgresql", "shared"):
        return
    from fsobj.service.backends import Backends, format_store

    request.getfixturevalue("pg_password")
    database = request.getfixturevalue("pg_cluster").new_database()
    chosen = Backends(database)
    if kind == "shared":
        service = request.getfixturevalue("blob_service")
        service.offer_bucket(request.getfixturevalue("monkeypatch"), store.parent)
        prefix = f"s3://fsobj-blobs/{database.rsplit('/', 1)[-1]}"
        chosen = Backends(database, prefix, service.endpoint)
    # What `fsobj format` does, in-process: a second off the set-up of each test.
    format_store(store, chosen)


@pytest.fixture
def mount(tmp_path: Path, store: Path, request, store_kind: str):
    format_as_asked(store, request, store_kind)
    with mounted_at(store, tmp_path / "fsobj.log", mount_options(store_kind)) as mounted:
        yield mounted


@pytest.fixture
def bucket(mount: Mount) -> Path:
    path = mount / "test-bucket"
    path.mkdir()
    return path


@pytest.fixture
def s3(tmp_path: Path, request, store_kind: str):
    """A mount that also serves S3 (s3_fixtures.S3Mount)."""
    from s3_fixtures import S3Mount, free_port, wait_for_port

    port = free_port()
    options = (*mount_options(store_kind), "--s3", f"127.0.0.1:{port}")
    format_as_asked(tmp_path / "store", request, store_kind)
    with mounted_at(tmp_path / "store", tmp_path / "fsobj.log", options) as mounted:
        wait_for_port(port)
        yield S3Mount(mounted, port)


def query_metadata(store: Path, sql: str) -> list[tuple]:
    """Rows of a query on a store's metadata database, SQLite or PostgreSQL (read while
    the daemon runs, as a second reader)."""
    backends = store / "backends.json"
    url = json.loads(backends.read_text()).get("meta") if backends.exists() else None
    if url is None:
        with contextlib.closing(sqlite3.connect(store / "meta.sqlite3")) as conn:
            return conn.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def blob_files(store: Path) -> list[Path]:
    return [p for p in (store / "blobs").rglob("*") if p.is_file()]


def blobs_left(store: Path, expected: int, seconds: float = 10.0) -> int:
    """How many blobs the store holds once it is down to `expected`, or after `seconds`:
    a daemon removes the blobs a durability point made unnamed in the background, just
    after the point."""
    deadline = time.monotonic() + seconds
    while (count := len(blob_files(store))) > expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return count


def fsobj_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`fsobj ARGS...`, forked from the fork server (daemons.py) in a test process."""
    if FORKS is not None:
        result = FORKS.run(list(args), timeout=120)
    else:
        result = subprocess.run(
            [sys.executable, "-m", "fsobj", *args], capture_output=True, text=True, timeout=120
        )
    if check and result.returncode != 0:
        raise AssertionError(f"fsobj {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def as_user(
    uid: int, steps: list[list], gid: int | None = None, groups: tuple = (), umask: int = 0o022
) -> list:
    """Run `steps` (see actor.py) in a forked process with another identity (forked, not
    executed: the interpreter may live where that user cannot read). One result per step."""
    gid = uid if gid is None else gid
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups(list(groups))
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.umask(umask)
            os.chdir("/")
            with os.fdopen(write_end, "w") as out:
                json.dump(actor.run_steps(steps), out)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as results:
        text = results.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and text, f"the process acting as uid {uid} failed"
    return json.loads(text)


def new_entry(parent: int, name: str, kind: str = "object") -> Entry:
    """An entry to insert into a metadata store, owned by root."""
    now = time.time_ns()
    return Entry(0, parent, name, kind, 0o644, 0, 0, now, now, now)


def reads_without_waiting(where: Path) -> bool:
    """Whether files at `where` can be read only from the page cache (tmpfs cannot)."""
    probe = where / "nowait-probe"
    probe.write_bytes(b"x")
    fd = os.open(probe, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()


def a_commit(object_id: str, size: int = 1, **more: Any) -> Commit:
    """A commit of a version of `size` bytes in the blob `object_id`."""
    fields: dict[str, Any] = {"etag": "0" * 32, "checksums": None, "blocks": None}
    fields |= {"content_type": "text/plain", "ctime_ns": time.time_ns(), **more}
    return Commit(object_id, size, **fields)


@contextlib.asynccontextmanager
async def metadata_store(path: Path | str, **options: int) -> AsyncIterator[MetadataStore]:
    """A metadata store of its own at `path` (or in the PostgreSQL database a URL names),
    without FUSE, closed afterwards."""
    async with trio_asyncio.open_loop():
        store = await open_metadata_store(path, **options)
        try:
            yield store
        finally:
            await store.close()


@pytest.fixture(scope="session")
def pg_cluster():
    """A private PostgreSQL cluster for the whole run (services.py), started on first use;
    tests take a database of their own from it (`new_database`)."""
    from services import postgresql

    with postgresql() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def blob_service(tmp_path_factory):
    """An S3 service for the whole run (SeaweedFS: services.py)."""
    from services import seaweedfs

    with seaweedfs(tmp_path_factory.mktemp("blob-service")) as service:
        yield service


@pytest.fixture
def pg_password(monkeypatch, pg_cluster):
    """The cluster's password where libpq looks for it (never in a URL)."""
    from services import PG_PASSWORD

    monkeypatch.setenv("PGPASSWORD", PG_PASSWORD)
    return PG_PASSWORD


@pytest.fixture(params=["sqlite", "postgresql"])
async def core(request, tmp_path: Path) -> AsyncIterator[tuple[Any, Any]]:
    """The core and the object service over one store, on each metadata backend, in
    process (no mount)."""
    from fsobj.service.objects import ObjectService
    from fsobj.service.store import open_store

    root = tmp_path / "store"
    if request.param == "postgresql":
        request.getfixturevalue("pg_password")
        database = request.getfixturevalue("pg_cluster").new_database()
        fsobj_cli("format", "--store", str(root), "--meta", database)
    async with trio_asyncio.open_loop(), open_store(root) as store:
        yield store.service, ObjectService(store.service)


@pytest.fixture
def both(core: tuple[Any, Any]) -> tuple[Any, Any]:
    """The FUSE handlers and the object service over one store, as a mount serving S3."""
    from fsobj.fuse.operations import Operations

    service, objects = core
    return Operations(service), objects
