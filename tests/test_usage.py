"""Usage: what each bucket holds by owner, kept exact by the metadata store as changes
commit (no scan), on both metadata databases in-process; then as users see it on a mount:
`fsobj bucket ls -l`, `fsobj du`, `df`, and S3's HEAD bucket."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import as_user, fsobj_cli, mounted_at
from s3_fixtures import S3Mount, free_port, wait_for_port
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


def columns(output: str, name: str) -> list[str]:
    """The fields of the line of `output` that ends with `name`."""
    lines = [line.split() for line in output.splitlines() if line.endswith(name)]
    assert len(lines) == 1, output
    return lines[0]


def test_usage_on_a_mount_in_ls_du_df_and_head_bucket(tmp_path: Path):
    port = free_port()
    store = tmp_path / "store"
    with mounted_at(store, tmp_path / "fsobj.log", ("--s3", f"127.0.0.1:{port}")) as mounted:
        wait_for_port(port)
        mount = mounted.path
        team, private = mount / "team", mount / "private"
        team.mkdir()
        private.mkdir()
        fsobj_cli("acl", "set", str(team), "--canned", "public-read-write")
        assert as_user(1001, [
            ["write", f"{team}/a", "a" * 1000],
            ["mkdir", f"{team}/d"],
            ["write", f"{team}/d/x", "x" * 500],
        ]) == ["ok"] * 3  # fmt: skip
        (team / "r").write_bytes(b"r" * 3000)
        (private / "p").write_bytes(b"p" * 200)

        listing = fsobj_cli("bucket", "ls", "-l", str(mount)).stdout
        assert columns(listing, " team")[2:6] == ["3", "4500", "0", "0"]
        assert columns(listing, " private")[2:6] == ["1", "200", "0", "0"]
        by_owner = fsobj_cli("du", str(team)).stdout
        assert columns(by_owner, "team (1001)")[:2] == ["2", "1500"]
        assert columns(by_owner, "team (root)")[:2] == ["1", "3000"]
        assert columns(by_owner, "total")[:2] == ["3", "4500"]
        # Who may list a bucket may know what it holds; the whole store is for administrators.
        assert as_user(1002, [
            ["getxattr", str(team), "user.fsobj.usage"],
            ["getxattr", str(private), "user.fsobj.usage"],
            ["getxattr", str(mount), "user.fsobj.usage"],
        ]) == ["team 0 1 3000 0 0\nteam 1001 2 1500 0 0\n", "EACCES", "EACCES"]  # fmt: skip

        # df: what the store holds is the mount's used space; objects are its used inodes.
        space = os.statvfs(mount)
        used = (space.f_blocks - space.f_bfree) * space.f_frsize
        assert used == -(-4700 // space.f_frsize) * space.f_frsize
        assert space.f_files - space.f_ffree == 4

        # A directory moved to another bucket takes its objects' usage along.
        os.rename(team / "d", private / "d")
        client = S3Mount(mounted, port).client()
        headers = client.head_bucket(Bucket="team")["ResponseMetadata"]["HTTPHeaders"]
        assert (headers["x-fsobj-object-count"], headers["x-fsobj-bytes-used"]) == ("2", "4000")
        client.put_object(Bucket="private", Key="more", Body=b"m" * 50)
    # Unmounted, the store answers the same.
    listing = fsobj_cli("bucket", "ls", "-l", "--store", str(store)).stdout
    assert columns(listing, " private")[2:4] == ["3", "750"]
    by_owner = fsobj_cli("du", "--store", str(store), "--bucket", "private").stdout
    assert columns(by_owner, "private (1001)")[:2] == ["1", "500"]
    assert columns(by_owner, "private (root)")[:2] == ["2", "250"]
    assert "problem" not in fsobj_cli("fsck", "--store", str(store)).stdout
