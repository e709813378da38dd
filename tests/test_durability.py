"""Checksums, fsck, garbage collection, recovery and faults of the store underneath."""

import errno
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import blobs_left, fsobj_cli, is_mounted, mounted_at, query_metadata


def blob_of(path: Path, store: Path) -> Path:
    object_id = os.getxattr(path, "user.fsobj.id").decode()
    return store / "blobs" / object_id[:2] / object_id


def damage(blob: Path, how: str) -> None:
    blob.chmod(0o600)
    if how == "flip":
        with open(blob, "r+b") as f:
            f.seek(1_500_000)
            byte = f.read(1)
            f.seek(1_500_000)
            f.write(bytes([byte[0] ^ 0x01]))
    elif how == "truncate":
        os.truncate(blob, 1000)
    else:
        blob.unlink()


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_damaged_blob_reads_fail_with_eio_and_a_log_line(mount, bucket, how):
    mount.expect_errors = True
    good = os.urandom(3_000_000)
    (bucket / "good").write_bytes(good)
    (bucket / "bad").write_bytes(os.urandom(3_000_000))
    blob = blob_of(bucket / "bad", mount.store)
    mount.restart()  # a fresh process and page cache: nothing verified or cached yet
    damage(blob, how)
    with pytest.raises(OSError) as caught:
        (bucket / "bad").read_bytes()
    assert caught.value.errno == errno.EIO
    assert (bucket / "good").read_bytes() == good
    lines = [line for line in mount.log_text().splitlines() if " ERROR " in line]
    assert any(blob.name in line and "(bad)" in line for line in lines), lines


def test_damage_in_a_small_cached_blob_is_caught_too(mount, bucket):
    # Small objects whose blob is in the page cache are read without a thread hop: the
    # checksum is verified on that path as well.
    mount.expect_errors = True
    (bucket / "small").write_bytes(b"s" * 5000)
    blob = blob_of(bucket / "small", mount.store)
    mount.restart()
    blob.chmod(0o600)
    with open(blob, "r+b") as f:  # leaves the damaged page in the page cache
        f.seek(4000)
        f.write(b"S")
    with pytest.raises(OSError) as caught:
        (bucket / "small").read_bytes()
    assert caught.value.errno == errno.EIO


def test_reads_before_the_damaged_chunk_still_work(mount, bucket):
    mount.expect_errors = True
    data = os.urandom(3 * (1 << 20))
    (bucket / "big").write_bytes(data)
    blob = blob_of(bucket / "big", mount.store)
    mount.restart()
    damage(blob, "flip")  # inside the second 1 MiB chunk
    with open(bucket / "big", "rb") as f:
        assert f.read(1 << 20) == data[: 1 << 20]
        with pytest.raises(OSError) as caught:
            f.read(1 << 20)
        assert caught.value.errno == errno.EIO


def fsck(store: Path, *flags: str):
    return fsobj_cli("fsck", "--store", str(store), *flags, check=False)


def test_fsck_of_a_clean_store_and_of_a_mounted_one(mount, bucket):
    (bucket / "f").write_bytes(b"x" * 5000)
    busy = fsck(mount.store)
    assert busy.returncode == 1 and "in use" in busy.stderr
    mount.stop()
    clean = fsck(mount.store, "--verify")
    assert clean.returncode == 0, clean.stdout
    assert clean.stdout.strip() == "store is clean"


def test_fsck_finds_and_repairs_damage_without_losing_data(mount, bucket):
    (bucket / "dir").mkdir()
    (bucket / "dir" / "flipped").write_bytes(os.urandom(2_000_000))
    (bucket / "missing").write_bytes(b"gone soon")
    (bucket / "fine").write_bytes(b"fine")
    flipped = blob_of(bucket / "dir" / "flipped", mount.store)
    missing = blob_of(bucket / "missing", mount.store)
    mount.stop()
    damage(flipped, "flip")
    damage(missing, "delete")
    orphan = mount.store / "blobs" / "00" / f"00{uuid.uuid4().hex[2:]}"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left by a crash")
    (mount.store / "staging" / "leftover").write_bytes(b"never committed")

    quick = fsck(mount.store)  # sizes only: the flipped blob passes
    assert quick.returncode == 1
    assert "blob" in quick.stdout and "is missing" in quick.stdout
    assert "fails its checksum" not in quick.stdout

    report = fsck(mount.store, "--verify")
    assert report.returncode == 1
    for expected in (
        "/test-bucket/missing",
        "is missing",
        "/test-bucket/dir/flipped",
        "fails its checksum",
        "1 blobs that no object names",
        "1 uncommitted writes left in staging",
    ):
        assert expected in report.stdout, report.stdout
    assert orphan.exists()  # nothing changes without --repair

    repaired = fsck(mount.store, "--verify", "--repair")
    assert repaired.returncode == 1
    assert "moved 2 damaged objects to bucket lost-and-found" in repaired.stdout
    assert not orphan.exists()
    assert os.listdir(mount.store / "staging") == []
    assert flipped.exists()  # the damaged blob is kept: it may be the last copy
    assert fsck(mount.store, "--verify").returncode == 0

    mount.start()
    lost = mount / "lost-and-found"
    names = sorted(os.listdir(lost))
    assert len(names) == 2 and names[0].endswith("-flipped") and names[1].endswith("-missing")
    assert os.getxattr(lost / names[0], "user.lost-from") == b"/test-bucket/dir/flipped"
    assert (bucket / "fine").read_bytes() == b"fine"
    assert sorted(os.listdir(bucket)) == ["dir", "fine"]


