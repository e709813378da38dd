"""The metadata store and the data store on their own, without FUSE."""

import errno
import hashlib
import os
import re
import sqlite3
import threading
import time
import uuid
import zlib
from pathlib import Path

import pytest
import trio
import trio.testing
import trio_asyncio
from conftest import a_commit, metadata_store, new_entry, reads_without_waiting

from fsobj.datastore import journal
from fsobj.datastore.blob_file import chunk_sums
from fsobj.datastore.crc import crc32
from fsobj.datastore.staging import Digest, Staging
from fsobj.datastore.store import CHUNK, DataStore, new_object_id
from fsobj.metadata import schema, transactions
from fsobj.metadata.sqlite import FOLD_EVERY, SQLITE, SqliteConnection
from fsobj.metadata.store import open_metadata_store
from fsobj.refusals import Reason, Refused


@pytest.fixture(params=["sqlite", "postgresql"])
async def meta(request, tmp_path):
    """A metadata store on each database it runs on."""
    if request.param == "sqlite":
        where = tmp_path / "meta.sqlite3"
    else:
        request.getfixturevalue("pg_password")
        where = request.getfixturevalue("pg_cluster").new_database()
    async with metadata_store(where) as store:
        yield store


def test_the_crc_of_blobs_is_zlibs_crc32():
    """Every checksum stored so far is zlib's CRC-32: the faster function that computes
    them now (datastore/crc.py, zlib-ng) must give the same, whatever the content's
    length (the last chunk of a blob is shorter), from a running value, and on views."""
    content = os.urandom(CHUNK + 4099)
    for length in (0, 1, 15, 16, 63, 64, 4096, 65537, CHUNK, len(content)):
        piece = content[:length]
        assert crc32(piece) == zlib.crc32(piece), length
        assert crc32(memoryview(piece), 0x1234ABCD) == zlib.crc32(piece, 0x1234ABCD), length
    assert crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value


def sqlite_only(meta) -> None:
    """For tests of how the store uses SQLite itself (its query plans, pragmas, tracing)."""
    if meta.dialect.name != "sqlite":
        pytest.skip("about SQLite's own workings")


async def test_insert_lookup_move_delete(meta):
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "b", "bucket"), bucket_owner=7)
    obj = await meta.insert(new_entry(bucket.inode, "k"))
    assert (await meta.lookup(bucket.inode, "k")) is obj
    assert [b.name for b in await meta.buckets()] == ["b"]
    assert (await meta.buckets())[0].owner_uid == 7
    await meta.move(obj, bucket.inode, "k2", time.time_ns(), None)
    assert await meta.lookup(bucket.inode, "k") is None
    assert (await meta.lookup(bucket.inode, "k2")).inode == obj.inode
    await meta.delete(obj, time.time_ns())
    assert await meta.get(obj.inode) is None
    assert not await meta.has_children(bucket.inode)


async def test_inodes_are_never_reused(meta):
    first = await meta.insert(new_entry(schema.ROOT_INODE, "aaa", "bucket"))
    await meta.delete(first, time.time_ns())
    second = await meta.insert(new_entry(schema.ROOT_INODE, "aaa", "bucket"))
    assert second.inode > first.inode


async def test_inodes_are_never_reused_across_reopen(tmp_path):
    async with trio_asyncio.open_loop():
        store = await open_metadata_store(tmp_path / "meta.sqlite3")
        gone = await store.insert(new_entry(schema.ROOT_INODE, "aaa", "bucket"))
        await store.delete(gone, time.time_ns())
        await store.close()
        store = await open_metadata_store(tmp_path / "meta.sqlite3")
        assert (
            await store.insert(new_entry(schema.ROOT_INODE, "bbb", "bucket"))
        ).inode > gone.inode
        await store.close()


async def test_a_new_object_row_is_written_with_its_first_change(tmp_path):
    path = tmp_path / "meta.sqlite3"

    def rows() -> list[str]:
        with sqlite3.connect(path) as conn:
            return [r[0] for r in conn.execute("SELECT name FROM entries WHERE kind = 'object'")]

    async with trio_asyncio.open_loop():
        meta = await open_metadata_store(path)
        bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
        made = [await meta.insert(new_entry(bucket.inode, n), deferred=True) for n in "abcd"]
        assert rows() == []
        assert await meta.lookup(bucket.inode, "a") is made[0]
        with pytest.raises(Refused) as exists:
            await meta.insert(new_entry(bucket.inode, "a"), deferred=True)
        assert exists.value.reason is Reason.EXISTS
        await meta.update(made[0], mode=0o600)  # before its first commit: in memory only
        assert rows() == []
        with pytest.raises(sqlite3.OperationalError):  # a failed transaction writes no row...
            await meta._writing(
                [made[0]], transactions.update_columns, ("inode", made[0].inode), {"x": 1}
            )
        await meta.commit_many([(made[0], a_commit(new_object_id(), 5))])  # ...the next does
        await meta.move(made[1], bucket.inode, "b2", time.time_ns(), None)
        await meta.set_user_metadata(made[2].inode, "k", b"v")  # in memory too...
        await meta.delete(made[3], time.time_ns())
        assert sorted(rows()) == ["a", "b2"]
        await meta.commit_many([(made[2], a_commit(new_object_id()))])  # ...with the row
        assert sorted(rows()) == ["a", "b2", "c"]
        late = await meta.insert(new_entry(bucket.inode, "e"), deferred=True)
        assert [e.name for e in await meta.children(bucket.inode, 0, 10)] == ["a", "b2", "c", "e"]
        assert late.inode > made[3].inode
        await meta.close()
        meta = await open_metadata_store(path)
        assert (await meta.lookup(bucket.inode, "a")).size == 5
        assert (await meta.lookup(bucket.inode, "a")).mode == 0o600
        assert await meta.user_metadata(made[2].inode) == {"k": b"v"}
        # The others were never committed (no blob): recovery removes such rows.
        assert len(await meta.check()) == 2
        assert sorted(await meta.remove_pending_objects()) == ["b2", "e"]
        await meta.close()


async def test_children_pages_in_inode_order(meta):
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "b", "bucket"))
    made = [(await meta.insert(new_entry(bucket.inode, f"o{i}"))).inode for i in range(25)]
    seen, after = [], 0
    while page := await meta.children(bucket.inode, after, 10):
        seen += [e.inode for e in page]
        after = page[-1].inode
    assert seen == made


