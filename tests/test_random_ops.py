"""An fsx-style exerciser: the same seeded random operations on a mount and on a native
directory must give the same results, errors and contents (hard links included)."""

import errno
import os
import random
import shutil
from pathlib import Path

import pytest

NAMES = ["a", "b", "c", "h", "d/x", "d/y", "d/h", "e/f/g", "e/f/h", "long-" + "n" * 40]
DIRS = ["d", "e", "e/f", "z"]


def apply(root: Path, op: tuple) -> object:
    """Run one operation under `root`; returns what it gave, or the errno's name."""
    kind, *args = op
    try:
        if kind == "write":
            name, offset, data = args
            fd = os.open(root / name, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, data, offset)
            finally:
                os.close(fd)
        elif kind == "overwrite":
            (root / args[0]).write_bytes(args[1])
        elif kind == "append":
            with open(root / args[0], "ab") as f:
                f.write(args[1])
        elif kind == "truncate":
            os.truncate(root / args[0], args[1])
        elif kind == "read":
            fd = os.open(root / args[0], os.O_RDONLY)
            try:
                return os.pread(fd, args[2], args[1])
            finally:
                os.close(fd)
        elif kind == "stat":
            st = os.stat(root / args[0])
            # a directory's st_size is the filesystem's own business
            if not os.path.isfile(root / args[0]):
                return ("dir", oct(st.st_mode))
            return (st.st_size, oct(st.st_mode), st.st_nlink)
        elif kind == "unlink":
            os.unlink(root / args[0])
        elif kind == "rename":
            os.rename(root / args[0], root / args[1])
        elif kind == "link":
            os.link(root / args[0], root / args[1])
        elif kind == "mkdir":
            os.mkdir(root / args[0])
        elif kind == "rmdir":
            os.rmdir(root / args[0])
        elif kind == "listdir":
            return sorted(os.listdir(root / args[0]))
        elif kind == "setxattr":
            os.setxattr(root / args[0], "user.tag", args[1])
        elif kind == "getxattr":
            return os.getxattr(root / args[0], "user.tag")
        return "ok"
    except OSError as error:
        return errno.errorcode[error.errno]


def random_op(rng: random.Random) -> tuple:
    name = rng.choice(NAMES)
    data = rng.randbytes(rng.choice([0, 1, 100, 4096, 70_000, 300_000]))
    kind = rng.choices(
        [
            "write",
            "overwrite",
            "append",
            "truncate",
            "read",
            "stat",
            "unlink",
            "rename",
            "mkdir",
            "rmdir",
            "listdir",
            "setxattr",
            "getxattr",
            "link",
        ],
        weights=[8, 6, 4, 4, 8, 4, 6, 4, 4, 2, 2, 2, 2, 8],
    )[0]
    if kind == "write":
        return (kind, name, rng.choice([0, 1, 4095, 50_000, 1 << 20]), data)
    if kind in ("overwrite", "append"):
        return (kind, name, data)
    if kind == "truncate":
        return (kind, name, rng.choice([0, 1, 5000, 1 << 20]))
    if kind == "read":
        return (kind, name, rng.choice([0, 1, 4096, 60_000]), rng.choice([1, 4096, 1 << 20]))
    if kind in ("rename", "link"):
        return (kind, rng.choice(NAMES + DIRS), rng.choice(NAMES + DIRS))
    if kind in ("mkdir", "rmdir", "listdir"):
        return (kind, rng.choice([*DIRS, ""] if kind == "listdir" else DIRS))
    if kind == "setxattr":
        return (kind, name, rng.randbytes(rng.choice([1, 50])))
    return (kind, name)


def tree(root: Path) -> dict:
    found = {}
    for dirpath, dirs, files in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for d in dirs:
            found[str(rel / d)] = "dir"
        for f in files:
            found[str(rel / f)] = (root / rel / f).read_bytes()
    return found


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_operations_match_a_native_directory(bucket, tmp_path, seed):
    native = tmp_path / "native"
    native.mkdir()
    for root in (native, bucket):
        for d in ("d", "e", "e/f"):
            (root / d).mkdir()
    rng = random.Random(seed)
    for step in range(250):
        op = random_op(rng)
        expected, got = apply(native, op), apply(bucket, op)
        assert got == expected, f"step {step} {op[:2]}: native {expected!r}, fsobj {got!r}"
        if step % 50 == 49:
            assert tree(bucket) == tree(native), f"trees differ after step {step}"
    assert tree(bucket) == tree(native)
    shutil.rmtree(native)


# The last descriptor is write-only: it writes past the kernel's page cache (direct I/O),
# which the others read through, so what they hold of the file must be dropped.
_ACCESS = [os.O_RDWR] * 3 + [os.O_WRONLY]


def in_place_step(fds: dict[Path, list[int]], root: Path, op: tuple) -> object:
    """One step on descriptors opened for writing in place (no O_TRUNC) on one file."""
    kind, slot, *args = op
    fd = fds[root][slot]
    try:
        if kind == "pwrite":
            return os.pwrite(fd, args[1], args[0])
        if kind == "pread":
            return os.pread(fd, args[1], args[0])
        if kind == "ftruncate":
            os.ftruncate(fd, args[0])
        elif kind == "size":
            return os.fstat(fd).st_size
        elif kind == "reopen":  # a close commits; the others go on with what is shared
            os.close(fd)
            fds[root][slot] = os.open(root / "db", _ACCESS[slot])
        return "ok"
    except OSError as error:
        return errno.errorcode[error.errno]


@pytest.mark.parametrize("seed", [11, 12])
def test_writers_in_place_on_many_descriptors_match_a_native_file(bucket, tmp_path, seed):
    native = tmp_path / "native"
    native.mkdir()
    rng = random.Random(seed)
    fds: dict[Path, list[int]] = {}
    for root in (native, bucket):
        (root / "db").write_bytes(b"")
        fds[root] = [os.open(root / "db", access) for access in _ACCESS]
    try:
        for step in range(300):
            slot = rng.randrange(4)
            kind = rng.choice(["pwrite"] * 4 + ["pread"] * 3 + ["ftruncate", "size", "reopen"])
            if kind == "pwrite":
                op: tuple = (
                    kind,
                    slot,
                    rng.randrange(0, 200_000),
                    rng.randbytes(rng.randrange(1, 9000)),
                )
            elif kind == "pread":
                op = (kind, slot, rng.randrange(0, 200_000), rng.randrange(1, 20_000))
            elif kind == "ftruncate":
                op = (kind, slot, rng.randrange(0, 200_000))
            else:
                op = (kind, slot)
            expected = in_place_step(fds, native, op)
            got = in_place_step(fds, bucket, op)
            assert got == expected, f"step {step}: {op[:3]}"
    finally:
        for root in fds:
            for fd in fds[root]:
                os.close(fd)
    assert (bucket / "db").read_bytes() == (native / "db").read_bytes()
