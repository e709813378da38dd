"""Instant clones, the rules in-process (no mount), on both metadata backends: a tree, an
object or a bucket copied by metadata alone (every blob shared), independent from then on.
The command on a real mount is in test_tools.py; the time for 100,000 objects in bench/."""

import errno
import os

from test_core import ROOT, body, read
from test_core import refused as refused_reason
from test_hard_links import healthy
from test_operations import bucket, ctx, get, put, put_again, refused

from fsobj.metadata.schema import ROOT_INODE
from fsobj.refusals import Reason

CLONE = b"user.fsobj.clone"


async def tree(ops, inode: int) -> dict[str, object]:
    """Every entry below `inode` by its path: a directory as its kind, a file as its content
    and user metadata."""
    found: dict[str, object] = {}
    for name in [e.name for e in await ops.core.children(inode, 0, 1000)]:
        attrs = await ops.lookup(inode, name.encode(), ctx())
        if attrs.st_mode & 0o170000 == 0o040000:
            below = await tree(ops, attrs.st_ino)
            found[name] = "dir"
            found |= {f"{name}/{path}": what for path, what in below.items()}
        else:
            names = await ops.listxattr(attrs.st_ino, ctx())
            metadata = {n: await ops.getxattr(attrs.st_ino, n, ctx()) for n in names}
            found[name] = (await get(ops, attrs.st_ino), metadata, attrs.st_mode)
    return found


async def test_a_tree_is_copied_whole_sharing_every_blob_and_then_goes_its_own_way(both):
    ops, objects = both
    b = await bucket(ops)
    src = (await ops.mkdir(b, b"src", 0o755, ctx())).st_ino
    sub = (await ops.mkdir(src, b"sub", 0o750, ctx())).st_ino
    a = await put(ops, src, b"a", b"alpha")
    await ops.setxattr(a, b"user.colour", b"red", ctx())
    await put(ops, sub, b"b", b"beta")
    await ops.link(a, sub, b"a-too", ctx())  # names of one file: each a file of its own

    await ops.setxattr(b, CLONE, b"bkt/src\0copy", ctx())
    copy = (await ops.lookup(b, b"copy", ctx())).st_ino
    assert await tree(ops, copy) == await tree(ops, src)
    copied_a = (await ops.lookup(copy, b"a", ctx())).st_ino
    assert await ops.getxattr(copied_a, b"user.fsobj.id", ctx()) == await ops.getxattr(
        a, b"user.fsobj.id", ctx()
    )  # the blob is shared: no data copied
    copied_sub = (await ops.lookup(copy, b"sub", ctx())).st_ino
    assert (await ops.getattr(copied_a, ctx())).st_nlink == 1
    assert (await ops.getattr(copy, ctx())).st_nlink == 3  # ., its entry, sub
    assert (await ops.getattr(b, ctx())).st_nlink == 4  # src and copy

    await put_again(ops, copied_a, b"changed")
    await ops.setxattr(copied_a, b"user.colour", b"blue", ctx())
    assert await get(ops, a) == b"alpha"
    assert await ops.getxattr(a, b"user.colour", ctx()) == b"red"
    await ops.unlink(sub, b"b", ctx())
    assert await get(ops, (await ops.lookup(copied_sub, b"b", ctx())).st_ino) == b"beta"
    assert [k.key for k in (await objects.list(ROOT, "bkt", prefix="copy/")).keys] == [
        "copy/a", "copy/sub/", "copy/sub/a-too", "copy/sub/b",
    ]  # fmt: skip
    assert await read(objects, ROOT, "bkt", "copy/sub/b") == b"beta"
    assert await healthy(ops)


async def test_a_bucket_is_copied_to_a_new_bucket_of_the_caller_with_its_grants(both):
    ops, objects = both
    b = await bucket(ops, uid=1001)
    await put(ops, b, b"k", b"v", ctx(1001))
    await ops.setxattr(b, b"user.fsobj.acl", b"uid:1002 READ\n", ctx(1001))
    await ops.setxattr(ROOT_INODE, CLONE, b"bkt\0bkt-copy", ctx(1001))
    copy = (await ops.lookup(ROOT_INODE, b"bkt-copy", ctx())).st_ino
    acl = await ops.getxattr(copy, b"user.fsobj.acl", ctx(1001))
    assert b"owner uid:1001" in acl and b"uid:1002 READ" in acl
    assert await get(ops, (await ops.lookup(copy, b"k", ctx())).st_ino) == b"v"
    assert "bkt-copy" in [x.name for x in await objects.list_buckets(ROOT)]
    assert await healthy(ops)