async def test_subtree_key_bytes(meta):
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "b", "bucket"))
    d = await meta.insert(new_entry(bucket.inode, "dir", "dir"))
    sub = await meta.insert(new_entry(d.inode, "sub", "dir"))
    await meta.insert(new_entry(sub.inode, "file.txt"))
    assert await meta.subtree_key_bytes(d.inode) == len("/sub/file.txt")


async def test_user_metadata_round_trip_and_cascade(meta):
    obj = await meta.insert(new_entry(schema.ROOT_INODE, "x"))
    await meta.set_user_metadata(obj.inode, "color", b"red")
    assert await meta.user_metadata(obj.inode) == {"color": b"red"}
    await meta.delete(obj, time.time_ns())
    assert await meta.user_metadata(obj.inode) == {}


async def test_cache_is_written_through(tmp_path):
    async with trio_asyncio.open_loop():
        meta = await open_metadata_store(tmp_path / "m.sqlite3")
        obj = await meta.insert(new_entry(schema.ROOT_INODE, "x"))
        await meta.update(obj, size=42, etag="e")
        await meta.close()
        reopened = await open_metadata_store(tmp_path / "m.sqlite3")
        found = await reopened.get(obj.inode)
        await reopened.close()
    assert (found.size, found.etag) == (42, "e")


def test_migrations_bring_a_new_database_to_the_current_version(tmp_path):
    conn = sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None)
    assert schema.migrate(conn) == 0
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert schema.migrate(conn) == schema.SCHEMA_VERSION
    root = conn.execute("SELECT kind FROM entries WHERE inode = 1").fetchone()
    assert root == ("root",)


def test_the_table_made_anew_for_device_nodes_keeps_rows_indexes_and_triggers(
    tmp_path, monkeypatch
):
    """Migration 8 makes `entries` anew: what a store at version 7 held stays, and so do
    the indexes and the triggers that went with the old table."""
    conn = sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 7)
    schema.migrate(conn)
    blob = uuid.uuid4().bytes
    conn.execute(
        "INSERT INTO entries (parent, name, kind, mode, uid, gid, atime_ns, mtime_ns,"
        " ctime_ns, object_id, size, blocks) VALUES (1, 'obj', 'object', 420, 0, 0, 1, 2, 3,"
        " ?, 5, 8)",
        (blob,),
    )
    conn.execute("INSERT INTO blob_checksums (object_id, checksums) VALUES (?, x'00')", (blob,))
    before = conn.execute("SELECT * FROM entries ORDER BY inode").fetchall()
    highest = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
    monkeypatch.undo()
    assert schema.migrate(conn) == 7
    after = conn.execute("SELECT * FROM entries ORDER BY inode").fetchall()
    width = len(before[0])  # then rdev, 0 for all (and the columns of later migrations)
    assert [row[:width] for row in after] == before and {row[width] for row in after} == {0}
    assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone() == (
        highest
    )
    made = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE sql NOT NULL")}
    assert {"entries_by_object", "entries_unsynced"} <= made
    assert "entries_by_parent" not in made  # migration 12: the unique index serves for it
    assert {"entries_in_key_order", "blob_unnamed_by_delete", "blob_unnamed_by_update"} <= made
    conn.execute("DELETE FROM entries WHERE name = 'obj'")
    assert conn.execute("SELECT count(*) FROM blob_checksums").fetchone() == (0,)


def test_newer_schema_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    with pytest.raises(schema.SchemaError, match="newer"):
        schema.migrate(conn)


async def test_staging_commits_to_an_immutable_blob_with_md5(tmp_path):
    data = DataStore(tmp_path)
    staging = await data.stage(None)
    staging.write(0, b"hello ")
    staging.write(6, b"world")
    object_id = new_object_id()
    size, etag, checksums, _ = await data.commit(staging, object_id)
    path = data.blob_path(object_id)
    assert path.read_bytes() == b"hello world"
    assert (size, etag) == (11, hashlib.md5(b"hello world").hexdigest())
    assert list(chunk_sums(checksums)) == [zlib.crc32(b"hello world")]
    assert path.relative_to(tmp_path).parts == ("blobs", object_id[:2], object_id)
    assert os.stat(path).st_mode & 0o777 == 0o400
    assert list((tmp_path / "staging").iterdir()) == []


def test_blobs_of_a_store_made_before_the_shallow_layout_are_moved_once(tmp_path):
    ids = [new_object_id() for _ in range(3)]
    for object_id in ids:  # the layout before: blobs/ab/cd/UUID
        old = tmp_path / "blobs" / object_id[:2] / object_id[2:4] / object_id
        old.parent.mkdir(parents=True, exist_ok=True)
        old.write_text(object_id)
    data = DataStore(tmp_path)
    assert sorted(b for batch in data.blob_batches() for b in batch) == sorted(ids)
    for object_id in ids:
        assert data.blob_path(object_id).read_text() == object_id
    assert len(list((tmp_path / "blobs").iterdir())) == 256
    assert (tmp_path / "layout").read_text() == "blobs/ab/UUID\n"
    assert sorted(b for batch in DataStore(tmp_path).blob_batches() for b in batch) == sorted(
        ids
    )  # nothing moves again


async def test_staged_content_moves_from_memory_to_a_file_unchanged(tmp_path):
    data = DataStore(tmp_path)
    staging = await data.stage(None)
    assert staging.memory is not None and staging.path is None
    staging.write(0, b"a" * 1000)
    staging.write(2000, b"b" * 10)  # a hole, then a truncate inside the content
    staging.truncate(1500)
    staging.write(1500, b"c" * 5)
    expected = b"a" * 1000 + bytes(500) + b"c" * 5
    staging.spill(data.staging_path())
    assert staging.memory is None and staging.path.read_bytes() == expected
    staging.write(len(expected), b"d")
    object_id = new_object_id()
    size, etag, _, _ = await data.commit(staging, object_id)
    assert data.blob_path(object_id).read_bytes() == expected + b"d"
    assert (size, etag) == (len(expected) + 1, hashlib.md5(expected + b"d").hexdigest())
    assert list((tmp_path / "staging").iterdir()) == []


