"""The daemon's memory stays bounded: the namespace cache evicts, the kernel's references are
released through forget. In-process, without FUSE, and on a mount."""

import os
import time

import pytest
from conftest import as_user, fsobj_cli, metadata_store, mounted_at, new_entry

from fsobj.metadata import schema
from fsobj.metadata.cache import NamespaceCache


@pytest.fixture
async def small_meta(tmp_path):
    async with metadata_store(tmp_path / "meta.sqlite3", cache_entries=10) as store:
        yield store


def test_the_cache_evicts_the_least_recently_used_but_never_a_held_or_unwritten_entry():
    cache = NamespaceCache(capacity=3)
    entries = [new_entry(1, f"e{i}") for i in range(6)]
    for inode, entry in enumerate(entries, 10):
        entry.inode = inode
    cache.add(entries[0])
    cache.hold(10)
    cache.add(entries[1])
    cache.unwritten[11] = entries[1]
    cache.add(entries[2])
    cache.get(12)
    for entry in entries[3:]:
        cache.add(entry)
    assert len(cache) == 3
    assert cache.get(10) is entries[0] and cache.get(11) is entries[1]
    assert cache.named(1, "e5") is entries[5] and cache.named(1, "e2") is None
    cache.let_go(10)
    cache.evict(10)  # the kernel forgot it: the first to go, though just used
    assert cache.peek(10) is entries[0]
    late = new_entry(1, "late")
    late.inode = 16
    cache.add(late)
    assert cache.peek(10) is None and cache.named(1, "e0") is None
    assert cache.peek(15) is entries[5] and cache.peek(16) is late


def test_a_directory_with_an_evicted_child_no_longer_answers_for_missing_names():
    cache = NamespaceCache(capacity=2)
    directory, child, other = new_entry(1, "d", "dir"), new_entry(5, "c"), new_entry(1, "x")
    directory.inode, child.inode, other.inode = 5, 6, 7
    cache.add(directory, complete=True)
    cache.add(child)
    assert cache.knows_all_of(5)
    cache.get(5)
    cache.add(other)  # evicts the child
    assert cache.get(6) is None and not cache.knows_all_of(5)


async def test_a_store_with_a_small_cache_answers_as_one_with_everything_cached(small_meta):
    meta = small_meta
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
    directory = await meta.insert(new_entry(bucket.inode, "dir", "dir"))
    made = [await meta.insert(new_entry(directory.inode, f"k{i}")) for i in range(50)]
    await meta.update(made[0], mode=0o600)
    assert meta.cached_entries() <= 10
    for entry in made:
        found = await meta.lookup(directory.inode, entry.name)
        assert found is not None and found.inode == entry.inode
    assert (await meta.lookup(directory.inode, "k0")).mode == 0o600
    assert await meta.lookup(directory.inode, "missing") is None
    # a change through an entry object that was evicted reaches the one cached since
    stale = made[1]
    fresh = await meta.lookup(directory.inode, "k1")
    assert fresh is not stale
    await meta.update(stale, mode=0o640)
    assert fresh.mode == 0o640
    await meta.move(stale, directory.inode, "renamed", time.time_ns(), None)
    assert (await meta.lookup(directory.inode, "renamed")).inode == stale.inode
    assert await meta.lookup(directory.inode, "k1") is None
    pages = await meta.children(directory.inode, 0, 100)
    assert len(pages) == 50
    assert (await meta.get(directory.inode)).subdirs == 0
    assert (await meta.get(bucket.inode)).subdirs == 1
    assert meta.cached_entries() <= 10


async def test_an_entry_held_by_an_open_handle_stays_the_one_every_request_sees(small_meta):
    meta = small_meta
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
    held = await meta.insert(new_entry(bucket.inode, "open"))
    meta.hold(held.inode)
    for i in range(30):
        await meta.insert(new_entry(bucket.inode, f"k{i}"))
    meta.evict(held.inode)  # the kernel forgetting it changes nothing while it is held
    assert await meta.get(held.inode) is held
    meta.let_go(held.inode)
    meta.evict(held.inode)
    for i in range(30):
        await meta.insert(new_entry(bucket.inode, f"later{i}"))
    assert await meta.get(held.inode) is not held


def _stats(mount) -> dict[str, int]:
    text = fsobj_cli("stats", str(mount.path)).stdout
    return {name: int(value) for name, value in (line.split() for line in text.splitlines())}


def test_a_mount_keeps_its_cache_bounded_and_hears_what_the_kernel_forgets(tmp_path, store):
    with mounted_at(store, tmp_path / "fsobj.log", ("--cache-entries", "300")) as mount:
        bucket = mount / "many"
        bucket.mkdir()
        for i in range(600):
            (bucket / f"f{i:03}").write_bytes(b"%d" % i)
        assert _stats(mount)["cached_entries"] <= 300
        for i in range(600):
            assert os.stat(bucket / f"f{i:03}").st_size == len(b"%d" % i)
        assert sorted(os.listdir(bucket)) == [f"f{i:03}" for i in range(600)]
        assert _stats(mount)["cached_entries"] <= 300
        for i in range(250):  # the most recently used: cached, as the kernel holds them
            os.stat(bucket / f"f{i:03}")
        before = _stats(mount)
        assert before["cached_entries"] > 200
        with open("/proc/sys/vm/drop_caches", "w") as drop:
            drop.write("2")  # the kernel lets go of unused inodes: forget
        deadline = time.monotonic() + 30
        while (
            _stats(mount)["forgotten_inodes"] < before["forgotten_inodes"] + 200
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        after = _stats(mount)
        assert after["forgotten_inodes"] >= before["forgotten_inodes"] + 200
        assert after["cached_entries"] <= 300  # what it forgot goes first (tested above)
        # what was evicted is read again, unchanged
        assert (bucket / "f007").read_bytes() == b"7"
        assert (bucket / "f599").read_bytes() == b"599"


def test_a_missing_name_the_kernel_remembers_appears_once_created(bucket):
    other = 1001
    missing = str(bucket / "later")
    bucket.chmod(0o777)
    os.setxattr(bucket, "user.fsobj.acl", b"everyone READ\neveryone WRITE\n")
    assert as_user(other, [["read", missing]]) == ["ENOENT"]
    (bucket / "later").write_bytes(b"now")
    assert as_user(other, [["read", missing]]) == ["now"]
    os.unlink(missing)
    assert as_user(other, [["read", missing]]) == ["ENOENT"]


def test_only_an_administrator_reads_what_the_daemon_holds(mount):
    assert "cached_entries" in fsobj_cli("stats", str(mount.path)).stdout
    assert as_user(1001, [["getxattr", str(mount.path), "user.fsobj.stats"]]) == ["EACCES"]


async def test_objects_loaded_in_bulk_are_found_in_a_directory_made_this_session(small_meta):
    meta = small_meta
    bucket = await meta.insert(new_entry(schema.ROOT_INODE, "bkt", "bucket"), bucket_owner=0)
    await meta.insert_objects([new_entry(bucket.inode, f"k{i}") for i in range(3)])
    found = await meta.lookup(bucket.inode, "k2")
    assert found is not None and found.name == "k2"
