"""The S3 front end under load: bodies stream both ways (the daemon's memory stays
bounded whatever the object's size), and many clients at once are all served."""

from __future__ import annotations

import concurrent.futures
import hashlib
import io

GIB = 1 << 30
_CYCLE = bytes(i % 251 for i in range(251))


class Pattern(io.RawIOBase):
    """`size` bytes made up as they are read: a body no test process holds whole."""

    def __init__(self, size: int):
        self.size, self.offset = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.offset, io.SEEK_END: self.size}[whence]
        self.offset = base + offset
        return self.offset

    def tell(self) -> int:
        return self.offset

    def md5(self) -> str:
        digest = hashlib.md5()
        self.seek(0)
        while piece := self.read(1 << 20):
            digest.update(piece)
        return digest.hexdigest()

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.offset)
        start = self.offset % len(_CYCLE)  # byte i is i % 251: the same however it is read
        piece = (_CYCLE * (n // len(_CYCLE) + 2))[start : start + n]
        buffer[:n] = piece
        self.offset += n
        return n


def peak_memory(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_512_mib_put_and_get_at_once_in_bounded_memory(s3):
    """The issue's bound: the daemon stays under 200 MiB while a PUT and a GET of 512 MiB
    each run side by side (the issue said 2 GiB: at two and a half times the bound each,
    and five together, 512 MiB proves the same streaming in a quarter of the time)."""
    size = GIB // 2
    client = s3.client()
    client.create_bucket(Bucket="big")
    client.put_object(Bucket="big", Key="first", Body=Pattern(size))
    assert (s3.path / "big" / "first").stat().st_size == size

    def get() -> str:
        got = s3.client().get_object(Bucket="big", Key="first")["Body"]
        md5 = hashlib.md5()
        while piece := got.read(1 << 20):
            md5.update(piece)
        return md5.hexdigest()

    def put() -> str:
        return s3.client().put_object(Bucket="big", Key="second", Body=Pattern(size))["ETag"]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        got, put_etag = pool.submit(get), pool.submit(put)
        expected = Pattern(size).md5()
        assert got.result() == expected
        assert put_etag.result() == f'"{expected}"'
    assert (s3.path / "big" / "second").stat().st_size == size
    assert s3.mount.process is not None
    assert peak_memory(s3.mount.process.pid) < 200 << 20


def test_a_hundred_clients_at_once(s3):
    client = s3.client()
    client.create_bucket(Bucket="crowd")

    def work(number: int) -> bytes:
        own = s3.client()
        content = f"client {number}\n".encode() * 100
        own.put_object(Bucket="crowd", Key=f"c/{number}", Body=content)
        return own.get_object(Bucket="crowd", Key=f"c/{number}")["Body"].read() == content

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        assert all(pool.map(work, range(100)))
    listed = client.get_paginator("list_objects_v2").paginate(Bucket="crowd", Prefix="c/")
    assert sum(len(page.get("Contents", [])) for page in listed) == 100
