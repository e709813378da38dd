"""Objects: immutable blobs plus mutable metadata, seen as files inside buckets."""

import contextlib
import errno
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import as_user, blob_files, blobs_left, query_metadata


def object_id(path) -> str:
    return os.getxattr(path, "user.fsobj.id").decode()


def test_write_read_and_system_metadata(bucket):
    data = os.urandom(300_000)
    (bucket / "photo.jpg").write_bytes(data)
    assert (bucket / "photo.jpg").read_bytes() == data
    assert os.stat(bucket / "photo.jpg").st_size == len(data)
    assert os.getxattr(bucket / "photo.jpg", "user.fsobj.etag").decode() == (
        hashlib.md5(data).hexdigest()
    )
    assert os.getxattr(bucket / "photo.jpg", "user.fsobj.content-type") == b"image/jpeg"
    assert os.getxattr(bucket / "photo.jpg", "user.fsobj.bucket") == b"test-bucket"
    assert os.getxattr(bucket / "photo.jpg", "user.fsobj.key") == b"photo.jpg"
    assert len(object_id(bucket / "photo.jpg")) == 36


def test_nested_keys_and_prefix_markers(bucket):
    (bucket / "a" / "b").mkdir(parents=True)
    (bucket / "a" / "b" / "c.txt").write_text("deep")
    (bucket / "empty-dir").mkdir()
    assert os.getxattr(bucket / "a" / "b" / "c.txt", "user.fsobj.key") == b"a/b/c.txt"
    assert os.getxattr(bucket / "a" / "b", "user.fsobj.key") == b"a/b/"
    assert sorted(os.listdir(bucket)) == ["a", "empty-dir"]
    with pytest.raises(OSError) as caught:
        (bucket / "a").rmdir()
    assert caught.value.errno == errno.ENOTEMPTY


def test_rewrite_makes_new_object_id_metadata_change_keeps_it(mount, bucket):
    mount.commit_rarely()
    path = bucket / "doc.txt"
    path.write_text("one")
    first = object_id(path)
    os.chmod(path, 0o600)
    os.utime(path, (1_000_000, 2_000_000))
    os.setxattr(path, "user.author", b"ada")
    assert object_id(path) == first
    st = os.stat(path)
    assert (st.st_mode & 0o777, st.st_mtime) == (0o600, 2_000_000)
    path.write_text("two")
    # The old blob waits until the change that unnamed it is durable.
    assert len(blob_files(mount.store)) == 2
    assert object_id(path) != first
    assert path.read_text() == "two"
    mount.make_durable()
    assert blobs_left(mount.store, 1) == 1


def test_append_random_write_and_truncate_copy_on_write(bucket):
    path = bucket / "log"
    path.write_bytes(b"0123456789")
    with open(path, "ab") as f:
        f.write(b"abc")
    assert path.read_bytes() == b"0123456789abc"
    with open(path, "r+b") as f:
        f.seek(2)
        f.write(b"XY")
    assert path.read_bytes() == b"01XY456789abc"
    os.truncate(path, 4)
    assert path.read_bytes() == b"01XY"
    with open(path, "r+b") as f:
        f.truncate(6)
    assert path.read_bytes() == b"01XY\0\0"
    assert os.getxattr(path, "user.fsobj.etag").decode() == hashlib.md5(b"01XY\0\0").hexdigest()


def test_size_and_mtime_follow_writes_and_are_current_right_after_close(bucket):
    # As on a local disk: tools like make and rsync compare mtimes right after a write
    # (on a private mount the kernel caches attributes; a commit must refresh them).
    path = bucket / "stamp"
    path.write_bytes(b"old")
    old = os.stat(path).st_mtime_ns
    time.sleep(0.05)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, b"new content")
        during = os.fstat(fd)
    finally:
        os.close(fd)
    after = os.stat(path)
    assert during.st_size == after.st_size == 11
    assert during.st_mtime_ns > old
    assert after.st_mtime_ns == during.st_mtime_ns
    assert after.st_ctime_ns >= after.st_mtime_ns  # the commit changed the object after that