def test_gc_removes_unreferenced_blobs_but_never_those_in_use(mount, bucket):
    (bucket / "kept").write_bytes(b"committed")
    orphan = mount.store / "blobs" / "ff" / f"ff{uuid.uuid4().hex[2:]}"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"x" * 100_000)
    old = os.urandom(200_000)
    (bucket / "read-while-replaced").write_bytes(old)
    with open(bucket / "read-while-replaced", "rb") as reader:
        (bucket / "read-while-replaced").write_bytes(b"new" * 100_000)
        report = fsobj_cli("gc", str(mount.path)).stdout
        assert reader.read() == old
    assert "removed 1 unreferenced blobs (100000 bytes)" in report
    assert not orphan.exists()
    assert (bucket / "kept").read_bytes() == b"committed"
    mount.make_durable()  # the replaced blob goes once its replacement is durable
    assert blobs_left(mount.store, 2) == 2
    mount.stop()
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"again")
    assert "removed 1 unreferenced blobs" in fsobj_cli("gc", "--store", str(mount.store)).stdout
    assert fsck(mount.store, "--verify").returncode == 0


def test_gc_is_for_administrators(mount):
    from conftest import as_user

    assert as_user(1001, [["getxattr", str(mount.path), "user.fsobj.gc"]]) == ["EACCES"]


def crash_and_remount(mount, fd: int) -> None:
    """Kill the daemon while `fd`, a file of the mount, is open; then mount again."""
    mount.process.kill()
    mount.process.wait()
    with pytest.raises(OSError):
        os.close(fd)
    mount.stop()
    mount.start()


def test_crash_before_close_leaves_no_empty_object_behind(mount, bucket):
    (bucket / "old").write_bytes(b"old content")
    fd = os.open(bucket / "created-never-closed", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"lost with the crash")
    crash_and_remount(mount, fd)
    assert sorted(os.listdir(bucket)) == ["old"]
    assert (bucket / "old").read_bytes() == b"old content"
    assert "was not unmounted cleanly" in mount.log_text()
    # A new object's row is written with its first commit: there was none to remove.
    assert "whose writer died before close" not in mount.log_text()


def journals(store: Path) -> list[Path]:
    return [p for p in (store / "staging").iterdir() if p.name.startswith("journal-")]


def test_a_file_written_in_place_comes_back_from_a_crash_as_its_last_fsync_left_it(mount, bucket):
    """A database's file: its first two fsyncs commit it as a blob, the next ones sync a
    journal (service/journaled.py). After a crash, the file is exactly what the last
    fsync made durable: not what came after it."""
    mount.commit_rarely()  # nothing commits the journaled copy meanwhile
    path = bucket / "db"
    path.write_bytes(b"a" * 3000)
    fd = os.open(path, os.O_RDWR)
    os.pwrite(fd, b"B" * 100, 0)
    os.fsync(fd)
    os.pwrite(fd, b"C" * 100, 100)
    os.fsync(fd)
    assert journals(mount.store) == []  # both committed; the next are journaled
    os.ftruncate(fd, 2500)
    os.pwrite(fd, b"D" * 10, 2600)
    os.fsync(fd)
    os.pwrite(fd, b"F" * 10, 0)
    os.fsync(fd)
    os.pwrite(fd, b"E" * 100, 0)  # never synced
    assert len(journals(mount.store)) == 1
    crash_and_remount(mount, fd)
    synced = b"F" * 10 + b"B" * 90 + b"C" * 100 + b"a" * 2300 + bytes(100) + b"D" * 10
    assert path.read_bytes() == synced
    assert f"{bucket.name}/db: recovered what its last fsync made durable" in mount.log_text()
    assert journals(mount.store) == []


