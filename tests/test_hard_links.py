"""Hard links, the rules in-process (no mount), on both metadata backends: several names,
one file. The kernel knows every name by one inode; content, attributes and user metadata
are the file's; the last name to go frees it. Over S3 each name is a key, and a PUT or
copy onto one name replaces that name alone. What the kernel and real tools do with them
is in test_posix.py."""

import errno

import trio_asyncio
from test_core import ROOT, body, read
from test_operations import bucket, ctx, get, put, put_again, refused

from fsobj.fuse.operations import Operations
from fsobj.service.store import open_store


async def named(ops: Operations, content: bytes, *names: bytes) -> tuple[int, int]:
    """A bucket with a file of `content` named `a` and `names` besides; its inode."""
    b = await bucket(ops)
    inode = await put(ops, b, b"a", content)
    for name in names:
        await ops.link(inode, b, name, ctx())
    return b, inode


async def healthy(ops: Operations) -> bool:
    return await ops.core._meta.check() == []


async def test_names_of_one_file_share_inode_content_attributes_and_metadata(both):
    ops, _ = both
    b = await bucket(ops)
    d = (await ops.mkdir(b, b"dir", 0o755, ctx())).st_ino
    inode = await put(ops, b, b"first", b"one")
    await ops.setxattr(inode, b"user.colour", b"blue", ctx())
    second = await ops.link(inode, d, b"second", ctx())
    assert second.st_ino == inode and second.st_nlink == 2
    looked_up = await ops.lookup(d, b"second", ctx())
    assert looked_up.st_ino == inode and (await ops.getattr(inode, ctx())).st_nlink == 2
    assert await ops.getxattr(inode, b"user.colour", ctx()) == b"blue"

    await put_again(ops, inode, b"rewritten")  # through the file's one inode
    assert await get(ops, (await ops.lookup(d, b"second", ctx())).st_ino) == b"rewritten"
    await ops.core.change_attributes(await ops.core.entry(inode), mode=0o600)  # as chmod
    for parent, name in ((b, b"first"), (d, b"second")):
        found = await ops.lookup(parent, name, ctx())
        assert (found.st_mode & 0o777, found.st_size) == (0o600, 9)
    await ops.setxattr(inode, b"user.colour", b"green", ctx())
    await ops.removexattr(inode, b"user.colour", ctx())
    await ops.setxattr(inode, b"user.shape", b"round", ctx())
    assert await ops.listxattr(inode, ctx()) == await ops.listxattr(second.st_ino, ctx())
    assert await healthy(ops)


async def test_the_last_name_to_go_frees_the_file(both):
    ops, _ = both
    b, inode = await named(ops, b"content", b"b", b"c")
    assert (await ops.getattr(inode, ctx())).st_nlink == 3
    await ops.unlink(b, b"a", ctx())  # the name whose row gave the file its inode
    assert (await ops.getattr(inode, ctx())).st_nlink == 2
    assert await get(ops, inode) == b"content"
    await ops.rename(b, b"b", b, b"c", 0, ctx())  # two names of one file: nothing happens
    assert {await ops.lookup(b, name, ctx()) is not None for name in (b"b", b"c")} == {True}
    blob = await ops.getxattr(inode, b"user.fsobj.id", ctx())
    await ops.unlink(b, b"b", ctx())
    other = await put(ops, b, b"other", b"x")
    await ops.rename(b, b"other", b, b"c", 0, ctx())  # replaces the last name
    assert await refused(ops.getattr(inode, ctx())) == errno.ENOENT
    assert await ops.getxattr(other, b"user.fsobj.id", ctx()) != blob
    assert await healthy(ops)


async def test_links_stay_in_their_bucket_and_need_a_free_name(both):
    ops, _ = both
    b, other = await bucket(ops), await bucket(ops, "other")
    inode = await put(ops, b, b"obj", b"x")
    await put(ops, b, b"taken", b"y")
    assert await refused(ops.link(inode, other, b"away", ctx())) == errno.EXDEV
    assert await refused(ops.link(inode, b, b"taken", ctx())) == errno.EEXIST
    assert await refused(ops.link(b, other, b"dir", ctx())) == errno.EPERM
    fifo = (await ops.mknod(b, b"pipe", 0o10644, 0, ctx())).st_ino
    assert (await ops.link(fifo, b, b"pipe2", ctx())).st_nlink == 2  # any file but a directory


async def test_links_outlive_the_mount(tmp_path):
    async with trio_asyncio.open_loop():
        async with open_store(tmp_path / "store") as store:
            ops = Operations(store.service)
            b = await bucket(ops)
            inode = await put(ops, b, b"a", b"kept")
            await ops.link(inode, b, b"b", ctx())
            await ops.unlink(b, b"a", ctx())
            await ops.link(inode, b, b"c", ctx())
        async with open_store(tmp_path / "store") as store:
            ops = Operations(store.service)
            b = (await ops.lookup(1, b"bkt", ctx())).st_ino
            found = [await ops.lookup(b, name, ctx()) for name in (b"b", b"c")]
            assert {(f.st_ino, f.st_nlink) for f in found} == {(inode, 2)}
            assert await get(ops, inode) == b"kept"
            assert await healthy(ops)


async def test_over_s3_each_name_is_a_key_that_a_put_or_delete_acts_on_alone(both):
    ops, objects = both
    b, inode = await named(ops, b"shared", b"b", b"c")
    assert [k.key for k in (await objects.list(ROOT, "bkt")).keys] == ["a", "b", "c"]
    assert await read(objects, ROOT, "bkt", "c") == b"shared"

    await objects.put(ROOT, "bkt", "b", body(b"replaced"))  # b alone gets a new object
    assert await get(ops, inode) == b"shared"
    b_now = await ops.lookup(b, b"b", ctx())
    assert b_now.st_ino != inode and b_now.st_nlink == 1
    assert await get(ops, b_now.st_ino) == b"replaced"
    assert (await ops.getattr(inode, ctx())).st_nlink == 2

    await objects.copy(ROOT, ("bkt", "b", None), "bkt", "c", lambda source: None)  # so does a copy
    assert await get(ops, (await ops.lookup(b, b"c", ctx())).st_ino) == b"replaced"
    assert (await ops.getattr(inode, ctx())).st_nlink == 1
    await objects.delete(ROOT, "bkt", "a")  # the last name of the first file
    assert (await ops.lookup(b, b"a", ctx())).st_ino == 0
    assert await refused(ops.getattr(inode, ctx())) == errno.ENOENT
    assert await healthy(ops)


async def test_a_put_onto_one_name_that_fails_leaves_the_name_to_its_file(both):
    ops, objects = both
    b, inode = await named(ops, b"shared", b"b")
    parent = await ops.core.entry(b)
    name = await ops.core.existing(parent, b"b")
    # What a PUT does before its commit, and after a commit that failed (objects.py).
    made = await ops.core.new_object(parent, "b", 0o644, 0, 0, replacing=name)
    assert (await ops.lookup(b, b"b", ctx())).st_ino == made.inode
    await ops.core.remove(made)
    found = await ops.lookup(b, b"b", ctx())
    assert (found.st_ino, found.st_nlink) == (inode, 2)
    assert await read(objects, ROOT, "bkt", "b") == b"shared"
    assert await healthy(ops)
