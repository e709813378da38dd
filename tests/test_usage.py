"""Usage: what each bucket holds by owner, kept exact by the metadata store as changes
commit (no scan), on both metadata databases in-process; then as users see it on a mount:
`fsobj bucket ls -l`, `fsobj du`, `df`, and S3's HEAD bucket."""

from __future__ import annotations

from test_core import ALICE, BOB, ROOT, body

from fsobj.iam.policy import Grant, Permission
from fsobj.metadata import transactions
from fsobj.service import ROOT_INODE, object_versions, usage
from fsobj.service.usage import Usage


async def held(service, name: str) -> dict[int, tuple[int, int, int, int]]:
    bucket = await service.existing(await service.entry(ROOT_INODE), name.encode())
    return {row.uid: row.counts() for row in await usage.of_bucket(service, bucket)}


async def test_usage_counts_every_change_by_bucket_and_owner(core):
    service, objects = core
    await objects.create_bucket(ALICE, "shared")
    await objects.create_bucket(BOB, "other")
    await objects.set_grants(ALICE, "shared", (Grant("uid:1002", Permission.FULL_CONTROL),))
    await objects.put(ALICE, "shared", "a/one", body(b"x" * 100))
    await objects.put(ALICE, "shared", "two", body(b"y" * 10))
    await objects.put(BOB, "shared", "bobs", body(b"z" * 7))
    assert await held(service, "shared") == {1001: (2, 110, 0, 0), 1002: (1, 7, 0, 0)}
    # A new version replaces the old one's bytes; a copy is a key more; a delete, one less.
    await objects.put(ALICE, "shared", "two", body(b"y" * 30))
    await objects.copy(ALICE, ("shared", "a/one", None), "shared", "a/copy", lambda e: None)
    await objects.delete(BOB, "shared", "bobs")
    assert await held(service, "shared") == {1001: (3, 230, 0, 0), 1002: (0, 0, 0, 0)}
    # A directory moved into another bucket takes its counts along.
    root = await service.entry(ROOT_INODE)
    source = await service.existing(root, b"shared")
    target = await service.existing(root, b"other")
    directory = await service.existing(source, b"a")
    await service.rename(directory, (source, b"a"), target, b"moved", False)
    assert await held(service, "shared") == {1001: (1, 30, 0, 0), 1002: (0, 0, 0, 0)}
    assert await held(service, "other") == {1001: (2, 200, 0, 0)}
    # In a versioned bucket what a change replaces is counted apart, as past versions.
    await object_versions.set_versioning(objects, ALICE, "shared", "Enabled")
    await objects.put(ALICE, "shared", "two", body(b"w" * 5))
    await objects.delete(ALICE, "shared", "two")
    assert await held(service, "shared") == {1001: (0, 0, 2, 35), 1002: (0, 0, 0, 0)}
    # What the triggers kept is what a count of the rows finds, also once gc has folded
    # what connections that are gone counted (PostgreSQL).
    await service._meta.fold_usage()
    assert await service._meta.check() == []
    total = Usage.total(await service._meta.usage())
    assert total.counts() == (2, 200, 2, 35)


async def test_a_wrong_count_is_found_by_fsck_and_counted_anew(core):
    service, objects = core
    await objects.create_bucket(ROOT, "bkt")
    await objects.put(ROOT, "bkt", "k", body(b"12345"))
    meta = service._meta
    await meta._run(transactions.write, [("UPDATE bucket_usage SET bytes = bytes + 1", ())])
    problems = await meta.check()
    assert [p for p in problems if p.startswith(transactions.MISCOUNTED)], problems
    await meta.recount_usage()
    assert await meta.check() == []
    assert await held(service, "bkt") == {0: (1, 5, 0, 0)}