def test_whoever_opens_a_file_afresh_reads_what_its_writer_fsynced(mount, bucket):
    """A journaled fsync leaves the object's blob as it was: another process that opens
    the file, or a replacing writer, first has the working copy committed."""
    mount.commit_rarely()
    path = bucket / "db"
    path.write_bytes(b"a" * 100)
    fd = os.open(path, os.O_RDWR)
    try:
        for step in b"12345":
            os.pwrite(fd, bytes([step]) * 10, 0)
            os.fsync(fd)
            seen = subprocess.run(["cat", path], capture_output=True, check=True).stdout
            assert seen == bytes([step]) * 10 + b"a" * 90
        os.pwrite(fd, b"4" * 10, 0)
        os.fsync(fd)
        assert len(journals(mount.store)) == 1
        path.write_bytes(b"replaced")  # O_TRUNC, from this process: it works alone
        assert journals(mount.store) == []
    finally:
        os.close(fd)
    assert path.read_bytes() == b"replaced"


def unsynced_marks(store: Path) -> set[str]:
    """Objects whose blob the daemon has not synced yet (it reads the database meanwhile)."""
    return {
        name
        for (name,) in query_metadata(
            store,
            "SELECT name FROM entries WHERE unsynced > (SELECT synced_through FROM group_sync)",
        )
    }


def test_group_sync_makes_new_objects_durable(mount, bucket):
    mount.commit_rarely()
    (bucket / "new").write_bytes(b"n" * 100)
    (bucket / "big").write_bytes(b"b" * (2 << 20))  # past memory staging: a file, renamed
    assert unsynced_marks(mount.store) == {"new", "big"}
    with open(bucket / "big", "rb") as f:
        os.fsync(f.fileno())  # makes every commit so far durable, other objects' too
    assert unsynced_marks(mount.store) == set()
    (bucket / "later").write_bytes(b"l")
    (bucket / "new").write_bytes(b"rewritten")  # replaces a version: synced at close
    assert unsynced_marks(mount.store) == {"later"}
    mount.stop()
    assert unsynced_marks(mount.store) == set()


def test_new_object_whose_blob_a_power_loss_took_goes_back_to_not_existing(mount, bucket):
    mount.expect_errors = True
    mount.commit_rarely()
    (bucket / "old").write_bytes(b"durable version")
    with open(bucket / "old", "rb") as f:
        os.fsync(f.fileno())
    (bucket / "kept").write_bytes(b"k" * 5000)
    (bucket / "lost").write_bytes(b"l" * 5000)
    (bucket / "lost-big").write_bytes(b"L" * (3 << 20))  # staged in a file
    (bucket / "tmp").write_bytes(b"new version")
    os.rename(bucket / "tmp", bucket / "old")  # replacing: the new blob is synced first
    lost, replaced = blob_of(bucket / "lost", mount.store), blob_of(bucket / "old", mount.store)
    lost_big = blob_of(bucket / "lost-big", mount.store)
    mount.process.kill()
    mount.process.wait()
    mount.stop()
    # What a power loss leaves of a new file whose data was never written back.
    for blob in (lost, replaced, lost_big):
        blob.chmod(0o600)
        os.truncate(blob, 0)
    mount.start()
    assert sorted(os.listdir(bucket)) == ["kept", "old"]
    assert (bucket / "kept").read_bytes() == b"k" * 5000
    assert "new object lost: its blob" in mount.log_text()
    # A durable blob damaged later is reported, never dropped in silence.
    with pytest.raises(OSError) as caught:
        (bucket / "old").read_bytes()
    assert caught.value.errno == errno.EIO
    assert unsynced_marks(mount.store) == set()


def test_the_commit_interval_makes_new_objects_durable_unasked(mount, bucket):
    mount.options = (*mount.options, "--commit-interval", "0.2")
    mount.restart()
    assert "(durable every 0.2 s)" in mount.log_text()
    (bucket / "new").write_bytes(b"n" * 100)
    for _ in range(100):
        if not unsynced_marks(mount.store):
            break
        time.sleep(0.1)
    assert unsynced_marks(mount.store) == set()
    refused = fsobj_cli("mount", "--commit-interval", "0", str(mount.path), check=False)
    assert refused.returncode == 2 and "not a positive number of seconds" in refused.stderr


def test_corrupt_database_read_only_store_and_not_a_store_are_refused(tmp_path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "meta.sqlite3").write_bytes(b"this is not a database" * 100)
    result = fsobj_cli("mount", "--store", str(corrupt), str(mountpoint), check=False)
    assert result.returncode == 1
    assert "cannot open the metadata" in result.stderr and "Traceback" not in result.stderr
    assert not is_mounted(mountpoint)
    assert (corrupt / "meta.sqlite3").read_bytes() == b"this is not a database" * 100

    readonly = tmp_path / "readonly"
    readonly.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(readonly), str(readonly)], check=True)
    try:
        result = fsobj_cli("mount", "--store", str(readonly), str(mountpoint), check=False)
    finally:
        subprocess.run(["umount", str(readonly)], check=True)
    assert result.returncode == 1 and "not writable" in result.stderr
    assert not is_mounted(mountpoint)