async def test_copy_on_write_and_rehash_after_random_writes(tmp_path):
    data = DataStore(tmp_path)
    first = await data.stage(None)
    first.write(0, b"0123456789")
    object_id = new_object_id()
    await data.commit(first, object_id)
    blob = data.open_blob(object_id, 10)
    try:
        copy = await data.stage(blob)
    finally:
        blob.close()
    copy.write(3, b"abc")
    copy.truncate(8)
    new_id = new_object_id()
    size, etag, checksums, _ = await data.commit(copy, new_id)
    assert data.blob_path(object_id).read_bytes() == b"0123456789"
    assert data.blob_path(new_id).read_bytes() == b"012abc67"
    assert (size, etag) == (8, hashlib.md5(b"012abc67").hexdigest())
    assert list(chunk_sums(checksums)) == [zlib.crc32(b"012abc67")]


async def test_writes_handed_over_land_in_order_and_a_failure_fails_what_follows(tmp_path):
    """A staging file's writes are written behind by a thread of their own: every other
    call sees them all, in the order given; one that fails spoils what follows."""
    data = DataStore(tmp_path)
    staging = await data.stage(None, md5=False)
    staging.spill(data.staging_path())
    pieces = [os.urandom(CHUNK) for _ in range(10)]  # more than one turn of its thread
    for index, piece in enumerate(pieces):
        assert staging.write_behind(index * CHUNK, piece) == CHUNK
    staging.write_behind(CHUNK + 5, b"over")  # after the piece it overwrites, as given
    assert staging.size == 10 * CHUNK
    expected = bytearray(b"".join(pieces))
    expected[CHUNK + 5 : CHUNK + 9] = b"over"
    assert staging.read(CHUNK, 16) == bytes(expected[CHUNK : CHUNK + 16])
    staging.write_behind(10 * CHUNK, b"tail")
    staging.truncate(10 * CHUNK + 2)
    expected += b"ta"
    object_id = new_object_id()
    size, etag, checksums, _ = await data.commit(staging, object_id)
    assert data.blob_path(object_id).read_bytes() == expected and size == len(expected)
    sums = [zlib.crc32(expected[i : i + CHUNK]) for i in range(0, len(expected), CHUNK)]
    assert list(chunk_sums(checksums)) == sums
    assert etag is None  # staged without MD5: computed after the commit

    full = Staging(tmp_path / "full", os.open("/dev/full", os.O_WRONLY))
    full.write_behind(0, b"x" * CHUNK)  # accepted: it fails in the writing thread
    with pytest.raises(OSError) as failed:
        full.settle()
    assert failed.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        full.write_behind(CHUNK, b"y")
    with pytest.raises(OSError):
        full.digests()
    full.close()
    assert full.fd == -1


async def test_a_staging_file_is_read_on_the_loop_only_once_its_writes_are_written(
    tmp_path, monkeypatch
):
    """A small read of a staging file is served on the loop (the hop to a thread costs
    more); while writes handed over are still to be written, or one failed, the loop's
    read says it would wait, and the read in a thread waits or fails."""
    from fsobj.datastore import staging as staging_module

    if not reads_without_waiting(tmp_path):
        pytest.skip("this filesystem cannot say what is in the page cache (RWF_NOWAIT)")
    data = DataStore(tmp_path)
    staging = await data.stage(None, md5=False)
    staging.spill(data.staging_path())
    staging.write(0, b"written")
    assert staging.read_cached(0, 7) == b"written"
    held: list = []
    monkeypatch.setattr(staging_module._writers, "submit", held.append)
    staging.write_behind(0, b"WRITTEN")  # handed over, its thread not run yet
    with pytest.raises(BlockingIOError):
        staging.read_cached(0, 7)
    held.pop()()  # the thread's turn
    assert staging.read_cached(0, 7) == b"WRITTEN"
    staging.close()

    full = Staging(tmp_path / "full", os.open("/dev/full", os.O_RDWR))
    full.write_behind(0, b"x")
    held.pop()()  # fails: ENOSPC
    with pytest.raises(BlockingIOError):
        full.read_cached(0, 1)
    with pytest.raises(OSError) as failed:
        full.read(0, 1)
    assert failed.value.errno == errno.ENOSPC
    full.close()
    memory = await data.stage(None, md5=False)
    memory.write(3, b"abc")
    assert memory.read_cached(0, 10) == b"\0\0\0abc"


async def test_a_copy_staged_from_a_blob_recomputes_only_the_chunks_it_changed(tmp_path):
    """A writer in place (a database) commits at every fsync: the chunks it left alone
    keep the checksums recorded for its blob; those it wrote, truncated or added are
    computed anew."""
    data = DataStore(tmp_path)
    original = os.urandom(3 * CHUNK + 100)
    first = await data.stage(None)
    first.write(0, original)
    object_id = new_object_id()
    _, _, recorded, _ = await data.commit(first, object_id)
    blob = data.open_blob(object_id, len(original))
    try:
        copy = await data.stage(blob, md5=False, checksums=recorded)
    finally:
        blob.close()
    os.pwrite(copy.fd, b"unseen", 10)  # behind its back: chunk 0 is not read again
    copy.write(CHUNK + 7, b"changed")
    copy.truncate(3 * CHUNK + 50)  # the last chunk shrinks
    copy.write(4 * CHUNK, b"past the end")  # a hole, then a new chunk
    expected = bytearray(original[: 3 * CHUNK + 50])
    expected[CHUNK + 7 : CHUNK + 14] = b"changed"
    expected += bytes(4 * CHUNK - len(expected)) + b"past the end"
    _, _, checksums, _ = await data.commit(copy, new_object_id())
    sums = [zlib.crc32(expected[i : i + CHUNK]) for i in range(0, len(expected), CHUNK)]
    assert list(chunk_sums(checksums)) == sums  # chunk 0's from the record, not the file


def replayed(path: Path) -> tuple[bytearray, int]:
    """A journal replayed on the content b"0123456789abcdef", and how many marks it had."""
    content = bytearray(b"0123456789abcdef")

    def write(offset: int, piece: bytes) -> None:
        content[len(content) : offset] = bytes(max(0, offset - len(content)))
        content[offset : offset + len(piece)] = piece

    def truncate(size: int) -> None:
        del content[size:]
        content.extend(bytes(size - len(content)))

    return content, journal.replay(path, write, truncate)


