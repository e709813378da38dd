"""The API service's rules, driven in-process: the FUSE handlers called directly on a store
in a temporary directory, with a stand-in for the kernel's request context. No mount: what
the kernel does (permission bits, caching) is tested on real mounts elsewhere."""

import errno
import os
import stat
from types import SimpleNamespace

import pyfuse3
import pytest
import trio
import trio_asyncio

from fsobj.fuse.operations import Operations
from fsobj.metadata.schema import ROOT_INODE
from fsobj.service.store import open_store


def ctx(uid: int = 0, gid: int | None = None) -> SimpleNamespace:
    """What pyfuse3's RequestContext carries (it cannot be built from Python)."""
    return SimpleNamespace(uid=uid, gid=uid if gid is None else gid, pid=os.getpid(), umask=0o022)


@pytest.fixture
async def ops(tmp_path):
    async with trio_asyncio.open_loop(), open_store(tmp_path / "store") as store:
        yield Operations(store.service)


async def refused(call) -> int:
    with pytest.raises(pyfuse3.FUSEError) as raised:
        await call
    return raised.value.errno


async def bucket(ops, name: str = "bkt", uid: int = 0) -> int:
    return (await ops.mkdir(ROOT_INODE, name.encode(), 0o755, ctx(uid))).st_ino


async def put(ops, parent: int, name: bytes, data: bytes, who=None) -> int:
    info, attrs = await ops.create(parent, name, 0o644, os.O_WRONLY | os.O_TRUNC, who or ctx())
    await ops.write(info.fh, 0, data)
    await ops.flush(info.fh)
    await ops.release(info.fh)
    return attrs.st_ino


async def get(ops, inode: int) -> bytes:
    info = await ops.open(inode, os.O_RDONLY, ctx())
    try:
        return await ops.read(info.fh, 0, 1 << 20)
    finally:
        await ops.release(info.fh)


async def test_buckets_follow_s3_naming_rules_and_hold_the_top_level(ops):
    assert await refused(ops.mkdir(ROOT_INODE, b"Bad_Name", 0o755, ctx())) == errno.EINVAL
    assert await refused(ops.mkdir(ROOT_INODE, b"ab", 0o755, ctx())) == errno.EINVAL
    assert await refused(ops.mkdir(ROOT_INODE, b"10.0.0.1", 0o755, ctx())) == errno.EINVAL
    assert await refused(ops.create(ROOT_INODE, b"file", 0o644, os.O_WRONLY, ctx())) == errno.EPERM
    made = await bucket(ops, "good-name.1")
    assert stat.S_IMODE((await ops.getattr(made, ctx())).st_mode) == 0o700  # starts private
    assert await refused(ops.mkdir(ROOT_INODE, b"good-name.1", 0o755, ctx(5))) == errno.EEXIST


async def test_only_the_owner_or_an_administrator_removes_a_bucket_and_only_when_empty(ops):
    owned = await bucket(ops, "mine", uid=1001)
    assert await refused(ops.rmdir(ROOT_INODE, b"mine", ctx(1002))) == errno.EACCES
    await put(ops, owned, b"k", b"v", ctx(1001))
    assert await refused(ops.rmdir(ROOT_INODE, b"mine", ctx(1001))) == errno.ENOTEMPTY
    await ops.unlink(owned, b"k", ctx(1001))
    await ops.rmdir(ROOT_INODE, b"mine", ctx(1001))
    made = await bucket(ops, "theirs", uid=1003)
    assert made
    await ops.rmdir(ROOT_INODE, b"theirs", ctx(0))  # uid 0 administers every bucket


async def test_keys_are_utf8_within_s3s_length_limits(ops):
    b = await bucket(ops)
    assert await refused(put(ops, b, b"\xff\xfe", b"x")) == errno.EINVAL
    assert await refused(put(ops, b, b"n" * 256, b"x")) == errno.ENAMETOOLONG
    parent = b
    for _ in range(4):  # 4 levels of 250 bytes: a key of 1,000 bytes and more
        parent = (await ops.mkdir(parent, b"d" * 250, 0o755, ctx())).st_ino
    assert await refused(put(ops, parent, b"x" * 30, b"x")) == errno.ENAMETOOLONG
    assert await get(ops, await put(ops, parent, b"x" * 20, b"fits")) == b"fits"


