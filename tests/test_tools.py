"""Existing programs work unchanged on a mount."""

import errno
import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def make_tree(root: Path) -> None:
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "docs" / "readme.md").write_text("# hello\n")
    (root / "docs" / "deep" / "data.bin").write_bytes(os.urandom(200_000))
    (root / "empty-dir").mkdir()
    (root / "script.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "script.sh", 0o755)
    os.symlink("docs/readme.md", root / "link")
    os.utime(root / "docs" / "readme.md", (1_500_000_000, 1_500_000_000))


def assert_same_tree(a: Path, b: Path) -> None:
    compared = filecmp.dircmp(a, b)
    assert not compared.left_only and not compared.right_only, (
        compared.left_only,
        compared.right_only,
    )
    for dirpath, _dirs, files in os.walk(a):
        rel = Path(dirpath).relative_to(a)
        for name in files:
            left, right = a / rel / name, b / rel / name
            assert os.path.islink(left) == os.path.islink(right)
            if os.path.islink(left):
                assert os.readlink(left) == os.readlink(right)
                continue
            assert left.read_bytes() == right.read_bytes(), left
            assert os.stat(left).st_mode == os.stat(right).st_mode, left


def run(*cmd: str, cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    root.mkdir()
    make_tree(root)
    return root


def test_cp_a_in_and_out(tree, bucket, tmp_path):
    run("cp", "-a", str(tree), str(bucket / "copy"))
    assert_same_tree(tree, bucket / "copy")
    assert os.stat(bucket / "copy" / "docs" / "readme.md").st_mtime == 1_500_000_000
    run("cp", "-a", str(bucket / "copy"), str(tmp_path / "back"))
    assert_same_tree(tree, tmp_path / "back")


def test_rsync_a_and_second_run_transfers_nothing(tree, bucket):
    run("rsync", "-a", f"{tree}/", f"{bucket}/synced/")
    assert_same_tree(tree, bucket / "synced")
    second = run("rsync", "-a", "--itemize-changes", f"{tree}/", f"{bucket}/synced/")
    assert second.strip() == ""


def test_tar_create_and_extract(tree, bucket, tmp_path):
    archive = tmp_path / "t.tar"
    run("tar", "cf", str(archive), "-C", str(tree), ".")
    (bucket / "x").mkdir()
    run("tar", "xf", str(archive), "-C", str(bucket / "x"))
    assert_same_tree(tree, bucket / "x")
    run("tar", "cf", str(bucket / "again.tar"), "-C", str(bucket / "x"), ".")
    (tmp_path / "out").mkdir()
    run("tar", "xf", str(bucket / "again.tar"), "-C", str(tmp_path / "out"))
    assert_same_tree(tree, tmp_path / "out")


GIT_IDENTITY = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]


@pytest.fixture
def repo(tree, tmp_path) -> Path:
    """A git repository on the native disk holding the test tree in one commit."""
    path = tmp_path / "repo"
    shutil.copytree(tree, path, symlinks=True)
    run("git", "init", "-q", str(path))
    run("git", *GIT_IDENTITY, "-C", str(path), "add", "-A")
    run("git", *GIT_IDENTITY, "-C", str(path), "commit", "-qm", "first")
    return path


def test_git_clone_into_bucket_then_status(repo, bucket):
    run("git", "clone", "-q", str(repo), str(bucket / "clone"))
    status = run("git", "-C", str(bucket / "clone"), "status", "--porcelain")
    assert status.strip() == ""
    (bucket / "clone" / "new.txt").write_text("new\n")
    run("git", *GIT_IDENTITY, "-C", str(bucket / "clone"), "add", "new.txt")
    run("git", *GIT_IDENTITY, "-C", str(bucket / "clone"), "commit", "-qm", "second")
    log = run("git", "-C", str(bucket / "clone"), "log", "--oneline")
    assert len(log.strip().splitlines()) == 2
    run("git", "-C", str(bucket / "clone"), "fsck", "--strict")


def test_git_clone_over_a_transport_then_fsck(repo, bucket):
    # file:// runs upload-pack and index-pack, which reads the pack back through a second
    # descriptor while it still writes it, as a clone from a server does.
    run("git", "clone", "-q", f"file://{repo}", str(bucket / "over-transport"))
    run("git", "-C", str(bucket / "over-transport"), "fsck", "--strict")
    assert run("git", "-C", str(bucket / "over-transport"), "status", "--porcelain") == ""


def test_python_open_and_shutil(tree, bucket):
    shutil.copytree(tree, bucket / "py", symlinks=True)
    assert_same_tree(tree, bucket / "py")
    with open(bucket / "py" / "notes.txt", "w") as f:
        for i in range(1000):
            print(i, file=f)
    with open(bucket / "py" / "notes.txt") as f:
        assert f.read().splitlines()[-1] == "999"
    shutil.move(bucket / "py" / "notes.txt", bucket / "moved.txt")
    shutil.rmtree(bucket / "py")
    assert os.listdir(bucket) == ["moved.txt"]


def test_fsobj_clone_copies_a_tree_and_a_bucket_in_an_instant(tree, bucket, mount):
    from conftest import fsobj_cli

    run("cp", "-a", str(tree), str(bucket / "src"))
    assert not (bucket / "copy").exists()  # the kernel may remember that; clone drops it
    out = fsobj_cli("clone", str(bucket / "src"), str(bucket / "copy")).stdout
    assert out.startswith("cloned ")
    assert_same_tree(tree, bucket / "copy")
    id_of = lambda path: os.getxattr(path, "user.fsobj.id")  # noqa: E731
    assert id_of(bucket / "copy/docs/deep/data.bin") == id_of(bucket / "src/docs/deep/data.bin")
    fsobj_cli("clone", str(bucket), str(mount.path / "bucket-copy"))
    assert_same_tree(tree, mount.path / "bucket-copy" / "copy")
    refused = fsobj_cli("clone", str(bucket / "src"), str(bucket / "copy"), check=False)
    assert refused.returncode != 0 and "exists already" in refused.stderr
    # On a terminal, a line counts the seconds while the copy is made; on a pipe, nothing.
    assert "cloning" not in out
    command = f"{sys.executable} -m fsobj clone {bucket / 'src'} {bucket / 'on-a-tty'}"
    on_tty = subprocess.run(
        ["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=120
    )
    assert on_tty.returncode == 0 and f"cloning {bucket / 'src'}" in on_tty.stdout
    assert_same_tree(tree, bucket / "on-a-tty")


def test_fsobj_snapshot_create_ls_rm(tree, bucket, mount):
    from conftest import fsobj_cli

    run("cp", "-a", str(tree), str(bucket / "data"))
    fsobj_cli("snapshot", "create", str(bucket), "first")
    snapshot = mount.path / f"{bucket.name}.first"
    (bucket / "data" / "docs" / "readme.md").write_text("changed\n")
    shutil.rmtree(bucket / "data" / "empty-dir")
    assert_same_tree(tree, snapshot / "data")
    listed = fsobj_cli("snapshot", "ls", str(bucket)).stdout.split()
    assert listed == ["first", str(snapshot)]
    with pytest.raises(OSError) as refused:
        (snapshot / "data" / "new").write_text("x")
    assert refused.value.errno == errno.EROFS
    fsobj_cli("snapshot", "rm", str(bucket), "first")
    assert not snapshot.exists()
    assert fsobj_cli("snapshot", "ls", str(bucket)).stdout == ""
