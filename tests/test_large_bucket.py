"""A bucket of 100,000 objects lists correctly, one metadata query per page."""

import hashlib
import os
import re
import subprocess
import time
import uuid

from conftest import fsobj_cli

from fsobj.metadata.schema import ROOT_INODE
from fsobj.metadata.store import Entry
from fsobj.service.store import Store, run_offline

COUNT = 100_000
EMPTY_MD5 = hashlib.md5(b"").hexdigest()


def fill_bucket(store, name: str, count: int) -> None:
    """Write `count` empty objects straight into an unmounted store (fast set-up; the mount
    tests create objects through the mount): a blob file and a metadata row each."""
    fsobj_cli("bucket", "create", "--store", str(store), name)

    async def fill(opened: Store) -> None:
        bucket = await opened.meta.lookup(ROOT_INODE, name)
        now = time.time_ns()
        objects = []
        blobs = f"{store}/blobs"  # its 256 shard directories exist from the store's start
        for i in range(count):
            object_id = str(uuid.uuid4())
            os.close(
                os.open(f"{blobs}/{object_id[:2]}/{object_id}", os.O_CREAT | os.O_WRONLY, 0o400)
            )
            objects.append(
                Entry(
                    0,
                    bucket.inode,
                    f"object-{i:06d}",
                    "object",
                    0o644,
                    0,
                    0,
                    now,
                    now,
                    now,
                    object_id,
                    0,
                    EMPTY_MD5,
                    checksums=b"",
                )
            )
        await opened.meta.insert_objects(objects)

    run_offline(store, fill)


def test_list_100k_objects(mount):
    mount.stop()
    fill_bucket(mount.store, "big", COUNT)
    mount.log_level = "DEBUG"  # for the listing's lines
    mount.start()
    listing = subprocess.run(
        ["ls", "-f", str(mount / "big")], check=True, capture_output=True, text=True
    ).stdout.split()
    names = [n for n in listing if n not in (".", "..")]
    assert len(names) == COUNT
    assert len(set(names)) == COUNT
    assert sorted(names) == [f"object-{i:06d}" for i in range(COUNT)]
    # Each entry's attributes too (what `ls -l` shows, without the two extended attributes
    # it asks of each file, which are a benchmark's business: docs/benchmarks.md).
    long_listing = subprocess.run(
        ["find", str(mount / "big"), "-mindepth", "1", "-printf", "%M %u %s %TY %f\n"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert len(long_listing) == COUNT
    assert set(line.rsplit(" ", 1)[0] for line in long_listing) == {
        f"-rw-r--r-- root 0 {time.strftime('%Y')}"
    }
    # Two listings of 100 pages each (plus a final empty read), not one query per entry.
    pages = re.findall(r"listing \d+: read \d+ entries", mount.log_text())
    assert len(pages) <= 2 * (COUNT // 1000 + 2), len(pages)