async def test_a_rewrite_commits_a_new_blob_and_metadata_outlives_it(ops):
    b = await bucket(ops)
    inode = await put(ops, b, b"obj", b"first")
    attrs = await ops.getattr(inode, ctx())
    assert (attrs.st_size, attrs.st_blksize, attrs.st_nlink) == (5, 1 << 20, 1)  # cp's buffer
    first_id = await ops.getxattr(inode, b"user.fsobj.id", ctx())
    await ops.setxattr(inode, b"user.color", b"blue", ctx())
    await put_again(ops, inode, b"second")
    assert await get(ops, inode) == b"second"
    assert await ops.getxattr(inode, b"user.fsobj.id", ctx()) != first_id
    assert await ops.getxattr(inode, b"user.color", ctx()) == b"blue"
    assert await refused(ops.setxattr(inode, b"user.fsobj.id", b"x", ctx())) == errno.EPERM


async def put_again(ops, inode: int, data: bytes) -> None:
    info = await ops.open(inode, os.O_WRONLY | os.O_TRUNC, ctx())
    await ops.write(info.fh, 0, data)
    await ops.release(info.fh)


async def test_rename_refuses_what_posix_and_s3_refuse(ops):
    b = await bucket(ops)
    other = await bucket(ops, "other")
    d = (await ops.mkdir(b, b"dir", 0o755, ctx())).st_ino
    sub = (await ops.mkdir(d, b"sub", 0o755, ctx())).st_ino
    await put(ops, b, b"obj", b"x")
    assert await refused(ops.rename(b, b"dir", sub, b"in", 0, ctx())) == errno.EINVAL
    assert await refused(ops.rename(b, b"obj", ROOT_INODE, b"top", 0, ctx())) == errno.EPERM
    assert await refused(ops.rename(ROOT_INODE, b"bkt", ROOT_INODE, b"new", 0, ctx())) == (
        errno.EPERM
    )
    assert await refused(ops.rename(b, b"obj", b, b"dir", 0, ctx())) == errno.EISDIR
    flags = pyfuse3.RENAME_NOREPLACE
    await put(ops, b, b"obj2", b"y")
    assert await refused(ops.rename(b, b"obj", b, b"obj2", flags, ctx())) == errno.EEXIST
    await ops.rename(b, b"obj", other, b"moved", 0, ctx())  # across buckets: no data moves
    moved = await ops.lookup(other, b"moved", ctx())
    assert await get(ops, moved.st_ino) == b"x"
    assert (await ops.lookup(b, b"obj", ctx())).st_ino == 0  # gone: a negative entry


async def test_a_directory_counts_its_subdirectories_in_its_links(ops):
    b = await bucket(ops)
    for name in (b"a", b"b", b"c"):
        await ops.mkdir(b, name, 0o755, ctx())
    await put(ops, b, b"file", b"x")
    assert (await ops.getattr(b, ctx())).st_nlink == 2 + 3
    await ops.rmdir(b, b"b", ctx())
    assert (await ops.getattr(b, ctx())).st_nlink == 2 + 2


async def test_special_files_fifos_sockets_and_devices(ops):
    b = await bucket(ops)
    fifo = await ops.mknod(b, b"pipe", stat.S_IFIFO | 0o644, 0, ctx())
    assert stat.S_ISFIFO(fifo.st_mode)
    sock = await ops.mknod(b, b"sock", stat.S_IFSOCK | 0o644, 0, ctx())
    assert stat.S_ISSOCK(sock.st_mode)
    device = await ops.mknod(b, b"dev", stat.S_IFBLK | 0o644, os.makedev(8, 1), ctx())
    assert stat.S_ISBLK(device.st_mode) and device.st_rdev == os.makedev(8, 1)
    assert (await ops.getattr(device.st_ino, ctx())).st_rdev == os.makedev(8, 1)