def test_a_large_file_gets_its_md5_etag_after_the_commit(mount, bucket):
    """Content past what staging keeps in memory is committed without its MD5 (the etag
    is computed after the commit: service/etags.py): the daemon records it soon by
    itself, and the first request that needs it sooner gets it at once."""
    content = os.urandom(3 << 20)
    (bucket / "left").write_bytes(content)
    (bucket / "asked").write_bytes(content[::-1])
    md5 = hashlib.md5(content).hexdigest()
    assert os.getxattr(bucket / "asked", "user.fsobj.etag").decode() == (
        hashlib.md5(content[::-1]).hexdigest()
    )
    deadline = time.monotonic() + 60
    while query_metadata(mount.store, "SELECT etag FROM entries WHERE name = 'left'") != [(md5,)]:
        assert time.monotonic() < deadline, "the daemon never recorded the etag"
        time.sleep(0.05)
    assert os.getxattr(bucket / "left", "user.fsobj.etag").decode() == md5


def test_content_growing_past_the_memory_staging_limit(mount, bucket):
    # Small content is staged in memory, larger in a staging file: a write pattern that
    # crosses the limit (1 MiB) must read back, and commit, exactly as written.
    path = bucket / "growing"
    expected = bytearray()
    with open(path, "w+b") as f:
        for i in range(24):
            piece = bytes([65 + i]) * 100_000
            f.write(piece)
            expected += piece
        f.seek(500_000)
        f.write(b"middle")
        expected[500_000:500_006] = b"middle"
        f.flush()
        with open(path, "rb") as same_process:  # sees its own staged writes
            assert same_process.read() == expected
    assert path.read_bytes() == expected
    assert os.getxattr(path, "user.fsobj.etag").decode() == hashlib.md5(expected).hexdigest()
    assert os.listdir(mount.store / "staging") == []


@pytest.mark.parametrize("new_size", [300_000, 150_000], ids=["grown", "shrunk"])
def test_reader_keeps_the_whole_version_it_opened(bucket, new_size):
    path = bucket / "v"
    old = bytes(range(256)) * 800
    path.write_bytes(old)
    with open(path, "rb") as reader:
        assert reader.read(1000) == old[:1000]
        path.write_bytes(b"B" * new_size)
        assert reader.read() == old[1000:]
    assert path.read_bytes() == b"B" * new_size


def test_sequential_reader_of_a_large_object_reads_ahead_in_its_own_version(mount, bucket):
    path = bucket / "large"
    old = os.urandom(4 << 20)
    path.write_bytes(old)
    with open(path, "rb", buffering=0) as reader, open(path, "rb", buffering=0) as left:
        assert reader.read(1 << 20) == old[: 1 << 20]  # the next MiB is being read ahead
        assert left.read(1 << 20) == old[: 1 << 20]
        path.write_bytes(os.urandom(4 << 20))
        path.unlink()
        left.close()  # with its read ahead perhaps still running
        pieces = [reader.read(1 << 20) for _ in range(4)]
        assert b"".join(pieces) == old[1 << 20 :]
        reader.seek(100)  # not sequential: read directly, still the same version
        assert reader.read(1 << 20) == old[100 : 100 + (1 << 20)]
    assert not path.exists()
    mount.make_durable()
    assert blobs_left(mount.store, 0) == 0
    # Every descriptor on a blob, read aheads' own included, is closed in the end.
    for _ in range(50):
        held = [target for target in open_files(mount.process.pid) if "/blobs/" in target]
        if not held:
            break
        time.sleep(0.1)
    assert held == []


def open_files(pid: int) -> list[str]:
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            targets.append(os.readlink(fd))
    return targets


def test_reader_that_opened_before_a_rewrite_began_is_not_cut_or_padded(bucket):
    path = bucket / "v"
    old = os.urandom(200_000)
    path.write_bytes(old)
    with open(path, "rb") as reader, open(path, "r+b") as writer:
        writer.truncate(0)
        writer.write(b"x" * 10)
        assert reader.read() == old
        writer.write(b"y" * 400_000)
        reader.seek(0)
        assert reader.read() == old
    assert path.read_bytes() == b"x" * 10 + b"y" * 400_000


def md5_elsewhere(path) -> str:
    """The object's content as another process sees it (as an MD5)."""
    return as_user(0, [["md5", str(path)]])[0]


def test_reader_opening_during_a_rewrite_reads_the_whole_committed_version(bucket):
    path = bucket / "r"
    old = os.urandom(100_000)
    path.write_bytes(old)
    with open(path, "wb") as writer:
        writer.write(b"short")
        writer.flush()
        assert os.stat(path).st_size == 5  # the writer's view of its object
        assert md5_elsewhere(path) == hashlib.md5(old).hexdigest()
    assert path.read_bytes() == b"short"


