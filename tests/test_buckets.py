"""Buckets are the top-level directories of a mount."""

import errno
import os

import pytest
from conftest import fsobj_cli

from fsobj.service.names import bucket_name_problem


@pytest.mark.parametrize(
    "name",
    ["abc", "my-bucket", "my.bucket.1", "a" * 63, "1bucket", "bucket9", "192.168.5.4a"],
)
def test_valid_bucket_names(name):
    assert bucket_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("ab", "3 to 63"),
        ("a" * 64, "3 to 63"),
        ("My-Bucket", "lowercase"),
        ("under_score", "lowercase"),
        ("-bucket", "begin and end"),
        ("bucket.", "begin and end"),
        ("my..bucket", "adjacent dots"),
        ("192.168.5.4", "IP address"),
    ],
)
def test_invalid_bucket_names(name, rule):
    assert rule in bucket_name_problem(name)


def test_mkdir_at_top_creates_bucket_listed_by_ls(mount):
    (mount / "photos").mkdir()
    (mount / "backups.2026").mkdir()
    assert sorted(os.listdir(mount.path)) == ["backups.2026", "photos"]
    assert (mount / "photos").is_dir()


def test_bad_bucket_name_is_einval_and_logged_with_rule(mount):
    with pytest.raises(OSError) as caught:
        (mount / "Bad_Name").mkdir()
    assert caught.value.errno == errno.EINVAL
    assert "lowercase letters, digits, hyphens and dots" in mount.log_text()
    assert os.listdir(mount.path) == []


def test_existing_bucket_is_eexist(mount):
    (mount / "photos").mkdir()
    with pytest.raises(FileExistsError):
        (mount / "photos").mkdir()


def test_rmdir_removes_only_empty_buckets(mount):
    (mount / "photos").mkdir()
    (mount / "photos" / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(OSError) as caught:
        (mount / "photos").rmdir()
    assert caught.value.errno == errno.ENOTEMPTY
    (mount / "photos" / "cat.jpg").unlink()
    (mount / "photos").rmdir()
    assert os.listdir(mount.path) == []


def test_regular_files_and_symlinks_at_top_are_eperm(mount):
    with pytest.raises(PermissionError):
        (mount / "loose-file").write_bytes(b"x")
    with pytest.raises(PermissionError):
        os.symlink("anywhere", mount / "loose-link")
    assert os.listdir(mount.path) == []


def test_buckets_cannot_be_renamed_nor_objects_moved_to_top(mount):
    (mount / "one").mkdir()
    (mount / "one" / "f").write_bytes(b"x")
    with pytest.raises(PermissionError):
        os.rename(mount / "one", mount / "two")
    with pytest.raises(PermissionError):
        os.rename(mount / "one" / "f", mount / "f")
    assert os.listdir(mount.path) == ["one"]


def test_bucket_command_on_a_mount(mount):
    fsobj_cli("bucket", "create", str(mount.path), "logs")
    assert (mount / "logs").is_dir()
    listing = fsobj_cli("bucket", "ls", str(mount.path)).stdout
    assert listing.split()[-1] == "logs"
    bad = fsobj_cli("bucket", "create", str(mount.path), "Nope", check=False)
    assert bad.returncode != 0
    assert "Invalid argument" in bad.stderr
    fsobj_cli("bucket", "rm", str(mount.path), "logs")
    assert os.listdir(mount.path) == []


def test_bucket_command_on_an_unmounted_store(store, mount):
    mount.stop()
    fsobj_cli("bucket", "create", "--store", str(store), "offline")
    assert "offline" in fsobj_cli("bucket", "ls", "--store", str(store)).stdout
    mount.start()
    assert os.listdir(mount.path) == ["offline"]
    busy = fsobj_cli("bucket", "ls", "--store", str(store), check=False)
    assert busy.returncode == 1
    assert "in use" in busy.stderr
    mount.stop()
    fsobj_cli("bucket", "rm", "--store", str(store), "offline")
    assert "offline" not in fsobj_cli("bucket", "ls", "--store", str(store)).stdout


def test_a_buckets_owner_and_group_do_not_change(bucket):
    for uid, gid in ((1001, -1), (-1, 1001)):
        with pytest.raises(OSError) as caught:
            os.chown(bucket, uid, gid)
        assert caught.value.errno == errno.EPERM
    assert (os.stat(bucket).st_uid, os.stat(bucket).st_gid) == (0, 0)