@pytest.fixture
def small_store(tmp_path):
    """A store on a 12 MiB tmpfs of its own, unmounted afterwards."""
    disk = Path(tempfile.mkdtemp(prefix="fsobj-tmpfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk)], check=True)
    try:
        yield disk / "store"
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)
        disk.rmdir()


def test_disk_full_fails_cleanly_and_recovers(small_store, tmp_path):
    with mounted_at(small_store, tmp_path / "small.log") as mounted:
        bucket = mounted / "tiny"
        bucket.mkdir()
        first = os.urandom(3_000_000)
        (bucket / "precious").write_bytes(first)
        with pytest.raises(OSError) as caught, open(bucket / "precious", "wb") as f:
            for _ in range(20):
                f.write(os.urandom(1_000_000))
        assert caught.value.errno == errno.ENOSPC
        assert (bucket / "precious").read_bytes() == first
        with pytest.raises(OSError) as caught:
            (bucket / "filler").write_bytes(b"\0" * 20_000_000)
        assert caught.value.errno == errno.ENOSPC
        (bucket / "filler").unlink(missing_ok=True)
        (bucket / "after").write_bytes(b"space again")
        assert (bucket / "after").read_bytes() == b"space again"
        assert (bucket / "precious").read_bytes() == first
    assert fsck(small_store, "--verify").returncode == 0


def test_small_content_meets_a_full_disk_at_close(small_store, tmp_path):
    with mounted_at(small_store, tmp_path / "small.log") as mounted:
        bucket = mounted / "tiny"
        bucket.mkdir()
        (bucket / "kept").write_bytes(b"version 1")
        # Fill the disk with objects of shrinking sizes until less than 100 KB is left.
        for size in (1_000_000, 300_000, 100_000):
            with pytest.raises(OSError) as caught:
                for i in range(40):
                    (bucket / f"ballast-{size}-{i}").write_bytes(os.urandom(size))
            assert caught.value.errno == errno.ENOSPC
        # Small content is staged in memory: the write is accepted, the close reports it.
        f = open(bucket / "kept", "wb")  # noqa: SIM115 (its close is what is tested)
        f.write(os.urandom(700_000))
        f.flush()
        with pytest.raises(OSError) as caught:
            f.close()
        assert caught.value.errno == errno.ENOSPC
        assert (bucket / "kept").read_bytes() == b"version 1"
    assert fsck(small_store, "--verify").returncode == 0


def test_database_full_is_enospc_not_eio(small_store, tmp_path):
    with mounted_at(small_store, tmp_path / "small.log") as mounted:
        bucket = mounted / "names"
        bucket.mkdir()
        # Fill the disk with one big object, then grow the metadata until it hits the wall.
        with pytest.raises(OSError):
            (bucket / "ballast").write_bytes(b"\0" * 20_000_000)
        (bucket / "ballast").write_bytes(b"\0" * 11_000_000)
        seen = set()
        for i in range(5000):
            try:
                os.setxattr(bucket / "ballast", f"user.k{i % 20}", os.urandom(90))
                (bucket / f"dir-{i:05d}-{'x' * 200}").mkdir()
            except OSError as error:
                seen.add(error.errno)
                break
        assert seen == {errno.ENOSPC}
    conn = sqlite3.connect(small_store / "meta.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_fsck_shows_progress_on_a_terminal(mount, bucket):
    for i in range(5):
        (bucket / f"f{i}").write_bytes(os.urandom(10_000))
    mount.stop()
    command = f"{sys.executable} -m fsobj fsck --verify --store {mount.store}"
    on_tty = subprocess.run(
        ["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=120
    )
    assert on_tty.returncode == 0
    assert "verifying blobs: 100%" in on_tty.stdout and "5/5" in on_tty.stdout
    assert "verifying" not in fsck(mount.store, "--verify").stderr  # not on a pipe


def test_a_put_that_does_not_fit_leaves_nothing_and_the_store_goes_on(small_store, tmp_path):
    from s3_fixtures import S3Mount, free_port, wait_for_port

    port = free_port()
    with mounted_at(small_store, tmp_path / "small.log", ("--s3", f"127.0.0.1:{port}")) as mounted:
        wait_for_port(port)
        s3 = S3Mount(mounted, port)
        client = s3.client(0, retries={"max_attempts": 1})
        client.create_bucket(Bucket="tiny")
        client.put_object(Bucket="tiny", Key="precious", Body=b"p" * 1000)
        with pytest.raises(ClientError) as full:
            client.put_object(Bucket="tiny", Key="huge", Body=os.urandom(20 << 20))
        assert full.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert os.listdir(mounted / "tiny") == ["precious"]
        assert os.listdir(small_store / "staging") == []
        client.put_object(Bucket="tiny", Key="after", Body=b"a")
        assert (mounted / "tiny" / "precious").read_bytes() == b"p" * 1000