def test_a_process_reads_its_own_uncommitted_writes_others_do_not(bucket):
    path = bucket / "pack"
    path.write_bytes(b"committed")
    with open(path, "r+b") as writer:
        writer.write(b"STAGED")
        writer.flush()  # to the mount, not committed: the descriptor is still open
        with open(path, "rb") as second:
            assert second.read() == b"STAGEDted"
        # another process sees the committed version only
        assert as_user(0, [["read", str(path)]]) == ["committed"]
        writer.write(b"!")
        writer.flush()
        with open(path, "rb") as third:
            follower = third.read(3)
            writer.close()
            assert follower + third.read() == b"STAGED!ed"
    assert path.read_bytes() == b"STAGED!ed"


def test_two_writers_that_replace_an_object_last_close_wins(bucket):
    path = bucket / "race"
    path.write_bytes(b"base")
    first = open(path, "wb")  # noqa: SIM115
    second = open(path, "wb")  # noqa: SIM115
    first.write(b"first writer")
    second.write(b"second writer")
    first.close()
    assert md5_elsewhere(path) == hashlib.md5(b"first writer").hexdigest()
    second.close()
    assert path.read_bytes() == b"second writer"


def test_writers_in_place_share_the_content_as_on_a_local_disk_readers_keep_theirs(bucket):
    path = bucket / "shared"
    path.write_bytes(b"base")
    reader = open(path, "rb")  # noqa: SIM115
    first = open(path, "r+b", buffering=0)  # noqa: SIM115
    second = open(path, "r+b", buffering=0)  # noqa: SIM115
    first.write(b"FIRST")
    second.seek(5)
    second.write(b"+second")
    first.seek(0)
    assert first.read() == b"FIRST+second"  # each writer reads what the other wrote
    assert md5_elsewhere(path) == hashlib.md5(b"base").hexdigest()  # nothing committed yet
    first.close()  # a close commits the content as it stands
    assert md5_elsewhere(path) == hashlib.md5(b"FIRST+second").hexdigest()
    second.write(b"!")
    second.close()
    assert path.read_bytes() == b"FIRST+second!"
    assert reader.read() == b"base"  # a reader keeps the version it opened
    reader.close()


def test_sqlite_in_wal_mode_shared_by_two_processes(bucket):
    database = str(bucket / "app.db")
    script = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "c.execute('INSERT INTO t VALUES (?)', (sys.argv[2],))\n"
        "c.commit()\n"
        "print(c.execute('SELECT count(*) FROM t').fetchone()[0])\n"
    )
    conn = sqlite3.connect(database)
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    conn.commit()
    for i in range(3):  # another process, while this connection stays open
        other = subprocess.run(
            [sys.executable, "-c", script, database, f"other {i}"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert other.stdout.strip() == str(1001 + i)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1001 + i,)
    conn.execute("INSERT INTO t VALUES ('mine')")
    conn.commit()
    assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    again = sqlite3.connect(database)
    assert again.execute("SELECT count(*) FROM t").fetchone() == (1004,)
    again.close()


def test_close_reports_commit_on_flush_each_dup(bucket):
    path = bucket / "dup"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"hello")
    other = os.dup(fd)
    os.close(other)  # a flush while the original is still open commits
    assert path.read_bytes() == b"hello"
    os.write(fd, b" world")
    os.close(fd)
    assert path.read_bytes() == b"hello world"


def test_unlinked_open_file_stays_readable_then_blob_goes(mount, bucket):
    path = bucket / "gone"
    path.write_bytes(b"x" * 10_000)
    with open(path, "rb") as f:
        path.unlink()
        assert not path.exists()
        assert f.read() == b"x" * 10_000
        assert os.fstat(f.fileno()).st_size == 10_000
    mount.make_durable()
    assert blobs_left(mount.store, 0) == 0


def test_rename_is_metadata_only_within_and_across_buckets(mount, bucket):
    other = mount / "other-bucket"
    other.mkdir()
    (bucket / "dir" / "sub").mkdir(parents=True)
    (bucket / "dir" / "sub" / "f").write_bytes(b"payload")
    ident = object_id(bucket / "dir" / "sub" / "f")
    blobs = blob_files(mount.store)
    os.rename(bucket / "dir" / "sub" / "f", bucket / "dir" / "g")
    assert object_id(bucket / "dir" / "g") == ident
    os.rename(bucket / "dir", other / "moved")
    moved = other / "moved" / "g"
    assert moved.read_bytes() == b"payload"
    assert object_id(moved) == ident
    assert os.getxattr(moved, "user.fsobj.bucket") == b"other-bucket"
    assert os.getxattr(moved, "user.fsobj.key") == b"moved/g"
    assert blob_files(mount.store) == blobs
    assert os.listdir(bucket) == []


