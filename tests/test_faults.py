"""Crashes, concurrent clients and bad input never lose or tear committed objects."""

import contextlib
import ctypes
import errno
import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import blob_files, is_mounted

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def renameat2(old, new, flags: int) -> None:
    if libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def test_sigkill_during_write_keeps_the_committed_version(mount, bucket):
    path = bucket / "precious"
    path.write_bytes(b"committed version")
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    # Past a megabyte, staged content leaves memory for a file in the staging area.
    os.write(fd, b"half-written replacement" * 100_000)
    assert os.listdir(mount.store / "staging")
    mount.process.send_signal(signal.SIGKILL)
    mount.process.wait()
    with pytest.raises(OSError):
        os.close(fd)  # the daemon is gone: close cannot commit
    mount.stop()
    mount.start()
    assert path.read_bytes() == b"committed version"
    assert os.listdir(mount.store / "staging") == []
    assert "uncommitted writes left by an earlier run" in mount.log_text()


WRITER = r"""
import os, sys
path, tag = sys.argv[1], sys.argv[2]
body = (tag * 1000).encode()
for round in range(20):
    with open(path, "wb") as f:
        for _ in range(50):
            f.write(body)
"""


def test_concurrent_writers_of_one_object_never_mix(bucket):
    path = bucket / "contended"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag]) for tag in "ABCD"]
    seen = set()
    while any(w.poll() is None for w in writers):
        if path.exists():
            content = path.read_bytes()
            if content:
                seen.add(content[:1])
                assert content == content[:1] * 50_000, "a reader saw a torn object"
    assert all(w.wait() == 0 for w in writers)
    final = path.read_bytes()
    assert final in {tag.encode() * 50_000 for tag in "ABCD"}
    assert seen


MANY_FILES = r"""
import os, sys, hashlib
root, me = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(root, me))
for i in range(60):
    data = hashlib.sha256(f"{me}-{i}".encode()).digest() * (i + 1)
    with open(os.path.join(root, me, f"f{i}"), "wb") as f:
        f.write(data)
for i in range(60):
    data = hashlib.sha256(f"{me}-{i}".encode()).digest() * (i + 1)
    with open(os.path.join(root, me, f"f{i}"), "rb") as f:
        assert f.read() == data, (me, i)
"""


def test_many_processes_create_and_read_back(mount, bucket):
    workers = [
        subprocess.Popen([sys.executable, "-c", MANY_FILES, str(bucket), f"w{n}"]) for n in range(4)
    ]
    assert [w.wait(timeout=300) for w in workers] == [0, 0, 0, 0]
    assert sorted(os.listdir(bucket)) == ["w0", "w1", "w2", "w3"]
    assert len(blob_files(mount.store)) == 4 * 60
    sample = bucket / "w2" / "f9"
    expected = hashlib.sha256(b"w2-9").digest() * 10
    assert sample.read_bytes() == expected


def test_rename_edge_cases(bucket):
    (bucket / "a").write_bytes(b"a")
    (bucket / "b").write_bytes(b"b")
    os.rename(bucket / "a", bucket / "a")
    assert (bucket / "a").read_bytes() == b"a"
    with pytest.raises(FileExistsError):
        renameat2(bucket / "a", bucket / "b", RENAME_NOREPLACE)
    renameat2(bucket / "a", bucket / "c", RENAME_NOREPLACE)
    with pytest.raises(OSError) as caught:
        renameat2(bucket / "b", bucket / "c", RENAME_EXCHANGE)
    assert caught.value.errno == errno.EINVAL
    assert (bucket / "b").read_bytes() == b"b"
    assert (bucket / "c").read_bytes() == b"a"
    with pytest.raises(FileNotFoundError):
        os.rename(bucket / "missing", bucket / "d")


def test_huge_offsets_and_sizes_are_efbig_and_change_nothing(bucket):
    path = bucket / "f"
    path.write_bytes(b"keep")
    with pytest.raises(OSError) as caught:
        os.truncate(path, 6 << 40)
    assert caught.value.errno == errno.EFBIG
    with open(path, "r+b") as f, pytest.raises(OSError) as caught:
        os.pwrite(f.fileno(), b"x", 6 << 40)
    assert caught.value.errno == errno.EFBIG
    with pytest.raises(OSError) as caught:
        os.truncate(path, -1)
    assert caught.value.errno == errno.EINVAL
    assert path.read_bytes() == b"keep"
    # A write refused with EFBIG spoils the upload: close fails and commits nothing
    # (docs/semantics.md), not even the writes before it.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b"lost")
        with pytest.raises(OSError) as caught:
            os.pwrite(fd, b"x", 6 << 40)
        assert caught.value.errno == errno.EFBIG
    finally:
        with pytest.raises(OSError) as caught:
            os.close(fd)
    assert caught.value.errno == errno.EFBIG
    assert path.read_bytes() == b"keep"