def test_a_journal_replays_its_changes_up_to_its_last_intact_mark(tmp_path):
    """What a journaled fsync made durable comes back after a crash, exactly: the changes
    made after the last mark, or torn by the crash, do not."""
    data = DataStore(tmp_path)
    kept = data.open_journal(7, "base-blob")
    kept.wrote(0, b"first")
    kept.sync()
    kept.truncated(3)
    kept.wrote(10, b"second")
    kept.sync()
    kept.wrote(0, b"never synced")
    kept.close()
    torn = data.open_journal(8, "other-blob")
    torn.wrote(0, b"synced")
    torn.sync()
    torn.wrote(100, b"x" * 1000)
    torn.sync()
    torn.close()
    os.truncate(torn.path, os.path.getsize(torn.path) - 30)  # the last mark and more lost

    found = journal.found(data.staging)
    assert [(f.inode, f.base) for f in found] == [(7, "base-blob"), (8, "other-blob")]
    assert replayed(kept.path) == (bytearray(b"fir\0\0\0\0\0\0\0second"), 2)
    assert replayed(torn.path) == (bytearray(b"synced6789abcdef"), 1)
    data.clear_staging()
    assert journal.found(data.staging) == []


def test_a_full_journal_takes_no_more_changes_and_no_more_marks(tmp_path, monkeypatch):
    """Past its limit a journal stops: a mark after a change it did not take would claim
    that change durable; the writer's next fsync commits instead (service/journaled.py)."""
    monkeypatch.setattr(journal, "LIMIT", 200)
    kept = DataStore(tmp_path).open_journal(1, "base")
    kept.wrote(0, b"a" * 50)
    assert kept.sync()
    kept.wrote(50, b"b" * 200)  # past the limit
    kept.wrote(0, b"c")
    assert kept.full and not kept.sync()
    kept.close()
    assert replayed(kept.path) == (bytearray(b"a" * 50), 1)


def test_a_durability_point_syncs_the_log_unless_it_is_synced_since_the_last_write(tmp_path):
    """SQLite fsyncs a file and then its directory: the file's commit synced the log
    alone, so the directory's durability point has nothing left to sync; any write since
    the log was synced must be."""
    conn = sqlite3.connect(tmp_path / "meta.sqlite3", factory=SqliteConnection)
    conn.isolation_level = None
    SQLITE.prepare(conn)
    conn.execute("CREATE TABLE t (x)")
    ran: list[str] = []
    conn.set_trace_callback(ran.append)

    def checkpoints() -> int:
        count = sum("wal_checkpoint" in statement for statement in ran)
        ran.clear()
        return count

    conn.execute("INSERT INTO t VALUES (1)")
    SQLITE.make_durable(conn)
    assert checkpoints() == 1
    SQLITE.make_durable(conn)
    assert checkpoints() == 0
    SQLITE.write_synced(conn, lambda: conn.execute("INSERT INTO t VALUES (2)"))
    SQLITE.make_durable(conn)
    assert checkpoints() == 0
    conn.execute("UPDATE t SET x = 3")
    SQLITE.make_durable(conn)
    assert checkpoints() == 1
    conn.close()


def test_the_check_asks_sqlite_of_its_own_integrity(tmp_path):
    """fsck's check of the metadata includes SQLite's own: a row whose parent row is gone
    (a foreign key broken behind the store's back) is reported."""
    conn = sqlite3.connect(tmp_path / "meta.sqlite3", factory=SqliteConnection)
    conn.isolation_level = None
    SQLITE.prepare(conn)
    assert transactions.check(conn) == []
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("INSERT INTO user_metadata (inode, name, value) VALUES (999, 'k', x'00')")
    assert any("user_metadata" in problem for problem in transactions.check(conn))
    conn.close()


async def test_short_transactions_run_on_the_loop_unless_the_thread_has_work_or_folds(meta):
    """A short transaction runs on the loop (no hop to the thread), unless the thread has
    work queued: then it queues behind it, so that one thread at a time uses the
    connection and transactions keep their order. Every FOLD_EVERY-th runs in the thread
    and folds the log into the database, as SQLite's own checkpoint (off on the loop)
    would have: which syncs the log."""
    sqlite_only(meta)
    db = meta._db
    await db.run(lambda conn: conn.execute("CREATE TABLE t (x)"))
    ran: list[tuple[str, bool]] = []

    def insert(conn: sqlite3.Connection, what: str) -> None:
        conn.execute("INSERT INTO t VALUES (?)", (what,))
        ran.append((what, threading.get_ident() == loop))

    loop = threading.get_ident()
    await db.run_short(insert, "alone")
    assert ran == [("alone", True)]

    release = threading.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(db.run, lambda conn: release.wait(10) and insert(conn, "long"))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(db.run_short, insert, "behind")
        await trio.testing.wait_all_tasks_blocked()
        assert ran == [("alone", True)]  # queued behind the long one, not run beside it
        release.set()
    assert ran[1:] == [("long", False), ("behind", False)]

    conn = db._conn._conn
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    db._unfolded = 0
    for i in range(FOLD_EVERY - 1):
        await db.run_short(insert, f"{i}")
    assert ran[-1][1] and not any("wal_checkpoint" in s for s in statements)
    assert conn.synced_changes != conn.total_changes
    await db.run_short(insert, "folding")
    assert ran[-1] == ("folding", False) and "wal_checkpoint" in statements[-1]
    assert conn.synced_changes == conn.total_changes  # a durability point has nothing to do


async def test_what_may_change_many_rows_is_never_run_on_the_loop(meta, monkeypatch):
    """A directory moved into another bucket takes every row below it along, and a group
    of many commits is as long: they run in the thread, never on the loop; an object's
    move and a lone commit are short."""
    sqlite_only(meta)
    ran: list[tuple[str, str]] = []

    def recording(how: str):
        run = getattr(meta._db, how)

        def recorded(fn, *args):
            ran.append((fn.__name__, how))
            return run(fn, *args)

        return recorded

    for how in ("run", "run_short"):
        monkeypatch.setattr(meta._db, how, recording(how))
    one = await meta.insert(new_entry(schema.ROOT_INODE, "one", "bucket"), bucket_owner=0)
    two = await meta.insert(new_entry(schema.ROOT_INODE, "two", "bucket"), bucket_owner=0)
    directory = await meta.insert(new_entry(one.inode, "dir", "dir"))
    objects = [
        await meta.insert(new_entry(directory.inode, f"k{i}"), deferred=True) for i in range(10)
    ]
    await meta.commit_many([(objects[0], a_commit(new_object_id(), 5))])
    await meta.commit_many([(o, a_commit(new_object_id(), 5)) for o in objects[1:]])
    await meta.move(objects[0], directory.inode, "renamed", time.time_ns(), None)
    await meta.move(directory, two.inode, "dir", time.time_ns(), None)
    assert [how for name, how in ran if name in ("commit_many", "write_after")] == [
        "run_short", "run", "run_short", "run"
    ]  # fmt: skip
    assert [(u.objects, u.bytes) for u in await meta.usage(two.inode)] == [(10, 50)]