def test_rename_replaces_and_refuses_what_posix_refuses(mount, bucket):
    (bucket / "a").write_bytes(b"a")
    (bucket / "b").write_bytes(b"b")
    os.rename(bucket / "a", bucket / "b")
    assert (bucket / "b").read_bytes() == b"a"
    mount.make_durable()
    assert blobs_left(mount.store, 1) == 1
    (bucket / "d" / "inner").mkdir(parents=True)
    with pytest.raises(OSError) as caught:
        os.rename(bucket / "d", bucket / "d" / "inner" / "x")
    assert caught.value.errno == errno.EINVAL
    (bucket / "full").mkdir()
    (bucket / "full" / "f").write_bytes(b"")
    with pytest.raises(OSError) as caught:
        os.rename(bucket / "d", bucket / "full")
    assert caught.value.errno == errno.ENOTEMPTY
    with pytest.raises(IsADirectoryError):
        os.rename(bucket / "b", bucket / "d")
    with pytest.raises(NotADirectoryError):
        os.rename(bucket / "d", bucket / "b")
    assert (bucket / "b").read_bytes() == b"a"


def test_mv_of_directory_tree_with_shell(mount, bucket):
    (bucket / "src" / "x").mkdir(parents=True)
    for i in range(20):
        (bucket / "src" / "x" / f"f{i}").write_text(str(i))
    (mount / "dest").mkdir()
    subprocess.run(["mv", str(bucket / "src"), str(mount / "dest" / "tree")], check=True)
    assert sorted(os.listdir(mount / "dest" / "tree" / "x")) == sorted(f"f{i}" for i in range(20))
    assert (mount / "dest" / "tree" / "x" / "f7").read_text() == "7"


def test_directory_times_follow_changes_to_its_entries(bucket):
    (bucket / "d").mkdir()
    os.utime(bucket / "d", (1_000, 1_000))
    (bucket / "d" / "f").write_bytes(b"x")
    created = os.stat(bucket / "d").st_mtime
    assert created > 1_000
    os.utime(bucket / "d", (1_000, 1_000))
    os.rename(bucket / "d" / "f", bucket / "g")
    assert os.stat(bucket / "d").st_mtime > 1_000
    os.utime(bucket / "d", (1_000, 1_000))
    (bucket / "d" / "h").write_bytes(b"")
    os.utime(bucket / "d", (1_000, 1_000))
    (bucket / "d" / "h").unlink()
    assert os.stat(bucket / "d").st_mtime > 1_000


def test_symlinks_and_hard_links_to_them(bucket):
    (bucket / "target.txt").write_text("t")
    os.symlink("target.txt", bucket / "link")
    assert os.readlink(bucket / "link") == "target.txt"
    assert (bucket / "link").read_text() == "t"
    assert os.lstat(bucket / "link").st_size == len("target.txt")
    os.link(bucket / "link", bucket / "hard", follow_symlinks=False)  # the symlink itself
    assert os.readlink(bucket / "hard") == "target.txt"
    assert os.lstat(bucket / "hard").st_ino == os.lstat(bucket / "link").st_ino
    assert os.lstat(bucket / "hard").st_nlink == 2


def test_ls_l_shows_sizes_times_modes(bucket):
    (bucket / "f").write_bytes(b"12345")
    os.chmod(bucket / "f", 0o640)
    os.utime(bucket / "f", (1_600_000_000, 1_600_000_000))
    out = subprocess.run(
        ["ls", "-l", "--time-style=+%s", str(bucket)], check=True, capture_output=True, text=True
    ).stdout
    line = next(line for line in out.splitlines() if line.endswith(" f"))
    assert line.startswith("-rw-r-----")
    assert " 5 1600000000 f" in line


def test_user_metadata_as_xattrs(bucket):
    path = bucket / "m"
    path.write_bytes(b"data")
    os.setxattr(path, "user.color", b"blue")
    os.setxattr(path, "user.owner-team", b"storage")
    assert sorted(os.listxattr(path)) == ["user.color", "user.owner-team"]
    assert os.getxattr(path, "user.color") == b"blue"
    os.removexattr(path, "user.color")
    assert os.listxattr(path) == ["user.owner-team"]
    with pytest.raises(OSError) as caught:
        os.getxattr(path, "user.color")
    assert caught.value.errno == errno.ENODATA