async def test_a_clone_is_refused_what_a_copy_may_not_do(both):
    ops, _ = both
    b = await bucket(ops, uid=1001)
    await ops.setxattr(b, b"user.fsobj.acl", b"uid:1002 FULL_CONTROL\n", ctx(1001))
    src = (await ops.mkdir(b, b"src", 0o755, ctx(1001))).st_ino
    await put(ops, src, b"a", b"x", ctx(1001))
    await ops.mkdir(b, b"taken", 0o755, ctx(1001))
    cases = {
        b"bkt/src\0taken": errno.EEXIST,
        b"bkt/src\0copy": None,  # as its owner
        b"bkt/missing\0copy2": errno.ENOENT,
    }
    for value, expected in cases.items():
        call = ops.setxattr(b, CLONE, value, ctx(1001))
        assert (await call if expected is None else await refused(call)) == expected
    assert await refused(ops.setxattr(b, CLONE, b"bkt/src\0other", ctx(1002))) == errno.EACCES
    assert await refused(ops.setxattr(src, CLONE, b"bkt/src\0inside", ctx())) == errno.EINVAL
    assert await refused(ops.setxattr(b, CLONE, b"bkt\0inner-bucket", ctx())) == errno.EPERM
    assert await refused(ops.setxattr(ROOT_INODE, CLONE, b"bkt/src\0top", ctx())) == errno.EPERM
    assert await healthy(ops)


SNAPSHOT = b"user.fsobj.snapshot"


async def test_a_snapshot_is_a_read_only_bucket_that_keeps_its_moment(both):
    ops, objects = both
    b = await bucket(ops, "photos")
    d = (await ops.mkdir(b, b"d", 0o755, ctx())).st_ino
    a = await put(ops, d, b"a", b"then")
    await ops.setxattr(b, SNAPSHOT, b"create nightly", ctx())
    snap = (await ops.lookup(ROOT_INODE, b"photos.nightly", ctx())).st_ino
    assert await ops.getxattr(snap, b"user.fsobj.snapshot-of", ctx()) == b"photos"
    await put_again(ops, a, b"now")
    await ops.unlink(d, b"a", ctx())
    snap_d = (await ops.lookup(snap, b"d", ctx())).st_ino
    snap_a = (await ops.lookup(snap_d, b"a", ctx())).st_ino
    assert await get(ops, snap_a) == b"then"
    assert await read(objects, ROOT, "photos.nightly", "d/a") == b"then"

    erofs = errno.EROFS
    assert await refused(put(ops, snap_d, b"new", b"x")) == erofs
    assert await refused(ops.unlink(snap_d, b"a", ctx())) == erofs
    assert await refused(ops.mkdir(snap_d, b"sub", 0o755, ctx())) == erofs
    assert await refused(ops.rename(snap_d, b"a", d, b"moved", 0, ctx())) == erofs
    assert await refused(ops.open(snap_a, os.O_WRONLY, ctx())) == erofs
    assert await refused(ops.setxattr(snap_a, b"user.x", b"1", ctx())) == erofs
    assert await refused(ops.link(snap_a, snap_d, b"again", ctx())) == erofs
    put_over_s3 = objects.put(ROOT, "photos.nightly", "d/a", body(b"x"))
    assert await refused_reason(put_over_s3) is Reason.READ_ONLY
    assert await refused_reason(objects.delete(ROOT, "photos.nightly", "d/a")) is Reason.READ_ONLY

    await ops.setxattr(ROOT_INODE, CLONE, b"photos.nightly\0restored", ctx())  # writable
    restored = (await ops.lookup(ROOT_INODE, b"restored", ctx())).st_ino
    await put(ops, restored, b"fresh", b"y")
    await ops.setxattr(b, SNAPSHOT, b"rm nightly", ctx())
    assert (await ops.lookup(ROOT_INODE, b"photos.nightly", ctx())).st_ino == 0
    assert await refused(ops.setxattr(b, SNAPSHOT, b"rm nightly", ctx())) == errno.ENOENT
    restored_a = await ops.lookup((await ops.lookup(restored, b"d", ctx())).st_ino, b"a", ctx())
    assert await get(ops, restored_a.st_ino) == b"then"
    assert await healthy(ops)