def test_digest_checksums_each_chunk_however_the_data_arrives():
    data = os.urandom(2 * CHUNK + 12345)
    whole, pieces = Digest(), Digest()
    whole.update(data)
    for start in range(0, len(data), 70_001):
        pieces.update(data[start : start + 70_001])
    etag, sums = whole.finish()
    assert pieces.finish() == (etag, sums)
    assert etag == hashlib.md5(data).hexdigest()
    expected = [zlib.crc32(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]
    assert list(chunk_sums(sums)) == expected


async def test_read_ahead_follows_sequential_readers_and_lets_go_of_what_it_held(meta, tmp_path):
    from fsobj.service.handles import OpenObjects
    from fsobj.service.versions import READ_AHEAD

    objects = OpenObjects(meta, DataStore(tmp_path))
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
    entry = await meta.insert(new_entry(bucket.inode, "big"), deferred=True)
    content = os.urandom(8 * CHUNK)
    writer = await objects.open(entry, writable=True, truncate=True)
    await objects.write(writer, 0, content)
    await objects.release(writer)

    reader = await objects.open(entry, writable=False, truncate=False)
    assert await objects.read(reader, 0, CHUNK) == content[:CHUNK]
    assert [ahead.offset for ahead in reader.ahead] == [CHUNK * i for i in range(1, 1 + READ_AHEAD)]
    assert await objects.read(reader, CHUNK, CHUNK) == content[CHUNK : 2 * CHUNK]  # read ahead
    assert await objects.read(reader, 5 * CHUNK, 100) == content[5 * CHUNK : 5 * CHUNK + 100]
    assert reader.ahead == []  # a jump: nothing read ahead until it reads on
    assert objects.reader.ahead_bytes == 0
    assert (
        await objects.read(reader, 5 * CHUNK + 100, CHUNK)
        == content[5 * CHUNK + 100 : 6 * CHUNK + 100]
    )
    assert len(reader.ahead) == 2  # up to the end of the object
    await objects.release(reader)
    assert objects.reader.ahead_bytes == 0


def test_a_store_of_schema_4_is_upgraded_with_its_entries_grants_and_inode_numbers(
    tmp_path, monkeypatch
):
    conn = sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None)
    with monkeypatch.context() as old:
        old.setattr(schema, "SCHEMA_VERSION", 4)
        schema.migrate(conn)
    rows = [
        (2, 1, "bkt", "bucket"),
        (3, 2, "d", "dir"),
        (4, 3, "e", "dir"),
        (5, 3, "obj", "object"),
        (90, 2, "gone", "object"),
    ]
    for inode, parent, name, kind in rows:
        conn.execute(
            "INSERT INTO entries (inode, parent, name, kind, mode, uid, gid, atime_ns,"
            " mtime_ns, ctime_ns, object_id) VALUES (?, ?, ?, ?, 448, 0, 0, 0, 0, 0, ?)",
            (inode, parent, name, kind, new_object_id() if kind == "object" else None),
        )
    conn.execute("INSERT INTO buckets VALUES (2, 7, 0)")
    conn.execute("INSERT INTO grants VALUES (2, 'everyone', 'READ')")
    conn.execute("INSERT INTO user_metadata VALUES (5, 'k', x'76')")
    conn.execute("DELETE FROM entries WHERE inode = 90")  # its number stays used
    conn.execute("PRAGMA foreign_keys = OFF")
    assert schema.migrate(conn) == 4
    conn.execute("PRAGMA foreign_keys = ON")
    subdirs = dict(conn.execute("SELECT name, subdirs FROM entries WHERE kind != 'object'"))
    assert subdirs == {"": 1, "bkt": 1, "d": 1, "e": 0}
    assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone() == (
        90,
    )
    assert conn.execute("SELECT count(*) FROM grants").fetchone() == (1,)
    assert conn.execute("SELECT value FROM user_metadata").fetchone() == (b"v",)
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.execute(
        "INSERT INTO entries (parent, name, kind, mode, uid, gid, atime_ns, mtime_ns, ctime_ns)"
        " VALUES (3, 'pipe', 'fifo', 4480, 0, 0, 0, 0, 0)"
    )
    conn.execute("DELETE FROM entries WHERE inode = 2")  # cascades as before
    assert conn.execute("SELECT count(*) FROM grants").fetchone() == (0,)


async def test_a_store_of_schema_5_is_upgraded_to_compact_blob_ids_and_separate_checksums(
    tmp_path, monkeypatch
):
    path = tmp_path / "meta.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    with monkeypatch.context() as old:
        old.setattr(schema, "SCHEMA_VERSION", 5)
        schema.migrate(conn)
    blobs = {name: new_object_id() for name in ("a", "b")}
    conn.execute(
        "INSERT INTO entries (inode, parent, name, kind, mode, uid, gid, atime_ns,"
        " mtime_ns, ctime_ns) VALUES (2, 1, 'bkt', 'bucket', 448, 0, 0, 0, 0, 0)"
    )
    conn.execute("INSERT INTO buckets VALUES (2, 0, 0)")
    for inode, (name, object_id) in enumerate(blobs.items(), 3):
        conn.execute(
            "INSERT INTO entries (inode, parent, name, kind, mode, uid, gid, atime_ns, mtime_ns,"
            " ctime_ns, object_id, size, checksums) VALUES (?, 2, ?, 'object', 420, 0, 0, 0, 0,"
            " 0, ?, 1, ?)",
            (inode, name, object_id, name.encode() * 4),
        )
    conn.close()
    async with trio_asyncio.open_loop():
        meta = await open_metadata_store(path)
        try:
            found = await meta.lookup(2, "a")
            assert (found.object_id, found.checksums) == (blobs["a"], b"aaaa")
            versions = await meta.object_versions(0, 10)
            assert [v[1:] for v in versions] == [(blobs["a"], 1, b"aaaa"), (blobs["b"], 1, b"bbbb")]
            other = new_object_id()
            assert await meta.unnamed_blobs([blobs["a"], other, "not-a-blob"]) == [
                "not-a-blob",
                other,
            ]
            await meta.delete(found, time.time_ns())  # its blob's checksums go with it
        finally:
            await meta.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute(
            "SELECT length(object_id) FROM entries WHERE name = 'b'"
        ).fetchone() == (16,)
        assert conn.execute("SELECT count(*) FROM blob_checksums").fetchone() == (1,)
        assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)