def test_bad_xattrs_change_nothing(bucket):
    path = bucket / "f"
    path.write_bytes(b"x")
    ident = os.getxattr(path, "user.fsobj.id")
    for name in ("security.evil", "trusted.evil"):
        with pytest.raises(OSError) as caught:
            os.setxattr(path, name, b"1")
        assert caught.value.errno == errno.ENOTSUP
    with pytest.raises(OSError) as caught:
        os.removexattr(path, "user.not-there")
    assert caught.value.errno == errno.ENODATA
    with pytest.raises(PermissionError):
        os.removexattr(path, "user.fsobj.etag")
    assert os.listxattr(path) == []
    assert os.getxattr(path, "user.fsobj.id") == ident


def test_odd_but_valid_names_are_ordinary_keys(bucket):
    odd = [
        "line\nbreak",
        "tab\there",
        " leading space",
        "trailing space ",
        "-rf",
        "*",
        "ünïcødé ✓",
        "emoji 😀",
        "back\\slash",
        "quote'\"",
        "%41%20",
        "...",
    ]
    for name in odd:
        (bucket / name).write_text(name)
    assert sorted(os.listdir(bucket)) == sorted(odd)
    for name in odd:
        assert (bucket / name).read_text() == name
        assert os.getxattr(bucket / name, "user.fsobj.key") == name.encode()


def test_many_open_files_at_once(bucket):
    files = [open(bucket / f"open-{i}", "wb") for i in range(300)]  # noqa: SIM115
    try:
        for i, f in enumerate(files):
            f.write(f"file {i}".encode())
    finally:
        for f in files:
            f.close()
    readers = [open(bucket / f"open-{i}", "rb") for i in range(300)]  # noqa: SIM115
    try:
        assert [r.read() for r in readers] == [f"file {i}".encode() for i in range(300)]
    finally:
        for r in readers:
            r.close()


RECORDS = 1000  # each pwrite a request, while dozens of closes commit beside them


def test_a_writer_in_place_keeps_writing_while_the_others_close(bucket):
    path = bucket / "shared.db"
    path.write_bytes(b"")
    first = os.open(path, os.O_RDWR)  # holds the working copy; the next one follows it
    writer = os.open(path, os.O_RDWR)
    errors: list[OSError] = []

    def write_records() -> None:
        try:
            for i in range(RECORDS):
                os.pwrite(writer, b"%08d" % i, i * 8)
        except OSError as error:
            errors.append(error)

    thread = threading.Thread(target=write_records)
    thread.start()
    os.close(first)  # commits while the other writes, which takes the working copy over
    while thread.is_alive():  # others open and close beside it, each close a commit
        os.close(os.open(path, os.O_RDWR))
    thread.join()
    os.close(writer)
    assert not errors
    got, expected = path.read_bytes(), b"".join(b"%08d" % i for i in range(RECORDS))
    if got != expected:  # say where: a lost write, or a short file
        pairs = enumerate(zip(got, expected, strict=False))
        first = next((i for i, (a, b) in pairs if a != b), None)
        raise AssertionError(
            f"{len(got)} bytes, {len(expected)} expected; first difference at {first}:"
            f" {got[(first or 0) - 8 : (first or 0) + 16]!r}; the end: {got[-24:]!r}"
        )


@contextlib.contextmanager
def fuse_connections() -> Iterator[Path]:
    """The kernel's FUSE control filesystem, mounted for the while if it is not."""
    where = Path("/sys/fs/fuse/connections")
    mounts = Path("/proc/mounts").read_text().splitlines()
    mounted = any(line.split()[1] == str(where) for line in mounts)
    if not mounted:
        subprocess.run(["mount", "-t", "fusectl", "none", str(where)], check=True)
    try:
        yield where
    finally:
        if not mounted:
            subprocess.run(["umount", str(where)], check=True)


def test_a_connection_the_kernel_aborts_ends_the_daemon_cleanly(mount, bucket):
    """An abort through /sys/fs/fuse/connections (or `umount -f`) ends the connection
    under the daemon: it ends as at an unmount, commits what is open, and leaves the store
    clean."""
    (bucket / "kept").write_bytes(b"committed")
    writer = os.open(bucket / "open", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(writer, b"written before the abort")  # staged, not committed yet
    connection = os.minor(os.stat(mount.path).st_dev)
    with fuse_connections() as connections:
        (connections / str(connection) / "abort").write_text("1")
        assert mount.process is not None and mount.process.wait(timeout=60) == 0
    with contextlib.suppress(OSError):  # ENOTCONN: the connection is gone
        os.close(writer)
    log = mount.log.read_text()
    assert "Traceback" not in log and "unmounted" in log
    assert not is_mounted(mount.path)  # the dead mount the abort left went too
    mount.process = None
    mount.start()
    assert (bucket / "kept").read_bytes() == b"committed"
    assert (bucket / "open").read_bytes() == b"written before the abort"
