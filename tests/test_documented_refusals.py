"""Every row of docs/semantics.md's "Refused" tables, tried on a real mount.

Each case is keyed by the row's "attempt" text: a row without a case, or a case without a
row, fails `test_every_documented_refusal_has_a_case`, and each errno a case sees must be
named in its row. After every refusal, the buckets' whole content (names, kinds, data,
object ids, user metadata) must be what it was: a refusal changes nothing committed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Mount, mounted_at

DOCS = Path(__file__).resolve().parent.parent / "docs" / "semantics.md"
TIB = 1 << 40
_libc = ctypes.CDLL(None, use_errno=True)


def documented_refusals() -> dict[str, str]:
    """attempt -> errno cell, from every table whose header is `| attempt | errno |`."""
    rows: dict[str, str] = {}
    in_table = False
    for line in DOCS.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| attempt | errno |"):
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        elif in_table and not set(cells[0]) <= {"-", " "}:
            rows[cells[0]] = cells[-1]
    return rows


def errno_of(action: Callable[..., object], *args: object) -> int:
    with pytest.raises(OSError) as refused:
        action(*args)
    return refused.value.errno or 0


def _renameat2(old: Path, new: Path, flags: int) -> None:
    at_fdcwd = -100
    if _libc.renameat2(at_fdcwd, bytes(old), at_fdcwd, bytes(new), flags) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))


def _fallocate(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        if _libc.fallocate(fd, 0, ctypes.c_longlong(0), ctypes.c_longlong(1 << 20)) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))
    finally:
        os.close(fd)


def _bind(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def _open_device(path: Path, kind: int, device: int) -> int:
    """The errno of opening a device node made for the purpose (and removed again)."""
    os.mknod(path, kind | 0o600, device)
    try:
        return errno_of(lambda: open(path, "rb").close())
    finally:
        os.unlink(path)


def _deep(b: Path) -> Path:
    """The layout's directory whose key is 1,003 bytes: room for 20 more bytes below it."""
    return b.joinpath(*(letter * 250 for letter in "pqrs"))