async def test_every_statement_of_the_hot_paths_is_an_index_search(meta, tmp_path):
    """Lookups, listings, commits, renames, deletes and the collector's comparison each
    find their rows through an index: none scans a table that grows with the store."""
    sqlite_only(meta)
    ran: list[str] = []
    await meta._run(lambda conn: conn.set_trace_callback(ran.append))
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
    directory = await meta.insert(new_entry(bucket.inode, "dir", "dir"))
    obj = await meta.insert(new_entry(directory.inode, "k"), deferred=True)
    await meta.commit_many([(obj, a_commit(new_object_id(), 1, checksums=b"1234"))])
    await meta.commit_many([(obj, a_commit(new_object_id(), 2, checksums=b"5678"))])
    await meta.set_user_metadata(obj.inode, "color", b"blue")
    await meta.set_grants(bucket.inode, ())
    linked = await meta.link(obj, directory.inode, "k-too", time.time_ns())  # hard links
    await meta.commit_many([(linked, a_commit(new_object_id(), 3))])
    await meta.set_user_metadata(linked.inode, "shape", b"round", linked.file_inode)
    await meta.delete(linked, time.time_ns())
    meta._cache = type(meta._cache)(capacity=1)  # nothing cached: every read asks the database
    meta._unwritten = meta._cache.unwritten
    meta._acls.clear()
    await meta.get(obj.inode)
    await meta.lookup(directory.inode, "k")
    await meta.lookup(directory.inode, "missing")
    await meta.children(directory.inode, 0, 100)
    await meta.children_in_key_order(directory.inode, "a", False, 100, "x")  # S3 listings
    await meta.access_keys("FSKEY")  # every S3 request with a key not seen yet
    await meta.has_children(directory.inode)
    await meta.user_metadata(obj.inode)
    await meta.acl(bucket.inode)
    moved = await meta.lookup(directory.inode, "k")
    await meta.move(moved, bucket.inode, "k2", time.time_ns(), None)
    await meta.unnamed_blobs([new_object_id(), moved.object_id])
    await meta.unsynced_objects()
    await meta.delete(moved, time.time_ns())
    await meta._run(lambda conn: conn.set_trace_callback(None))
    statements = {
        sql
        for sql in ran
        if sql.split()[0].upper() in ("SELECT", "UPDATE", "DELETE", "INSERT")
        and "listed_blobs (id) VALUES" not in sql
    }
    assert len(statements) > 10
    # what the triggers run when an entry stops naming a blob
    statements.add(
        "DELETE FROM blob_checksums WHERE object_id = x'00' AND NOT EXISTS"
        " (SELECT 1 FROM entries WHERE object_id = x'00')"
    )
    with sqlite3.connect(tmp_path / "meta.sqlite3") as conn:
        conn.execute("CREATE TEMP TABLE listed_blobs (id BLOB PRIMARY KEY) WITHOUT ROWID")
        for sql in statements:
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
            scans = [
                step
                for step in plan
                if step.startswith("SCAN") and "listed_blobs" not in step
                and step != "SCAN CONSTANT ROW"  # a parameter as a row: SELECT ? UNION ...
            ]  # fmt: skip
            assert not scans, f"{sql}: {plan}"


async def test_the_aiosqlite_internals_the_metadata_store_uses_are_there(meta):
    sqlite_only(meta)
    # MetadataStore._run queues work on aiosqlite's own queue (no public call does that):
    # if aiosqlite changes these, this fails first and names them.
    conn = meta._db._conn
    assert hasattr(conn, "_running") and conn._running, "aiosqlite.Connection._running"
    assert hasattr(conn, "_tx") and hasattr(conn._tx, "put_nowait"), "aiosqlite.Connection._tx"
    assert isinstance(conn._conn, sqlite3.Connection), "aiosqlite.Connection._conn"
    # Queued with no future: the worker runs it and the outcome, an error too, comes back.
    assert await meta._run(lambda c: c.execute("SELECT 41 + 1").fetchone()) == (42,)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await meta._run(lambda c: c.execute("SELECT * FROM no_such_table"))


def test_multipart_uploads_keep_their_parts_and_expire(tmp_path):
    from fsobj.service.uploads import Uploads, multipart_etag

    uploads = Uploads(tmp_path)
    upload = uploads.create("bkt", "k", 1001, "text/plain", {"m": b"\xff"})
    assert Uploads(tmp_path).get(upload.upload_id) == upload  # as after a restart
    for number, content in ((2, b"second"), (1, b"first"), (2, b"SECOND")):
        received = uploads.part_file(upload.upload_id)
        received.write_bytes(content)
        md5 = hashlib.md5(content).hexdigest()
        uploads.keep_part(upload.upload_id, number, received, (md5, b"crc!"))
    parts = uploads.parts(upload.upload_id)
    assert [(p.number, p.size) for p in parts] == [(1, 5), (2, 6)]
    staged = uploads.assemble(upload.upload_id, [1, 2], tmp_path / "assembled")
    assert staged.read(0, 100) == b"firstSECOND"
    assert staged.checksums is None  # part 1 is not whole chunks: read back at commit
    staged.close()
    staged = uploads.assemble(upload.upload_id, [2], tmp_path / "alone")
    assert staged.checksums == b"crc!"
    staged.close()
    assert multipart_etag([p.etag for p in parts]).endswith("-2")
    assert uploads.expire(3600) == 0
    assert uploads.expire(0) == 1 and uploads.all() == []


async def test_requests_made_together_share_one_sync(tmp_path):
    import trio

    from fsobj.service.durability import GroupSync

    async with metadata_store(tmp_path / "meta.sqlite3") as meta:
        durability = GroupSync(meta, DataStore(tmp_path))
        syncs = 0
        make_durable = meta.make_durable

        async def counted(*args):
            nonlocal syncs
            syncs += 1
            await trio.sleep(0.05)  # a sync takes a while: the others ask meanwhile
            await make_durable(*args)

        meta.make_durable = counted  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(durability.make_all_durable)
        assert syncs == 1  # asked before any sync began: one covers them all
        async with trio.open_nursery() as nursery:
            nursery.start_soon(durability.make_all_durable)
            await trio.sleep(0.01)  # that sync is running now
            for _ in range(9):
                nursery.start_soon(durability.make_all_durable)
        assert syncs == 3  # one more, then one for the nine that asked during it
        await durability.make_all_durable()
        assert syncs == 4  # a request after a sync gets a sync of its own


