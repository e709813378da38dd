"""The object service in-process, as both front ends call it: no mount, no HTTP, on each
metadata database (SQLite, PostgreSQL). What the kernel and real clients do is tested on
mounts and servers elsewhere; these are the core's own rules."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
import trio
from conftest import reads_without_waiting

from fsobj.datastore.sealing import Seal
from fsobj.iam.policy import Grant, Identity, Permission
from fsobj.metadata import transactions
from fsobj.refusals import Reason, Refused
from fsobj.service import ROOT_INODE
from fsobj.service.objects import ObjectService

ROOT = Identity(0, 0, os.getpid())
ALICE = Identity(1001, 1001, os.getpid())
BOB = Identity(1002, 1002, os.getpid())


async def body(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def read(objects: ObjectService, who: Identity, bucket: str, key: str) -> bytes:
    reader = await objects.open_reader(who, bucket, key)
    try:
        return b"".join([chunk async for chunk in reader.chunks(0, reader.size)])
    finally:
        await reader.close()


async def refused(call) -> Reason:
    with pytest.raises(Refused) as raised:
        await call
    return raised.value.reason


async def test_buckets_are_named_by_s3_rules_and_say_whose_they_are(core):
    _, objects = core
    assert await refused(objects.create_bucket(ALICE, "Bad_Name")) is Reason.BAD_BUCKET_NAME
    assert await refused(objects.create_bucket(ALICE, "b" * 300)) is Reason.BUCKET_NAME_TOO_LONG
    await objects.create_bucket(ALICE, "alices")
    assert await refused(objects.create_bucket(ALICE, "alices")) is Reason.BUCKET_OWNED
    assert await refused(objects.create_bucket(BOB, "alices")) is Reason.BUCKET_EXISTS
    assert [b.name for b in await objects.list_buckets(ALICE)] == ["alices"]
    assert await objects.list_buckets(BOB) == []  # private until granted
    assert await refused(objects.list(BOB, "alices")) is Reason.DENIED
    await objects.set_grants(ALICE, "alices", (Grant("uid:1002", Permission.READ),))
    assert [b.name for b in await objects.list_buckets(BOB)] == ["alices"]
    assert await refused(objects.set_grants(BOB, "alices", ())) is Reason.DENIED


async def test_a_bucket_goes_when_empty_and_only_by_its_owner(core):
    _, objects = core
    await objects.create_bucket(ALICE, "bk1")
    await objects.put(ALICE, "bk1", "k", body(b"x"))
    assert await refused(objects.delete_bucket(ALICE, "bk1")) is Reason.NOT_EMPTY
    await objects.delete(ALICE, "bk1", "k")
    await objects.set_grants(ALICE, "bk1", (Grant("uid:1002", Permission.FULL_CONTROL),))
    assert await refused(objects.delete_bucket(BOB, "bk1")) is Reason.DENIED
    await objects.delete_bucket(ALICE, "bk1")
    assert await refused(objects.head(ALICE, "bk1", "k")) is Reason.NO_SUCH_BUCKET


async def test_put_get_and_list_keys_in_s3_order_with_prefixes(core):
    _, objects = core
    await objects.create_bucket(ROOT, "photos")
    # S3's order is the UTF-8 bytes' (a collation of the database's must not change it).
    in_order = ["2026/11/cat.jpg", "2026/11/dog.jpg", "2026/12/owl.jpg", "Zebra", "a-b"]
    in_order += ["a/x", "a0", "readme", "\u00e9t\u00e9"]
    for key in reversed(in_order):
        await objects.put(ROOT, "photos", key, body(key.encode(), b"!"))
    assert await read(objects, ROOT, "photos", "2026/11/dog.jpg") == b"2026/11/dog.jpg!"
    everything = await objects.list(ROOT, "photos")
    assert [k.key for k in everything.keys] == in_order
    top = await objects.list(ROOT, "photos", delimiter="/")
    assert top.prefixes == ["2026/", "a/"]
    assert [k.key for k in top.keys] == ["Zebra", "a-b", "a0", "readme", "\u00e9t\u00e9"]
    page = await objects.list(ROOT, "photos", prefix="2026/", limit=2)
    assert [k.key for k in page.keys] == ["2026/11/cat.jpg", "2026/11/dog.jpg"]
    assert page.truncated
    rest = await objects.list(ROOT, "photos", prefix="2026/", after=page.last)
    assert [k.key for k in rest.keys] == ["2026/12/owl.jpg"] and not rest.truncated
    # A key below an object, or with an empty segment, is no key at all.
    assert await refused(objects.head(ROOT, "photos", "readme/x")) is Reason.NO_SUCH_KEY
    assert await refused(objects.put(ROOT, "photos", "a//b", body(b""))) is Reason.BAD_KEY
    assert await refused(objects.put(ROOT, "photos", "k" * 1025, body(b""))) is (
        Reason.NAME_TOO_LONG
    )


async def test_a_prefix_goes_with_its_last_key(core):
    service, objects = core
    await objects.create_bucket(ROOT, "bkt")
    await objects.put(ROOT, "bkt", "deep/er/key", body(b"1"))
    await objects.delete(ROOT, "bkt", "deep/er/key")
    bucket = await service.existing(await service.entry(ROOT_INODE), b"bkt")
    assert await service.child(bucket, b"deep") is None
    await objects.delete(ROOT, "bkt", "never/was")  # as in S3: no error


async def test_deleting_a_marker_and_the_last_key_below_it_at_once(core):
    """`aws s3 rm --recursive` deletes ten keys at a time: the last key below a directory
    and the directory's marker may go together, and the directories left for them go
    with them, whichever request removes each (CI saw the key's DELETE fail: the other
    request had removed the directories it was about to prune)."""
    service, objects = core

    class Kernel:
        """The mount, told of every name S3 changes; slow to answer for the key."""

        async def name_changed(self, inode: int, name: str) -> None:
            await trio.sleep(0.5 if name == "k" else 0)

        def attributes_changed(self, inode: int) -> None:
            pass

    await objects.create_bucket(ROOT, "bkt")
    for key in ("made/", "made/inner/"):  # as mkdir makes them
        await objects.put(ROOT, "bkt", key, body())
    await objects.put(ROOT, "bkt", "made/inner/k", body(b"x"))
    await objects.delete(ROOT, "bkt", "made/")  # kept for what is below it
    service.watchers.append(Kernel())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(objects.delete, ROOT, "bkt", "made/inner/k")
        await trio.sleep(0.1)  # the key is gone; its request is telling the kernel
        nursery.start_soon(objects.delete, ROOT, "bkt", "made/inner/")
    bucket = await service.existing(await service.entry(ROOT_INODE), b"bkt")
    assert await service.child(bucket, b"made") is None


def blobs_read_for_etags(etags, monkeypatch) -> list[str]:
    """The blobs the etag computer reads from now on, in order."""
    reads: list[str] = []
    md5 = etags._md5

    def counted(object_id: str, size: int, checksums: bytes | None) -> str:
        reads.append(object_id)
        return md5(object_id, size, checksums)

    monkeypatch.setattr(etags, "_md5", counted)
    return reads


async def test_requests_waiting_for_one_blob_s_etag_read_the_blob_once(core, monkeypatch):
    """A large file written through the mount gets its etag after the commit; requests
    that need it meanwhile share one reading of the blob."""
    service, objects = core
    await objects.create_bucket(ROOT, "bkt")
    content = os.urandom(3 << 20)
    entry = await objects.put(ROOT, "bkt", "big", body(content))
    etags = service.objects.etags
    reads = blobs_read_for_etags(etags, monkeypatch)
    answers: list[str] = []

    async def ask() -> None:
        answers.append(await etags.of_blob(entry.object_id, entry.size, entry.checksums))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(ask)
    assert reads == [entry.object_id]
    assert answers == [hashlib.md5(content).hexdigest()] * 3


async def test_the_background_etag_waits_for_a_file_to_rest(core, monkeypatch):
    """A file committed again and again without its MD5 (a database the mount writes,
    at every fsync) has its etag computed once, of the version it rests at."""
    from fsobj.service import etags as etags_module

    service, objects = core
    await objects.create_bucket(ROOT, "bkt")
    await objects.put(ROOT, "bkt", "db", body(b"version 1"))
    second = await objects.put(ROOT, "bkt", "other", body(b"version 2"))
    etags = service.objects.etags
    reads = blobs_read_for_etags(etags, monkeypatch)
    monkeypatch.setattr(etags_module, "QUIET", 0.2)
    entry = await service.existing(
        await service.existing(await service.entry(ROOT_INODE), b"bkt"), b"db"
    )
    entry.etag = None  # as the mount commits a large file
    async with trio.open_nursery() as nursery:
        nursery.start_soon(etags.run)
        etags.later(entry)
        await trio.sleep(0.05)
        entry.object_id, entry.size, entry.checksums = (
            second.object_id,
            second.size,
            second.checksums,
        )  # committed again before its turn
        etags.later(entry)
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert reads == [second.object_id]  # the version it rests at, and that one alone
    assert entry.etag == hashlib.md5(b"version 2").hexdigest()


async def test_etags_an_earlier_run_left_pending_are_computed_when_the_next_one_starts(
    core, monkeypatch
):
    """A daemon that stops (crashes, or unmounts) before a large file's etag was computed
    leaves the row without one: the next daemon's background task computes it, without
    waiting for a request to ask."""
    from fsobj.metadata import transactions
    from fsobj.service import etags as etags_module

    service, objects = core
    await objects.create_bucket(ROOT, "bkt")
    content = os.urandom(3 << 20)
    entry = await objects.put(ROOT, "bkt", "big", body(content))
    meta = service.objects.etags.meta
    await meta._run(
        transactions.write, [("UPDATE entries SET etag = NULL WHERE inode = ?", (entry.inode,))]
    )
    entry.etag = None  # as a crash leaves it: committed, the MD5 not yet recorded
    assert await meta.objects_without_etag() == [entry.inode]
    etags = etags_module.Etags(meta, service.objects.etags.data)  # the next run's
    monkeypatch.setattr(etags_module, "QUIET", 0.01)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(etags.run)
        with trio.fail_after(30):
            while await meta.objects_without_etag():
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert entry.etag == hashlib.md5(content).hexdigest()


async def test_a_copy_shares_the_blob_and_a_check_may_refuse_it(core):
    _, objects = core
    await objects.create_bucket(ROOT, "bkt")
    source = await objects.put(ROOT, "bkt", "src", body(b"content"), "text/x", {"m": b"1"})

    def refuse(entry):
        raise Refused(Reason.INVALID, None, "a condition failed")

    assert (
        await refused(objects.copy(ROOT, ("bkt", "src", None), "bkt", "dst", refuse))
        is Reason.INVALID
    )
    copy = await objects.copy(ROOT, ("bkt", "src", None), "bkt", "dst", lambda entry: None)
    assert copy.object_id == source.object_id and copy.inode != source.inode
    assert await read(objects, ROOT, "bkt", "dst") == b"content"
    onto_itself = objects.copy(ROOT, ("bkt", "src", None), "bkt", "src", lambda entry: None)
    assert await refused(onto_itself) is Reason.INVALID
    await objects.delete(ROOT, "bkt", "src")
    assert await read(objects, ROOT, "bkt", "dst") == b"content"  # its blob stays named


async def test_multipart_parts_are_checked_then_committed_in_order(core):
    _, objects = core
    await objects.create_bucket(ROOT, "bkt")
    upload = await objects.multipart.create_upload(ROOT, "bkt", "big", None, {})
    part = b"p" * (5 << 20)
    target = (ROOT, "bkt", "big", upload.upload_id)
    etags = [await objects.multipart.upload_part(*target, n, body(part)) for n in (1, 2)]
    await objects.multipart.upload_part(*target, 3, body(b"tail"))
    out_of_order = [(2, etags[1]), (1, etags[0])]
    assert (
        await refused(objects.multipart.complete_upload(*target, out_of_order)) is Reason.PART_ORDER
    )
    missing = [(1, etags[0]), (4, etags[0])]
    assert await refused(objects.multipart.complete_upload(*target, missing)) is Reason.INVALID_PART
    assert (
        await refused(objects.multipart.upload_part(*target, 0, body(b""))) is Reason.BAD_ARGUMENT
    )
    elsewhere = objects.multipart.parts(ROOT, "bkt", "big", "no-such-upload")
    assert await refused(elsewhere) is Reason.NO_SUCH_UPLOAD
    tail = (await objects.multipart.parts(*target))[2]
    chosen = [(1, etags[0]), (2, etags[1]), (3, tail.etag)]
    entry = await objects.multipart.complete_upload(*target, chosen)
    assert entry.size == 2 * len(part) + 4 and entry.etag.endswith("-3")
    assert (await read(objects, ROOT, "bkt", "big"))[-6:] == b"pptail"


async def test_posix_rules_of_names_rename_and_removal(core):
    service, _ = core
    caller = SimpleNamespace(uid=0, gid=0, pid=os.getpid(), umask=0o022)
    root = await service.entry(ROOT_INODE)
    name = await service.new_name(root, b"posix", "dir")
    bucket = await service.create_bucket(root, name, 0, 0)
    assert await refused(service.new_name(root, b"file", "object")) is Reason.NOT_PERMITTED

    async def made(parent, raw: bytes, kind: str):
        entry = service.entry_for_caller(parent, raw.decode(), kind, 0o755, caller)
        await service._meta.insert(entry)
        return entry

    a = await made(bucket, b"a", "dir")
    inner = await made(a, b"inner", "dir")
    await made(inner, b"x", "symlink")
    f = await made(bucket, b"f", "symlink")
    assert await refused(service.new_name(bucket, b"a", "dir")) is Reason.EXISTS
    assert await refused(service.rename(a, (bucket, b"a"), inner, b"a2", True)) is Reason.INVALID
    assert await refused(service.rename(a, (bucket, b"a"), root, b"a", True)) is (
        Reason.NOT_PERMITTED
    )
    assert await refused(service.rename(f, (bucket, b"f"), bucket, b"a", True)) is (
        Reason.IS_DIRECTORY
    )
    assert await refused(service.rename(a, (bucket, b"a"), bucket, b"f", False)) is Reason.EXISTS
    assert await refused(service.rename(a, (bucket, b"a"), bucket, b"f", True)) is (
        Reason.NOT_DIRECTORY
    )
    empty = await made(bucket, b"empty", "dir")
    assert await refused(service.rename(empty, (bucket, b"empty"), bucket, b"a", True)) is (
        Reason.NOT_EMPTY
    )
    await service.rename(a, (bucket, b"a"), bucket, b"moved", True)
    assert await service.child(bucket, b"a") is None
    assert (await service.existing(bucket, b"moved")).inode == a.inode
    assert await refused(service.remove_name(ROOT, bucket, b"moved", True)) is Reason.NOT_EMPTY
    assert await refused(service.remove_name(ROOT, bucket, b"f", True)) is Reason.NOT_DIRECTORY
    assert await refused(service.remove_name(ROOT, bucket, b"empty", False)) is (
        Reason.IS_DIRECTORY
    )
    assert await refused(service.remove_name(ROOT, bucket, b"gone", False)) is Reason.NO_SUCH_KEY
    await service.remove_name(ROOT, bucket, b"empty", True)
    assert await refused(service.existing(bucket, b"n" * 256)) is Reason.NAME_TOO_LONG
    assert await service.child(bucket, b"\xff") is None  # no key can have it
    assert await refused(service.remove_name(ALICE, root, b"posix", True)) is Reason.DENIED


async def test_a_put_and_the_directories_its_key_implies_are_one_transaction(core, monkeypatch):
    """Until the object's transaction, nothing of a PUT is in the database: a crash just
    before it leaves none of it; a failure takes the directories made for it back."""
    service, objects = core
    await objects.create_bucket(ROOT, "bkt")
    bucket = await service.existing(await service.entry(ROOT_INODE), b"bkt")

    async def names_written() -> list[str]:
        query = "SELECT name FROM entries WHERE name IN ('deep', 'er', 'key', 'copy')"
        return sorted(name for (name,) in await service._meta._run(transactions.select, query, ()))

    seen: list[list[str]] = []
    replace = service.objects.replace

    async def die_before_the_transaction(*args, **kwargs):
        seen.append(await names_written())
        raise OSError(errno.EIO, "the process died here")

    monkeypatch.setattr(service.objects, "replace", die_before_the_transaction)
    with pytest.raises(OSError):
        await objects.put(ROOT, "bkt", "deep/er/key", body(b"1"))
    assert seen == [[]]
    assert await service.child(bucket, b"deep") is None
    assert await names_written() == []
    monkeypatch.setattr(service.objects, "replace", replace)
    await objects.put(ROOT, "bkt", "deep/er/key", body(b"1"))
    assert await names_written() == ["deep", "er", "key"]
    await objects.copy(ROOT, ("bkt", "deep/er/key", None), "bkt", "copy/key", lambda entry: None)
    assert "copy" in await names_written()
    assert [k.key for k in (await objects.list(ROOT, "bkt")).keys] == ["copy/key", "deep/er/key"]
    assert await service._meta.check() == []  # the directories' counts of subdirectories too


async def test_entries_without_content_are_no_keys(core):
    """Symlinks, FIFOs, sockets and device nodes live in the tree, but S3 sees no key."""
    service, objects = core
    await objects.create_bucket(ROOT, "bkt")
    bucket = await service.existing(await service.entry(ROOT_INODE), b"bkt")
    caller = SimpleNamespace(uid=0, gid=0, umask=0o022)
    await service.make_entry(bucket, "link", "symlink", 0o777, caller, target="elsewhere")
    await service.make_entry(bucket, "pipe", "fifo", 0o644, caller)
    device = await service.make_entry(bucket, "null", "chardev", 0o666, caller, rdev=259)
    service._meta._cache._remove(device.inode)  # evicted: read back from the database
    assert (await service.existing(bucket, b"null")).rdev == 259 and device.mode == 0o644
    await objects.put(ROOT, "bkt", "obj", body(b"x"))
    assert [k.key for k in (await objects.list(ROOT, "bkt")).keys] == ["obj"]
    for name in ("link", "pipe", "null"):
        assert await refused(objects.head(ROOT, "bkt", name)) is Reason.NO_SUCH_KEY


async def test_user_metadata_is_limited_to_2_kib_in_all(core):
    service, objects = core
    await objects.create_bucket(ROOT, "bkt")
    entry = await objects.put(ROOT, "bkt", "k", body(b"x"), metadata={"a": b"1"})
    await service.set_user_metadata(entry, "b", b"v" * 2000)
    assert await service.user_metadata(entry) == {"a": b"1", "b": b"v" * 2000}
    too_much = service.set_user_metadata(entry, "c", b"v" * 100)
    assert await refused(too_much) is Reason.METADATA_TOO_LARGE
    assert await refused(service.set_user_metadata(entry, "c", None)) is (Reason.NO_SUCH_ATTRIBUTE)
    await service.set_user_metadata(entry, "b", None)
    assert await service.user_metadata(entry) == {"a": b"1"}


def thread_hops(monkeypatch) -> list:
    """From now on, every function run in a thread (`trio.to_thread.run_sync`), in order."""
    hops: list = []
    in_thread = trio.to_thread.run_sync

    async def counted(fn, *args, **kwargs):
        hops.append(fn)
        return await in_thread(fn, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", counted)
    return hops


async def test_small_reads_of_checked_content_in_the_page_cache_stay_on_the_loop(
    core, monkeypatch, tmp_path
):
    """A program that maps a large file reads it in small pieces (git its packs), grep
    in 96 KiB: a small read in the page cache is served on the loop once its chunks are
    checked, or when checking them reads little more, of a committed blob as of a
    writer's staging file; the hop to a thread costs more."""
    if not reads_without_waiting(tmp_path):
        pytest.skip("this filesystem cannot say what is in the page cache (RWF_NOWAIT)")
    service, objects = core
    await objects.create_bucket(ROOT, "bkt")
    content = os.urandom(3 << 20)
    await objects.put(ROOT, "bkt", "big", body(content))
    entry_parent = await service.existing(await service.entry(ROOT_INODE), b"bkt")
    entry = await service.existing(entry_parent, b"big")
    hops = thread_hops(monkeypatch)
    handles = service.objects
    reader = await handles.open(entry, False, False)
    assert await handles.read(reader, 5000, 4096) == content[5000:9096]
    assert len(hops) == 1  # the chunk's first read checks it, in a thread
    assert await handles.read(reader, 9000, 4096) == content[9000:13096]
    assert await handles.read(reader, 100, 64 << 10) == content[100 : 100 + (64 << 10)]
    assert len(hops) == 1
    assert await handles.read(reader, 5 << 19, 4096) == content[5 << 19 : (5 << 19) + 4096]
    assert len(hops) == 2  # another chunk
    await objects.put(ROOT, "bkt", "mid", body(content[: 100 << 10]))
    mid = await handles.open(await service.existing(entry_parent, b"mid"), False, False)
    hops.clear()
    assert await handles.read(mid, 0, 96 << 10) == content[: 96 << 10]  # grep's reads
    assert await handles.read(mid, 96 << 10, 96 << 10) == content[96 << 10 : 100 << 10]
    assert hops == []  # a chunk of 100 KiB is checked on the loop
    await handles.release(mid)
    writer = await handles.open(entry, True, False)  # in place: a copy in a staging file
    assert await handles.write(writer, 1 << 20, b"changed") == 7
    writer.staging.settle()
    hops.clear()
    assert (
        await handles.read(writer, (1 << 20) - 3, 10)
        == content[(1 << 20) - 3 : 1 << 20] + b"changed"
    )
    assert hops == []
    await handles.release(writer)
    await handles.release(reader)

    async def sealed(entry, asked):
        return Seal()

    monkeypatch.setattr(handles, "sealing", sealed)
    await objects.put(ROOT, "bkt", "sealed", body(content))
    reader = await handles.open(await service.existing(entry_parent, b"sealed"), False, False)
    assert reader.blob.sealed
    hops.clear()
    for _ in range(2):  # opening a sealed chunk of 1 MiB costs more than the hop
        assert await handles.read(reader, 9000, 4096) == content[9000:13096]
    assert len(hops) == 2
    await handles.release(reader)