def _set_named_acl(path: Path) -> None:
    done = subprocess.run(["setfacl", "-m", "u:1234:r", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        assert "Operation not supported" in done.stderr, done.stderr
        raise OSError(errno.EOPNOTSUPP, done.stderr)


# Each case gets the mount's root and a bucket holding `obj` (an object), `dir/` (a
# directory holding `inner`), `empty/` and `_deep`'s directory; it returns the errnos seen.
Case = Callable[[Path, Path], list[int]]

CASES: dict[str, Case] = {
    "a bucket name breaking S3's rules: 3–63 characters; only `a-z 0-9 . -`; starts and "
    "ends with a letter or digit; no `..`; not an IPv4 address (the log line names the "
    "rule)": lambda root, b: [
        errno_of(Path.mkdir, root / name)
        for name in ("ab", "x" * 64, "Upper", "under_score", "-dash", "dash-", "a..b", "10.1.2.3")
    ],
    "a name that exists": lambda root, b: [errno_of(lambda: (root / b.name).mkdir())],
    "`rmdir` of a bucket that holds anything": lambda root, b: [errno_of(b.rmdir)],
    "a regular file, symlink, FIFO, socket or device at the top level": lambda root, b: [
        errno_of(lambda: (root / "file").write_bytes(b"x")),
        errno_of(lambda: (root / "link").symlink_to(b)),
        errno_of(lambda: os.mkfifo(root / "fifo")),
        errno_of(lambda: _bind(root / "sock")),
        errno_of(lambda: os.mknod(root / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))),
    ],
    "`chown`/`chgrp` of a bucket": lambda root, b: [
        errno_of(lambda: os.chown(b, 1001, -1)),
        errno_of(lambda: os.chown(b, -1, 1001)),
    ],
    "making `.fsobj-versions` in a bucket (the versions' view)": lambda root, b: [
        errno_of(lambda: (b / ".fsobj-versions").mkdir()),
        errno_of(lambda: (b / ".fsobj-versions").write_bytes(b"")),
    ],
    "`mv` of a directory in a versioned bucket (so `mv` moves file by file)": lambda root, b: [
        _versioned(b),
        errno_of(lambda: (b / "dir").rename(b / "moved")),
    ][1:],
    "writing, removing or making anything in `BUCKET/.fsobj-versions/`": lambda root, b: [
        _versioned(b),
        errno_of(lambda: (b / ".fsobj-versions" / "new").mkdir()),
        errno_of(lambda: (b / ".fsobj-versions" / "new").write_bytes(b"x")),
        errno_of(lambda: (b / ".fsobj-versions").rmdir()),
    ][1:],
    "renaming a bucket, moving an object or directory to the top level": lambda root, b: [
        errno_of(lambda: b.rename(root / "renamed-bucket")),
        errno_of(lambda: (b / "obj").rename(root / "obj")),
        errno_of(lambda: (b / "dir").rename(root / "dir")),
    ],
    "a key longer than 1024 bytes of UTF-8 (also when a `mv` of a directory would make a "
    "key below it too long)": lambda root, b: [
        errno_of(lambda: (_deep(b) / ("k" * 21)).write_bytes(b"x")),
        # `dir` itself would fit (a 1,019-byte key), `dir/inner` not
        errno_of(lambda: (b / "dir").rename(_deep(b) / ("d" * 15))),
    ],
    "a path component longer than 255 bytes": lambda root, b: [
        errno_of(lambda: (b / ("n" * 256)).write_bytes(b"x")),
        errno_of(lambda: (b / ("n" * 256)).mkdir()),
    ],
    "a name that is not valid UTF-8": lambda root, b: [
        errno_of(lambda: os.open(bytes(b) + b"/\xff\xfe", os.O_WRONLY | os.O_CREAT, 0o644)),
        errno_of(lambda: os.stat(bytes(b) + b"/\xff\xfe")),
    ],
    "a hard link (`ln`, `link(2)`) into another bucket": lambda root, b: _link_across(root, b),
    "opening a device node (the mount is nodev)": lambda root, b: [
        _open_device(b / "null", stat.S_IFCHR, os.makedev(1, 3)),
        _open_device(b / "loop", stat.S_IFBLK, os.makedev(7, 0)),
    ],
    "`setfacl` of an ACL with named entries on anything but a bucket": lambda root, b: [
        errno_of(lambda: _set_named_acl(b / "obj")),
        errno_of(lambda: _set_named_acl(b / "dir")),
    ],
    "`fallocate` (pyfuse3 has no handler for it, so the kernel answers for it; "
    "`posix_fallocate` falls back to writing)": lambda root, b: [
        errno_of(lambda: _fallocate(b / "obj")),
    ],
    "an object larger than 5 TiB (write or truncate past it)": lambda root, b: [
        errno_of(lambda: os.truncate(b / "obj", 5 * TIB + 1)),
        errno_of(lambda: _write_at(b / "obj", 5 * TIB)),
    ],
    "`rmdir` of a non-empty directory": lambda root, b: [errno_of((b / "dir").rmdir)],
    "`mv` of a directory into itself or below itself": lambda root, b: [
        errno_of(lambda: (b / "dir").rename(b / "dir" / "sub")),
    ],
    "`mv` of a directory onto an object / an object onto a directory": lambda root, b: [
        errno_of(lambda: (b / "empty").rename(b / "obj")),
        errno_of(lambda: (b / "obj").rename(b / "empty")),
    ],
    "`mv` onto a non-empty directory": lambda root, b: [
        errno_of(lambda: (b / "empty").rename(b / "dir")),
    ],
    "`renameat2` with `RENAME_EXCHANGE`": lambda root, b: [
        errno_of(lambda: _renameat2(b / "obj", b / "dir" / "inner", 2)),
    ],
    "`renameat2` with `RENAME_NOREPLACE` onto an existing name": lambda root, b: [
        errno_of(lambda: _renameat2(b / "obj", b / "dir" / "inner", 1)),
    ],
    "user metadata over 2 KiB per object (names without `user.` plus values, as S3 counts)": (
        lambda root, b: [errno_of(lambda: os.setxattr(b / "obj", "user.big", b"v" * 2045))]
    ),
    "writing or removing `user.fsobj.id`, `.etag`, `.bucket`, `.key`": lambda root, b: (
        [
            errno_of(os.setxattr, b / "obj", f"user.fsobj.{name}", b"x")
            for name in ("id", "etag", "bucket", "key")
        ]
        + [errno_of(lambda: os.removexattr(b / "obj", "user.fsobj.id"))]
    ),
    "extended attributes outside `user.` (`trusted.*`, `security.*`)": lambda root, b: [
        errno_of(lambda: os.setxattr(b / "obj", "trusted.t", b"x")),
        errno_of(lambda: os.setxattr(b / "obj", "security.s", b"x")),
        errno_of(lambda: os.getxattr(b / "obj", "trusted.t")),
    ],
}


def _versioned(bucket: Path) -> None:
    os.setxattr(bucket, "user.fsobj.versioning", b"Enabled")


def _link_across(root: Path, b: Path) -> list[int]:
    other = root / f"{b.name}-other"
    other.mkdir()
    try:
        return [errno_of(lambda: os.link(b / "obj", other / "second-name"))]
    finally:
        other.rmdir()


def _write_at(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"x")


def snapshot(root: Path) -> dict[str, object]:
    """Everything a refusal must leave alone: every entry's kind, data, id and metadata."""
    seen: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode):
            names = sorted(os.listxattr(path))
            seen[str(path)] = (
                path.read_bytes(),
                {name: os.getxattr(path, name) for name in names},
                os.getxattr(path, "user.fsobj.id"),
            )
        else:
            seen[str(path)] = stat.S_IFMT(mode)
    return seen


@pytest.fixture(scope="module")
def shared_mount(tmp_path_factory) -> Iterator[Mount]:
    where = tmp_path_factory.mktemp("refusals")
    with mounted_at(where / "store", where / "fsobj.log") as mounted:
        yield mounted


def test_every_documented_refusal_has_a_case():
    assert set(documented_refusals()) == set(CASES)


@pytest.mark.parametrize("attempt", list(CASES))
def test_documented_refusal(shared_mount: Mount, attempt: str):
    b = shared_mount / f"case-{list(CASES).index(attempt)}"
    b.mkdir()
    (b / "obj").write_bytes(b"committed")
    os.setxattr(b / "obj", "user.colour", b"blue")
    (b / "dir").mkdir()
    (b / "dir" / "inner").write_bytes(b"inner")
    (b / "empty").mkdir()
    _deep(b).mkdir(parents=True)
    before = snapshot(shared_mount.path)

    seen = CASES[attempt](shared_mount.path, b)

    documented = documented_refusals()[attempt]
    named = set(re.findall(r"E[A-Z0-9]+", documented))
    for number in seen:  # ENOTSUP and EOPNOTSUPP are one number: either name will do
        aliases = {name for name in dir(errno) if getattr(errno, name) == number}
        assert aliases & named, (errno.errorcode[number], documented)
    assert snapshot(shared_mount.path) == before
    shared_mount.make_durable()