def test_user_metadata_limited_to_2_kib(bucket):
    path = bucket / "m"
    path.write_bytes(b"")
    os.setxattr(path, "user.a", b"x" * 2000)
    with pytest.raises(OSError) as caught:
        os.setxattr(path, "user.b", b"y" * 100)
    assert caught.value.errno == errno.E2BIG
    assert os.listxattr(path) == ["user.a"]


def test_system_metadata_is_read_only_except_content_type(bucket):
    path = bucket / "report.bin"
    path.write_bytes(b"%PDF")
    ident = object_id(path)
    for name in ("user.fsobj.id", "user.fsobj.etag", "user.fsobj.bucket", "user.fsobj.key"):
        with pytest.raises(PermissionError):
            os.setxattr(path, name, b"forged")
    with pytest.raises(OSError) as caught:
        os.setxattr(path, "trusted.x", b"1")
    assert caught.value.errno == errno.ENOTSUP
    os.setxattr(path, "user.fsobj.content-type", b"application/pdf")
    assert os.getxattr(path, "user.fsobj.content-type") == b"application/pdf"
    assert object_id(path) == ident
    path.write_bytes(b"%PDF-1.7")  # a rewrite keeps the content type that was set
    assert os.getxattr(path, "user.fsobj.content-type") == b"application/pdf"


def test_key_and_component_length_limits(bucket):
    with pytest.raises(OSError) as caught:
        (bucket / ("n" * 256)).write_bytes(b"")
    assert caught.value.errno == errno.ENAMETOOLONG
    deep = bucket
    for i in range(4):
        deep = deep / (f"{i}" * 250)
        deep.mkdir()
    with pytest.raises(OSError) as caught:
        (deep / ("z" * 30)).write_bytes(b"")  # 4 * 251 + 30 > 1024 bytes
    assert caught.value.errno == errno.ENAMETOOLONG
    (deep / ("z" * 20)).write_bytes(b"ok")  # exactly 1024 bytes
    with pytest.raises(OSError) as caught:
        os.rename(bucket / ("0" * 250), bucket / ("9" * 255))
    assert caught.value.errno == errno.ENAMETOOLONG


def test_invalid_utf8_names_are_refused(bucket):
    with pytest.raises(OSError) as caught:
        open(os.path.join(os.fsencode(bucket), b"bad\xff"), "wb").close()
    assert caught.value.errno == errno.EINVAL
    assert os.listdir(bucket) == []