async def test_opening_a_small_object_asks_the_disk_for_its_blob_at_once(core, monkeypatch):
    """A read of a small object comes a round trip after its open: the open starts the
    disk reading its blob (WILLNEED), so the read may find it in the page cache and be
    served on the loop. A large one is read ahead by its reader instead."""
    service, objects = core
    await objects.create_bucket(ROOT, "bkt")
    await objects.put(ROOT, "bkt", "small", body(b"s" * 4096))
    await objects.put(ROOT, "bkt", "large", body(os.urandom(1 << 20)))
    bucket = await service.existing(await service.entry(ROOT_INODE), b"bkt")
    asked: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, *how: asked.append((fd, how[-1])))
    handles = service.objects
    small = await handles.open(await service.existing(bucket, b"small"), False, False)
    assert asked == [(small.blob.fd, os.POSIX_FADV_WILLNEED)]
    large = await handles.open(await service.existing(bucket, b"large"), False, False)
    assert len(asked) == 1
    assert await handles.read(small, 0, 1 << 20) == b"s" * 4096
    await handles.release(small)
    await handles.release(large)


async def test_an_fsync_of_a_small_file_syncs_its_blob_in_its_transactions_round_trip(
    core, monkeypatch
):
    """An fsync commits what its file wrote alone and durably: the new blob is synced in
    the database's thread just before the transaction that names it, one round trip,
    where a hop of its own to a thread came first."""
    import threading

    service, objects = core
    await objects.create_bucket(ROOT, "bkt")
    await objects.put(ROOT, "bkt", "db-journal", body(b"j" * 9000))
    bucket = await service.existing(await service.entry(ROOT_INODE), b"bkt")
    entry = await service.existing(bucket, b"db-journal")
    before = entry.object_id
    handles = service.objects
    events: list[tuple[str, int, object]] = []
    sync_blobs_now = handles.data.sync_blobs_now
    in_transaction = transactions.transaction

    def synced(object_ids):
        events.append(("sync", threading.get_ident(), object_ids))
        sync_blobs_now(object_ids)

    def transaction(conn):
        events.append(("transaction", threading.get_ident(), None))
        return in_transaction(conn)

    async def threaded_commit(*args):
        raise AssertionError("a small commit synced alone needs no hop of its own")

    monkeypatch.setattr(handles.data, "sync_blobs_now", synced)
    monkeypatch.setattr(handles.data, "commit", threaded_commit)
    monkeypatch.setattr(transactions, "transaction", transaction)
    writer = await handles.open(entry, True, False)
    assert await handles.write(writer, 0, b"header") == 6
    await handles.make_durable(writer)
    blob = writer.version.object_id
    assert blob != before  # committed as a new version
    assert events[:2] == [
        ("sync", events[0][1], [blob]),
        ("transaction", events[0][1], None),
    ]
    assert events[0][1] != threading.get_ident()  # the database's thread, not the loop
    assert handles.data.blob_path(blob).read_bytes() == b"header" + b"j" * 8994
    await handles.release(writer)
    assert (await service.existing(bucket, b"db-journal")).object_id == blob