async def test_a_durability_point_syncs_the_new_blobs_and_only_many_by_syncfs(tmp_path):
    """The blobs left unsynced since the last point are synced file by file while they
    are few: a `syncfs` would also wait for all that other programs wrote to the disk."""
    from fsobj.service.durability import SYNCED_ONE_BY_ONE, GroupSync

    class Watched(DataStore):
        def __init__(self, root: Path):
            super().__init__(root)
            self.synced: list[list[str] | str] = []

        async def sync_blobs(self, object_ids: list[str]) -> None:
            self.synced.append(sorted(object_ids))
            await super().sync_blobs(object_ids)

        async def sync_all(self) -> None:
            self.synced.append("syncfs")
            await super().sync_all()

    async with metadata_store(tmp_path / "meta.sqlite3") as meta:
        data = Watched(tmp_path / "store")
        durability = GroupSync(meta, data)

        def new_blobs(count: int) -> list[str]:
            made = []
            for _ in range(count):
                staged = Staging()
                staged.write(0, b"new")
                object_id = new_object_id()
                data.commit_now(staged, object_id, False)
                durability.left_unsynced(object_id)
                made.append(object_id)
            return made

        few = new_blobs(3)
        await durability.make_all_durable()
        assert data.synced == [sorted(few)]
        await durability.make_all_durable()
        assert data.synced == [sorted(few)]  # nothing new: no sync at all
        new_blobs(SYNCED_ONE_BY_ONE + 1)
        await durability.make_all_durable()
        assert data.synced[1:] == ["syncfs"]


async def test_nothing_lands_in_a_directory_while_it_is_removed(meta, monkeypatch):
    import trio

    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
    directory = await meta.insert(new_entry(bucket.inode, "dir", "dir"))
    outcome: dict[str, object] = {}
    attempted = trio.Event()

    def removal_after_the_insert(run):
        async def running(fn, *args):
            """The removal's check-and-delete waits until the insert was tried: the
            insert comes while the removal is under way, whatever the scheduler does (a
            removal that completed in one round let an insert in after it, into no
            directory)."""
            if fn is transactions.write_if_empty:
                await attempted.wait()
            return await run(fn, *args)

        return running

    for name in ("run", "run_short"):
        monkeypatch.setattr(meta._db, name, removal_after_the_insert(getattr(meta._db, name)))

    async def insert_meanwhile() -> None:
        try:
            await meta.insert(new_entry(directory.inode, "late"), deferred=True)
            outcome["insert"] = "made"
        except Refused as refusal:
            assert refusal.reason is Reason.VANISHED  # ENOENT, NoSuchKey: S3 PUTs retry
            outcome["insert"] = "refused"
        finally:
            attempted.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(insert_meanwhile)
        outcome["removed"] = await meta.delete_directory(directory, time.time_ns())
    # never both: a name in a directory that is gone would be lost
    assert (outcome["removed"], outcome["insert"]) == (True, "refused")


async def test_a_key_listing_pages_through_large_directories_in_key_order(meta):
    from fsobj.iam.policy import Acl, Identity, Policy
    from fsobj.service.key_listing import PAGE, KeyListing

    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
    inner = await meta.insert(new_entry(bucket.inode, "d", "dir"))
    names = [f"k{i:05d}" for i in range(PAGE + 5)]
    await meta.insert_objects([new_entry(inner.inode, name) for name in names])
    await meta.insert_objects([new_entry(bucket.inode, name) for name in ("c", "d-", "e")])
    listing = KeyListing(meta, Policy(admins={0}), Identity(0, 0, 0), Acl(0))
    keys, after = [], ""
    while True:
        page = await listing.page(bucket, "", "", after, 400)
        keys += [item.key for item in page.keys]
        if not page.truncated:
            break
        after = page.last
    expected = sorted(["c", "d-", "d/", "e", *(f"d/{n}" for n in names)], key=str.encode)
    assert keys == expected
    folded = await listing.page(bucket, "", "/", "", 1000)
    assert [item.key for item in folded.keys] == ["c", "d-", "e"] and folded.prefixes == ["d/"]


async def test_a_synced_commit_leaves_the_others_to_the_durability_points(meta):
    sqlite_only(meta)
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
    obj = await meta.insert(new_entry(bucket.inode, "k"), deferred=True)
    ran: list[str] = []
    await meta._run(lambda conn: conn.set_trace_callback(ran.append))
    await meta.commit_many([(obj, a_commit(new_object_id(), 384))], True)
    await meta.commit_many([(obj, a_commit(new_object_id(), 416))])
    await meta._run(lambda conn: conn.set_trace_callback(None))
    order = [
        re.sub(r"^(UPDATE entries SET).*(size = \d+).*", r"\1 \2", sql.split(" WHERE")[0]).split(
            " ("
        )[0]
        for sql in ran
        if sql.startswith(
            ("PRAGMA synchronous", "INSERT INTO entries", "UPDATE entries SET object_id", "COMMIT")
        )
    ]
    # The trace repeats a statement for each trigger it fires (blob_unnamed_by_update).
    order = [sql for i, sql in enumerate(order) if i == 0 or sql != order[i - 1]]
    # FULL syncs the log at the synced transaction's commit; NORMAL again afterwards
    assert order == [
        "PRAGMA synchronous = FULL",
        "INSERT INTO entries",  # a new object's first commit goes in with its row
        "COMMIT",
        "PRAGMA synchronous = NORMAL",
        "UPDATE entries SET size = 416",
        "COMMIT",
    ]