async def test_reading_the_acl_needs_read_acp_and_changing_it_write_acp(ops):
    b = await bucket(ops, uid=1001)
    assert b"owner uid:1001" in await ops.getxattr(b, b"user.fsobj.acl", ctx(1001))
    assert await refused(ops.getxattr(b, b"user.fsobj.acl", ctx(1002))) == errno.EACCES
    await ops.setxattr(b, b"user.fsobj.acl", b"uid:1002 READ_ACP\n", ctx(1001))
    assert b"uid:1002 READ_ACP" in await ops.getxattr(b, b"user.fsobj.acl", ctx(1002))
    grant = ops.setxattr(b, b"user.fsobj.acl", b"uid:1002 FULL_CONTROL\n", ctx(1002))
    assert await refused(grant) == errno.EACCES
    bad = ops.setxattr(b, b"user.fsobj.acl", b"nobody FLY\n", ctx(1001))
    assert await refused(bad) == errno.EINVAL


async def test_a_directory_move_changes_the_bucket_and_key_length_of_everything_below(ops):
    b, other = await bucket(ops), await bucket(ops, "other")
    top = (await ops.mkdir(b, b"top", 0o755, ctx())).st_ino
    low = (await ops.mkdir(top, b"low", 0o755, ctx())).st_ino
    inode = await put(ops, low, b"obj", b"x")
    assert await ops.getxattr(inode, b"user.fsobj.bucket", ctx()) == b"bkt"
    assert await ops.getxattr(inode, b"user.fsobj.key", ctx()) == b"top/low/obj"
    long_name = b"t" * 250
    await ops.rename(b, b"top", other, long_name, 0, ctx())
    assert await ops.getxattr(inode, b"user.fsobj.bucket", ctx()) == b"other"
    key = long_name + b"/low/obj"
    assert await ops.getxattr(inode, b"user.fsobj.key", ctx()) == key
    deeper = low
    for _ in range(3):  # 251 + 4 + 3 * 251 bytes of prefix: 16 left for a name
        deeper = (await ops.mkdir(deeper, b"d" * 250, 0o755, ctx())).st_ino
    assert await refused(put(ops, deeper, b"x" * 17, b"x")) == errno.ENAMETOOLONG
    assert await get(ops, await put(ops, deeper, b"x" * 16, b"ok")) == b"ok"


async def test_the_top_level_holds_nothing_but_buckets(ops):
    for kind in (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFREG):
        assert await refused(ops.mknod(ROOT_INODE, b"loose", kind | 0o644, 0, ctx())) == (
            errno.EPERM
        )
    assert await refused(ops.symlink(ROOT_INODE, b"link", b"bkt", ctx())) == errno.EPERM


def test_replies_the_kernel_gave_up_on_are_not_errors():
    """pyfuse3 says "fuse_reply_* failed with No such file or directory" when the kernel no
    longer waits (an interrupted request, a release that met the unmount). If pyfuse3
    changes those words, this fails first and names them."""
    import logging
    from pathlib import Path

    import pyfuse3

    from fsobj.fuse.edge import ABANDONED_REPLY, AbandonedReplies

    handlers = Path(pyfuse3.__file__).parent / "handlers.pxi"
    assert f"log.error('fuse_release(): {ABANDONED_REPLY}', strerror(-ret))" in (
        handlers.read_text()
    ), "pyfuse3's handlers.pxi: the words of a failed reply"

    def record(reason: str) -> logging.LogRecord:
        return logging.LogRecord(
            "pyfuse3", logging.ERROR, "", 0, f"fuse_release(): {ABANDONED_REPLY}", (reason,), None
        )

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    try:
        abandoned = record("No such file or directory")
        assert not AbandonedReplies().filter(abandoned)
        assert abandoned.levelname == "DEBUG"
        other = record("Broken pipe")
        assert AbandonedReplies().filter(other) and other.levelname == "ERROR"
    finally:
        root.setLevel(level)


async def test_a_close_that_waited_on_the_writer_it_followed_commits_what_it_holds_now(ops):
    """Writers in place share the working copy of the first one open. A close that waited
    while that one committed and closed may hold the working copy itself by then, with
    another writer's change in it: it commits that change, never drops it. Each round
    runs the three requests at once, which trio schedules in a different order."""
    b = await bucket(ops)
    for round in range(40):
        inode = await put(ops, b, b"shared-%d.db" % round, b"")
        first, closer, writer = [(await ops.open(inode, os.O_RDWR, ctx())).fh for _ in range(3)]
        await ops.write(first, 0, b"record 0")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ops.release, first)
            nursery.start_soon(ops.release, closer)
            nursery.start_soon(ops.write, writer, 8, b"record 1")
        await ops.release(writer)
        assert await get(ops, inode) == b"record 0record 1"