async def test_a_small_object_written_in_place_is_copied_in_memory_when_intact(
    core, monkeypatch, tmp_path
):
    """A writer in place of a small object starts from a copy of its content: in memory,
    made on the loop when the blob is in the page cache and matches its checksum (no
    staging file, no hop to a thread); else in a staging file, in a thread, as before."""
    if not reads_without_waiting(tmp_path):
        pytest.skip("this filesystem cannot say what is in the page cache (RWF_NOWAIT)")
    service, objects = core
    await objects.create_bucket(ROOT, "bkt")
    await objects.put(ROOT, "bkt", "small", body(b"s" * 9000))
    await objects.put(ROOT, "bkt", "damaged", body(b"d" * 9000))
    bucket = await service.existing(await service.entry(ROOT_INODE), b"bkt")
    small = await service.existing(bucket, b"small")
    damaged = await service.existing(bucket, b"damaged")
    handles = service.objects
    path = handles.data.blob_path(damaged.object_id)
    os.chmod(path, 0o600)
    path.write_bytes(b"D" * 9000)  # the same size: found by its checksum alone
    writer = await handles.open(small, True, False)
    hops = thread_hops(monkeypatch)
    assert await handles.write(writer, 0, b"header") == 6
    assert hops == [] and writer.staging.memory is not None
    await handles.release(writer)
    reader = await handles.open(await service.existing(bucket, b"small"), False, False)
    assert await handles.read(reader, 0, 1 << 20) == b"header" + b"s" * 8994
    await handles.release(reader)
    writer = await handles.open(damaged, True, False)
    hops.clear()
    assert await handles.write(writer, 0, b"header") == 6
    assert len(hops) == 1 and writer.staging.memory is None  # copied as a file
    await handles.release(writer)