async def test_a_new_object_s_first_commit_is_written_with_its_row(meta):
    """One INSERT carries the first commit (no lookup and update of the row after it);
    the row, its blob's checksums and the bucket's usage are those of the commit, on each
    database; a later commit updates the row as before."""
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
    obj = await meta.insert(new_entry(bucket.inode, "k"), deferred=True)
    blob = new_object_id()
    assert await meta.commit_many([(obj, a_commit(blob, 384, checksums=b"sums"))]) == [None]
    meta._cache.drop(obj.inode)  # read back from the database
    row = await meta.get(obj.inode)
    assert row is not None and (row.object_id, row.size, row.checksums) == (blob, 384, b"sums")
    assert [(u.objects, u.bytes) for u in await meta.usage(bucket.inode)] == [(1, 384)]
    assert await meta.commit_many([(row, a_commit(new_object_id(), 416))]) == [blob]
    assert [(u.objects, u.bytes) for u in await meta.usage(bucket.inode)] == [(1, 416)]


async def test_a_first_commit_from_the_mount_goes_in_with_its_row_as_well(meta):
    """A commit from the mount removes the notes of the content it replaces (checksum,
    parts, encryption): on a new row, which has none, that is nothing, so the row's
    INSERT carries it too; a note the row's user metadata has is removed as before."""
    sqlite_only(meta)
    mount_notes = (("fsobj.encryption", None), ("fsobj.checksum", None), ("fsobj.parts", None))
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
    made = await meta.insert(new_entry(bucket.inode, "made"), deferred=True)
    noted = await meta.insert(new_entry(bucket.inode, "noted"), deferred=True)
    await meta.set_user_metadata(noted.inode, "fsobj.parts", b"3")  # in the cache alone
    ran: list[str] = []
    await meta._run(lambda conn: conn.set_trace_callback(ran.append))
    await meta.commit_many([(made, a_commit(new_object_id(), 10, notes=mount_notes))])
    written = list(ran)
    ran.clear()
    await meta.commit_many([(noted, a_commit(new_object_id(), 20, notes=mount_notes))])
    await meta._run(lambda conn: conn.set_trace_callback(None))
    looked_up = ("SELECT object_id, etag FROM entries", "UPDATE entries SET object_id")
    assert any(sql.startswith("INSERT INTO entries") for sql in written)
    assert not any(sql.startswith((*looked_up, "DELETE FROM user_metadata")) for sql in written)
    assert any(sql.startswith(looked_up) for sql in ran)  # a row already: as before
    for entry, size in ((made, 10), (noted, 20)):
        meta._cache.drop(entry.inode)
        row = await meta.get(entry.inode)
        assert row is not None and row.size == size
        assert await meta.user_metadata(entry.inode) == {}


async def test_a_new_version_and_its_user_metadata_are_one_transaction(meta):
    sqlite_only(meta)
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
    obj = await meta.insert(new_entry(bucket.inode, "k"), deferred=True)
    await meta.set_user_metadata(obj.inode, "old", b"1")
    ran: list[str] = []
    await meta._run(lambda conn: conn.set_trace_callback(ran.append))
    commit = a_commit(new_object_id(), user_metadata={"colour": b"blue"})
    await meta.commit_many([(obj, commit)])
    await meta._run(lambda conn: conn.set_trace_callback(None))
    transactions = [sql for sql in ran if sql.startswith(("BEGIN", "COMMIT"))]
    assert transactions == ["BEGIN IMMEDIATE", "COMMIT"], ran  # one, holding both:
    assert any("user_metadata" in sql for sql in ran) and any(
        "UPDATE entries" in sql for sql in ran
    )
    assert await meta.user_metadata(obj.inode) == {"colour": b"blue"}  # all of it replaced
    meta._cache.drop(obj.inode)  # and so it is in the database
    assert await meta.user_metadata(obj.inode) == {"colour": b"blue"}


async def test_a_durability_point_leaves_the_removal_of_unnamed_blobs_to_the_background(
    tmp_path,
):
    """An fsync waits for what it makes durable, not for the removal of the blobs it made
    unnamed for good: a daemon removes those just after, in the background. Without
    that task (a command, an unmount), the point removes them itself."""
    from fsobj.service.durability import GroupSync

    class Held(DataStore):
        def __init__(self, root: Path):
            super().__init__(root)
            self.go = trio.Event()

        async def remove_blobs(self, object_ids: list[str]) -> None:
            await self.go.wait()
            await super().remove_blobs(object_ids)

    async with metadata_store(tmp_path / "meta.sqlite3") as meta:
        data = Held(tmp_path / "store")
        durability = GroupSync(meta, data)

        def retired_blob() -> Path:
            staged = Staging()
            staged.write(0, b"replaced")
            object_id = new_object_id()
            data.commit_now(staged, object_id, True)
            durability.retire(object_id)  # named by no entry
            return data.blob_path(object_id)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(durability.remove_unnamed)
            await trio.testing.wait_all_tasks_blocked()
            first = retired_blob()
            with trio.fail_after(5):
                await durability.make_all_durable()
            assert first.exists()  # its removal waits, not the point
            data.go.set()
            with trio.fail_after(5):
                while first.exists():
                    await trio.sleep(0.01)
            data.go = trio.Event()
            second = retired_blob()
            await durability.make_all_durable()
            nursery.cancel_scope.cancel()  # before the removal could run
        assert second.exists()
        data.go.set()
        await durability.make_all_durable()  # the daemon's last point, alone
        assert not second.exists()


async def test_a_directory_known_whole_still_answers_missing_names_after_a_removal(
    meta, monkeypatch
):
    """A directory made here has all its children cached: a name missing there is
    missing without a query. A removal keeps that true (SQLite looks its journal up
    before each transaction, having removed the last one); only evicting a child from
    the cache makes the directory's names a question for the database again."""
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
    journal = await meta.insert(new_entry(bucket.inode, "db-journal"), deferred=True)
    await meta.commit_many([(journal, a_commit(new_object_id(), 10))])
    kept = await meta.insert(new_entry(bucket.inode, "db"), deferred=True)
    await meta.commit_many([(kept, a_commit(new_object_id(), 10))])
    await meta.delete(journal, time.time_ns())
    queries: list[str] = []
    run = meta._run

    async def counted(fn, *args, **kwargs):
        queries.append(fn.__name__)
        return await run(fn, *args, **kwargs)

    monkeypatch.setattr(meta, "_run", counted)
    assert await meta.lookup(bucket.inode, "db-journal") is None
    assert await meta.lookup(bucket.inode, "db-wal") is None
    assert (await meta.lookup(bucket.inode, "db")) is kept
    assert queries == []
    meta._cache.capacity = 0
    meta._cache._shrink()  # "db" evicted: the cache no longer holds every child
    assert (await meta.lookup(bucket.inode, "db")).inode == kept.inode
    assert queries == ["select"]