def test_df_reports_what_the_store_holds_and_the_room_left(mount, bucket):
    (bucket / "f").write_bytes(b"x" * 10_000)
    fs, ours = os.statvfs(mount.store), os.statvfs(mount.path)
    used = (ours.f_blocks - ours.f_bfree) * ours.f_frsize
    assert used == -(-10_000 // ours.f_frsize) * ours.f_frsize
    assert ours.f_files - ours.f_ffree == 1
    # The room left is the disk's, which other tests' writes move a little meanwhile.
    assert abs(ours.f_bavail * ours.f_frsize - fs.f_bavail * fs.f_frsize) < 1 << 30
    assert ours.f_namemax == 255


def test_everything_survives_remount(mount, bucket):
    data = os.urandom(100_000)
    (bucket / "keep" / "me").mkdir(parents=True)
    (bucket / "keep" / "me" / "f").write_bytes(data)
    os.setxattr(bucket / "keep" / "me" / "f", "user.k", b"v")
    os.symlink("me/f", bucket / "keep" / "ln")
    os.chmod(bucket / "keep" / "me" / "f", 0o604)
    ident = object_id(bucket / "keep" / "me" / "f")
    (bucket / "empty").mkdir()
    # Owner and mode set on the open descriptor of a new object, before its first commit
    # (as tar does), are recorded with that commit.
    fd = os.open(bucket / "tarred", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    os.write(fd, b"from an archive")
    os.fchown(fd, 1234, 5678)
    os.fchmod(fd, 0o640)
    os.close(fd)
    mount.restart()
    tarred = os.stat(bucket / "tarred")
    assert (tarred.st_uid, tarred.st_gid, tarred.st_mode & 0o777) == (1234, 5678, 0o640)
    assert (bucket / "tarred").read_bytes() == b"from an archive"
    f = bucket / "keep" / "me" / "f"
    assert f.read_bytes() == data
    assert object_id(f) == ident
    assert os.getxattr(f, "user.k") == b"v"
    assert os.stat(f).st_mode & 0o777 == 0o604
    assert os.readlink(bucket / "keep" / "ln") == "me/f"
    assert sorted(os.listdir(bucket)) == ["empty", "keep", "tarred"]


def test_fsync_and_sync(bucket):
    with open(bucket / "durable", "wb") as f:
        f.write(b"important")
        f.flush()
        os.fsync(f.fileno())
        f.write(b"!")
    subprocess.run(["sync"], check=True)
    assert (bucket / "durable").read_bytes() == b"important!"


def test_empty_object_and_zero_byte_create(bucket):
    (bucket / "empty").touch()
    assert (bucket / "empty").read_bytes() == b""
    assert os.getxattr(bucket / "empty", "user.fsobj.etag").decode() == hashlib.md5().hexdigest()
    os.mknod(bucket / "node")
    assert (bucket / "node").read_bytes() == b""


def test_st_blocks_is_what_an_object_occupies_holes_take_none(bucket):
    sparse, full = bucket / "sparse", bucket / "full"
    sparse.write_bytes(b"")
    os.truncate(sparse, 64 << 20)
    with open(sparse, "r+b") as f:
        f.seek(32 << 20)
        f.write(b"middle")
    full.write_bytes(os.urandom(2 << 20))
    assert os.stat(sparse).st_size == 64 << 20
    assert os.stat(sparse).st_blocks * 512 < 1 << 20
    assert os.stat(full).st_blocks * 512 >= 2 << 20
    du = subprocess.run(["du", "-k", str(sparse)], capture_output=True, text=True, check=True)
    assert int(du.stdout.split()[0]) < 1024
    with open(sparse, "rb") as f:
        f.seek(32 << 20)
        assert f.read(6) == b"middle"


def test_shared_mappings_of_writers_work_readers_map_privately(bucket):
    import mmap

    path = bucket / "mapped"
    path.write_bytes(b"mapped bytes" * 1000)
    with open(path, "rb") as f:
        private = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        assert private[:12] == b"mapped bytes"
        private.close()
        with pytest.raises(OSError) as caught:  # a reader reads its version: direct I/O
            mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        assert caught.value.errno == errno.ENODEV
    with open(path, "r+b") as f:
        shared = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED)
        shared[:6] = b"MAPPED"
        shared.flush()
        with open(path, "r+b") as other:
            assert other.read(12) == b"MAPPED bytes"
        shared.close()
    assert path.read_bytes()[:24] == b"MAPPED bytesmapped bytes"


def test_a_write_only_writer_in_place_reaches_the_pages_other_writers_map(bucket):
    """A write-only descriptor writes past the page cache (direct I/O); what the others
    of the working copy read, through the cache or a shared mapping, is what it wrote."""
    import mmap

    path = bucket / "db"
    path.write_bytes(b"a" * 8192)
    both = os.open(path, os.O_RDWR)
    write_only = os.open(path, os.O_WRONLY)  # no O_TRUNC: in place, the same working copy
    try:
        assert os.pread(both, 8, 0) == b"aaaaaaaa"  # in the page cache now
        shared = mmap.mmap(both, 8192, flags=mmap.MAP_SHARED)
        assert shared[:8] == b"aaaaaaaa"
        os.pwrite(write_only, b"BBBB", 0)
        assert os.pread(both, 8, 0) == b"BBBBaaaa"
        assert shared[:8] == b"BBBBaaaa"
        os.pwrite(write_only, b"CCCC", 4096)
        assert shared[4096:4104] == b"CCCCaaaa"
        shared[8:12] = b"MMMM"  # and the other way round
        shared.flush()
        shared.close()
        os.pwrite(write_only, b"!", 8191)
    finally:
        os.close(both)
        os.close(write_only)
    content = path.read_bytes()
    assert content[:12] == b"BBBBaaaaMMMM" and content[4096:4100] == b"CCCC"
    assert content[-2:] == b"a!" and len(content) == 8192


def test_fallocate_is_refused_after_the_open_made_the_file(bucket):
    # pyfuse3 has no fallocate handler: the kernel answers EOPNOTSUPP (docs/semantics.md)
    made = subprocess.run(["fallocate", "-l", "1M", str(bucket / "f")], capture_output=True)
    assert made.returncode != 0 and b"not supported" in made.stderr
    assert (bucket / "f").stat().st_size == 0
    with open(bucket / "g", "wb") as f:  # glibc's posix_fallocate then writes instead
        os.posix_fallocate(f.fileno(), 0, 3 << 20)
    assert (bucket / "g").read_bytes() == bytes(3 << 20)
