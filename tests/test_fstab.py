"""fstab and systemd: `mount -t fuse.fsobj`, an fstab line mounted by `mount MOUNTPOINT`,
the helper's options, and the systemd units shipped in docs/systemd (checked by
`systemd-analyze verify` where there is one). Real mount(8), real mounts."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fsobj_cli, is_mounted
from s3_fixtures import free_port, parse_key, s3_client, wait_for_port

pytestmark = pytest.mark.same_on_every_store
HELPER = Path("/usr/sbin/mount.fuse.fsobj")
UNITS = Path(__file__).resolve().parent.parent / "docs" / "systemd"


@pytest.fixture
def helper(tmp_path_factory) -> Iterator[Path]:
    """The mount helper, linked where mount(8) looks, by the command that does it. The
    link is the machine's: the tests that use it take turns, or one's teardown could take
    it from under another running in another test process (seen in CI)."""
    turns = tmp_path_factory.getbasetemp().parent / "mount-helper.lock"
    with open(turns, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        had = HELPER.is_symlink() or HELPER.exists()
        fsobj_cli("install-mount-helper")
        try:
            yield HELPER
        finally:
            if not had:
                HELPER.unlink(missing_ok=True)


@contextlib.contextmanager
def unmounted_after(mountpoint: Path) -> Iterator[Path]:
    try:
        yield mountpoint
    finally:
        if is_mounted(mountpoint):
            subprocess.run(["umount", str(mountpoint)], check=False)
        if is_mounted(mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)


def test_mount_t_fuse_fsobj_takes_fsobj_options_and_leaves_mounts_own(helper, tmp_path):
    store, port = tmp_path / "store", free_port()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    options = f"rw,nosuid,noatime,s3=127.0.0.1:{port},commit_interval=2"
    with unmounted_after(mountpoint):
        subprocess.run(
            ["mount", "-t", "fuse.fsobj", str(store), str(mountpoint), "-o", options],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert is_mounted(mountpoint)
        (mountpoint / "from-mount").mkdir()
        (mountpoint / "from-mount" / "k").write_bytes(b"mounted by mount(8)")
        wait_for_port(port)
        key = parse_key(fsobj_cli("key", "create", str(mountpoint), "--uid", "0").stdout)
        client = s3_client(f"http://127.0.0.1:{port}", key)
        body = client.get_object(Bucket="from-mount", Key="k")["Body"].read()
        assert body == b"mounted by mount(8)"
        subprocess.run(["umount", str(mountpoint)], check=True, timeout=60)
        assert not is_mounted(mountpoint)
    refused = subprocess.run(
        ["mount", "-t", "fuse.fsobj", str(store), str(mountpoint), "-o", "colour=blue"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "no mount option 'colour=blue'" in refused.stderr
    assert not is_mounted(mountpoint)


def test_an_fstab_line_mounts_by_its_mount_point(helper, tmp_path):
    store, mountpoint = tmp_path / "store", tmp_path / "by-fstab"
    mountpoint.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{store} {mountpoint} fuse.fsobj noauto,_netdev,private 0 0\n")
    with unmounted_after(mountpoint):
        subprocess.run(
            ["mount", "--fstab", str(fstab), str(mountpoint)],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert is_mounted(mountpoint)
        (mountpoint / "bucket").mkdir()
        assert (mountpoint / "bucket").is_dir()
    assert not is_mounted(mountpoint)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("unit", ["fsobj-mount.service", "fsobj-serve.service"])
def test_the_systemd_units_verify(unit, tmp_path):
    fsobj = Path(sys.executable).parent / "fsobj"  # where the unit's /usr/local/bin/fsobj is
    text = (UNITS / unit).read_text().replace("/usr/local/bin/fsobj", str(fsobj))
    (tmp_path / unit).write_text(text)
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stderr
