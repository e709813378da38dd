"""The rules of a store that several hosts serve, in-process: two metadata stores on one
PostgreSQL database, each standing for a host (no FUSE, no blob service)."""

from __future__ import annotations

import contextlib
import errno
import time
from collections.abc import AsyncIterator

import pytest
import trio
import trio_asyncio
from conftest import a_commit, new_entry

from fsobj.datastore.store import new_object_id
from fsobj.metadata.schema import ROOT_INODE
from fsobj.metadata.store import MetadataStore, Sharing, open_metadata_store
from fsobj.refusals import Reason, Refused

FRESH = 0.3


@contextlib.asynccontextmanager
async def two_hosts(url: str) -> AsyncIterator[tuple[MetadataStore, MetadataStore]]:
    async with trio_asyncio.open_loop():
        a = await open_metadata_store(url, sharing=Sharing(FRESH, 5.0))
        b = await open_metadata_store(url, sharing=Sharing(FRESH, 5.0))
        try:
            yield a, b
        finally:
            await a.close()
            await b.close()


@pytest.fixture
def database(pg_cluster, pg_password) -> str:
    return pg_cluster.new_database()


async def test_hosts_hand_out_disjoint_inodes_and_see_each_others_names(database):
    async with two_hosts(database) as (a, b):
        bucket = await a.insert(new_entry(ROOT_INODE, "shared", "bucket"), bucket_owner=0)
        made_a = [await a.insert(new_entry(bucket.inode, f"a{i}", "dir")) for i in range(5)]
        made_b = [await b.insert(new_entry(bucket.inode, f"b{i}", "dir")) for i in range(5)]
        assert not {e.inode for e in made_a} & {e.inode for e in made_b}
        found = await b.lookup(bucket.inode, "a3")
        assert found is not None and found.inode == made_a[3].inode
        # A name B read stays B's answer for the timeout, then B asks again.
        await a.delete_directory(made_a[3], time.time_ns())
        assert await b.lookup(bucket.inode, "a3") is not None
        await trio.sleep(FRESH + 0.05)
        assert await b.lookup(bucket.inode, "a3") is None
        # A name B found missing is looked for again after the timeout too.
        await a.insert(new_entry(bucket.inode, "late", "dir"))
        await trio.sleep(FRESH + 0.05)
        assert await b.lookup(bucket.inode, "late") is not None


async def test_the_database_refuses_a_name_in_a_directory_another_host_removed(database):
    async with two_hosts(database) as (a, b):
        bucket = await a.insert(new_entry(ROOT_INODE, "shared", "bucket"), bucket_owner=0)
        directory = await a.insert(new_entry(bucket.inode, "dir", "dir"))
        seen = await b.lookup(bucket.inode, "dir")
        assert seen is not None
        assert await a.delete_directory(directory, time.time_ns())
        with pytest.raises(Refused) as orphan:
            await b.insert(new_entry(seen.inode, "orphan", "dir"))
        assert orphan.value.reason is Reason.NO_SUCH_KEY
        # And the other way round: a directory that holds another host's name stays.
        kept = await a.insert(new_entry(bucket.inode, "kept", "dir"))
        await b.insert(new_entry(kept.inode, "child", "dir"))
        assert not await a.delete_directory(kept, time.time_ns())


async def test_commits_learn_what_they_replace_from_the_database(database):
    async with two_hosts(database) as (a, b):
        bucket = await a.insert(new_entry(ROOT_INODE, "shared", "bucket"), bucket_owner=0)
        obj = await a.insert(new_entry(bucket.inode, "doc"), deferred=True)
        first = await a.new_blob_id()
        (previous,) = await a.commit_many([(obj, a_commit(first))])
        assert previous is None
        on_b = await b.lookup(bucket.inode, "doc")
        second = await b.new_blob_id()
        (previous,) = await b.commit_many([(on_b, a_commit(second))])
        assert previous == first
        # A, whose cache still says `first`, replaces what B committed: the last wins,
        # and A learns that it unnamed `second`.
        third = await a.new_blob_id()
        (previous,) = await a.commit_many([(obj, a_commit(third))])
        assert previous == second
        # A row another host removed fails that update alone: STALE (ESTALE on a mount).
        await b.delete(on_b, time.time_ns())
        (failed,) = await a.commit_many([(obj, a_commit(await a.new_blob_id()))])
        assert isinstance(failed, Refused) and failed.reason is Reason.STALE


async def test_pins_keep_collectors_off_uploads_and_a_lapsed_pin_fails_the_commit(database):
    async with two_hosts(database) as (a, b):
        bucket = await a.insert(new_entry(ROOT_INODE, "shared", "bucket"), bucket_owner=0)
        pinned = await a.new_blob_id()  # as a commit takes it before its upload
        stray = new_object_id()
        assert await b.unnamed_blobs([pinned, stray]) == [stray]
        await b.end_session(a.session)  # as if A's session had lapsed
        assert await b.unnamed_blobs([pinned]) == [pinned]
        obj = await a.insert(new_entry(bucket.inode, "late"), deferred=True)
        (failed,) = await a.commit_many([(obj, a_commit(pinned))])
        assert isinstance(failed, OSError) and failed.errno == errno.EIO


