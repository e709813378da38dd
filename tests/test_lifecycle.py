"""Lifecycle rules, in-process on both metadata backends: which objects a rule expires
(prefix, tags, sizes, days or a date), which uploads it aborts, and that disabled rules
and snapshots are left alone. Over S3 and through `fsobj gc` on a mount: test_s3.py."""

import time

import trio
from test_core import ROOT, body
from test_hard_links import healthy

from fsobj.service import lifecycle, names, object_lock, object_versions
from fsobj.service.lifecycle import Rule

DAY = 0.2  # seconds: a short lifecycle day, as --lifecycle-day sets it


# Where nothing waits for days to pass (ages are set), a longer day: the test's own
# time, under load, must not age an object past a rule's days.
LONG_DAY = 10.0


async def aged(
    objects, key: str, data: bytes, days: float, tags: str = "", day: float = DAY
) -> None:
    metadata = {"fsobj.tagging": tags.encode()} if tags else {}
    entry = await objects.put(ROOT, "bkt", key, body(data), metadata=metadata)
    then = time.time_ns() - int(days * day * 1e9)
    await objects.core.change_attributes(entry, mtime_ns=then)


async def keys(objects) -> list[str]:
    return [k.key for k in (await objects.list(ROOT, "bkt")).keys]


async def test_rules_expire_what_their_filters_name_once_old_enough(both):
    ops, objects = both
    await objects.create_bucket(ROOT, "bkt")
    rules = [
        Rule(id="small-tmp", prefix="tmp/", size_less_than=10, expiration_days=2),
        Rule(id="tagged", tags=[("kind", "log")], size_greater_than=3, expiration_days=1),
        Rule(id="off", enabled=False, prefix="keep/", expiration_days=1),
        Rule(id="dated", prefix="old/", expiration_date="2020-01-01T00:00:00.000Z"),
    ]
    await lifecycle.set_rules(objects, ROOT, "bkt", rules)
    assert await lifecycle.rules_of(objects, ROOT, "bkt") == rules
    await aged(objects, "tmp/small-old", b"x", 3, day=LONG_DAY)
    await aged(objects, "tmp/small-young", b"x", 1, day=LONG_DAY)
    await aged(objects, "tmp/big-old", b"x" * 20, 3, day=LONG_DAY)
    await aged(objects, "a/log-big", b"x" * 5, 3, "kind=log", day=LONG_DAY)
    await aged(objects, "a/log-small", b"x", 3, "kind=log", day=LONG_DAY)
    await aged(objects, "keep/old", b"x", 3, day=LONG_DAY)
    await aged(objects, "old/any", b"x", 0, day=LONG_DAY)
    assert await lifecycle.apply(objects, LONG_DAY) == 3
    assert await keys(objects) == ["a/log-small", "keep/old", "tmp/big-old", "tmp/small-young"]
    assert await healthy(ops)


async def test_uploads_are_aborted_after_their_days(both):
    _, objects = both
    await objects.create_bucket(ROOT, "bkt")
    await lifecycle.set_rules(objects, ROOT, "bkt", [Rule(prefix="up/", abort_upload_days=1)])
    await objects.multipart.create_upload(ROOT, "bkt", "up/big", None, {})
    await objects.multipart.create_upload(ROOT, "bkt", "other/big", None, {})
    await trio.sleep(DAY * 1.5)
    assert await lifecycle.apply(objects, DAY) == 1
    assert [u.key for u in await objects.multipart.list_uploads(ROOT, "bkt")] == ["other/big"]


async def versions(objects) -> list[tuple[str, bool]]:
    listing = await object_versions.list_versions(objects, ROOT, "bkt", "", "", "", "", 1000)
    return [(v.key, v.past is not None and v.past.is_marker) for v in listing.versions]


async def test_past_versions_expire_but_the_newest_and_lone_delete_markers_go(both):
    ops, objects = both
    await objects.create_bucket(ROOT, "bkt")
    await object_versions.set_versioning(objects, ROOT, "bkt", "Enabled")
    rules = [
        Rule(id="keep-one", prefix="k", noncurrent_days=1, newer_noncurrent_versions=1),
        Rule(id="tidy", prefix="gone", noncurrent_days=1, expired_object_delete_marker=True),
    ]
    await lifecycle.set_rules(objects, ROOT, "bkt", rules)
    for data in (b"1", b"2", b"3"):
        await objects.put(ROOT, "bkt", "k", body(data))
    await objects.put(ROOT, "bkt", "gone", body(b"x"))
    await objects.delete(ROOT, "bkt", "gone")
    # Nothing is old enough yet, on a day long enough that the test's own time under
    # load cannot age anything past it (it once took longer than DAY to get here).
    assert await lifecycle.apply(objects, LONG_DAY) == 0
    await trio.sleep(DAY * 1.5)
    # k keeps its newest past version; gone loses its past version, then (once it is all
    # the key has) its delete marker.
    assert await lifecycle.apply(objects, DAY) == 2
    assert await versions(objects) == [("gone", True), ("k", False), ("k", False)]
    assert await lifecycle.apply(objects, DAY) == 1
    assert await versions(objects) == [("k", False), ("k", False)]
    assert await healthy(ops)


async def test_locked_past_versions_outlast_the_rules(both):
    ops, objects = both
    await objects.create_bucket(ROOT, "bkt")
    await object_versions.set_versioning(objects, ROOT, "bkt", "Enabled")
    bucket, _ = await objects.bucket(ROOT, "bkt")
    await object_lock.set_bucket_lock(objects.core, bucket, object_lock.BucketLock())
    await lifecycle.set_rules(objects, ROOT, "bkt", [Rule(noncurrent_days=1)])
    retained = object_lock.Retention("COMPLIANCE", time.time_ns() + 3600 * 10**9)
    locked = {names.RETENTION: retained.text().encode()}
    await objects.put(ROOT, "bkt", "locked", body(b"1"), metadata=locked)
    await objects.put(ROOT, "bkt", "locked", body(b"2"))
    await objects.put(ROOT, "bkt", "free", body(b"1"))
    await objects.put(ROOT, "bkt", "free", body(b"2"))
    await trio.sleep(DAY * 1.5)
    assert await lifecycle.apply(objects, DAY) == 1
    assert await versions(objects) == [("free", False), ("locked", False), ("locked", False)]
    assert await healthy(ops)