async def test_a_put_whose_directories_another_host_made_meanwhile_lands_in_theirs(database):
    """A PUT's implied directories are written with its object, in one transaction, on a
    shared store too: when another host made the same directories meanwhile, the key goes
    into theirs, and nothing is left of the ones made here."""
    async with two_hosts(database) as (a, b):
        bucket = await a.insert(new_entry(ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
        p = await a.insert(new_entry(bucket.inode, "p", "dir"), deferred=True)
        q = await a.insert(new_entry(p.inode, "q", "dir"), deferred=True)
        key = await a.insert(new_entry(q.inode, "k"), deferred=True)
        on_b = await b.insert(new_entry(bucket.inode, "p", "dir"))
        on_b_q = await b.insert(new_entry(on_b.inode, "q", "dir"))
        (previous,) = await a.commit_many([(key, a_commit(await a.new_blob_id()))])
        assert previous is None
        assert key.parent == on_b_q.inode
        found = await a.lookup(bucket.inode, "p")
        assert found is not None and found.inode == on_b.inode
        assert await a.get(p.inode) is None and await a.get(q.inode) is None
        seen = await b.lookup(on_b_q.inode, "k")
        assert seen is not None and seen.inode == key.inode
        assert await a.check() == []  # each directory counted once in its parent
        # Where another host made an object of the directory's name, the PUT is refused.
        r = await a.insert(new_entry(bucket.inode, "r", "dir"), deferred=True)
        below = await a.insert(new_entry(r.inode, "k"), deferred=True)
        await b.insert(new_entry(bucket.inode, "r"))
        with pytest.raises(Refused) as refused:
            await a.commit_many([(below, a_commit(await a.new_blob_id()))])
        assert refused.value.reason is Reason.NOT_DIRECTORY


async def test_a_file_one_host_knows_by_one_name_changes_with_the_links_another_made(database):
    """B still holds the file as a name alone (read before A linked it): what B commits
    and removes changes every name of the file, as the database has them."""
    async with two_hosts(database) as (a, b):
        bucket = await a.insert(new_entry(ROOT_INODE, "shared", "bucket"), bucket_owner=0)
        made = await a.insert(new_entry(bucket.inode, "obj"), deferred=True)
        assert await a.commit_many([(made, a_commit(await a.new_blob_id(), 1))]) == [None]
        alone = await b.lookup(bucket.inode, "obj")
        assert alone is not None and alone.file_inode is None
        await a.link(made, bucket.inode, "obj-too", time.time_ns())
        (previous,) = await b.commit_many([(alone, a_commit(await b.new_blob_id(), 7))])
        assert isinstance(previous, str)  # the blob it named before
        await b.update(alone, mode=0o600)
        await trio.sleep(FRESH + 0.05)
        other = await a.lookup(bucket.inode, "obj-too")
        assert other is not None and (other.size, other.mode, other.links) == (7, 0o600, 2)
        await b.delete(alone, time.time_ns())
        await trio.sleep(FRESH + 0.05)
        other = await a.lookup(bucket.inode, "obj-too")
        assert other is not None and other.links == 1
        assert await a.check() == []


async def test_versions_two_hosts_commit_are_kept_in_one_history(database):
    """Each host's commit archives what the database says the key held, whatever its own
    cache says; a removal on one host leaves a delete marker both see."""
    from fsobj.metadata.archive import Archive

    async with two_hosts(database) as (a, b):
        bucket = await a.insert(new_entry(ROOT_INODE, "kept", "bucket"), bucket_owner=0)
        obj = await a.insert(new_entry(bucket.inode, "doc"), deferred=True)
        ids = []
        for host, entry in ((a, obj), (b, None), (a, obj)):
            entry = entry or await host.lookup(bucket.inode, "doc")
            version = f"v{len(ids)}"
            archive = Archive(entry.inode, bucket.inode, "doc", True, version)
            blob = await host.new_blob_id()
            (result,) = await host.commit_many([(entry, a_commit(blob, archive=archive))])
            assert not isinstance(result, Refused | OSError)
            ids.append(version)
        past = await b.past_versions(bucket.inode, "", "", 10, key="doc")
        assert [v.version_id for v in past] == ["v1", "v0"]  # the newest first
        assert all(v.object_id is not None for v in past)
        marker = Archive(obj.inode, bucket.inode, "doc", True, "m")
        await b.delete(await b.lookup(bucket.inode, "doc"), time.time_ns(), marker)
        past = await a.past_versions(bucket.inode, "", "", 10, key="doc")
        assert [(v.version_id, v.is_marker) for v in past] == [
            ("m", True), ("v2", False), ("v1", False), ("v0", False)
        ]  # fmt: skip
        assert await a.check() == []
