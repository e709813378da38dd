"""POSIX inside buckets, through a real mount, as several users (docs/security.md): the
kernel checks mode bits from the attributes fsobj reports, the same for everyone."""

import os
import socket
import stat
import subprocess

import pytest
from conftest import as_user

OWNER, OTHER = 1000, 1001
GROUP = 3000


@pytest.fixture
def shared(mount):
    """A bucket that everyone may read and write, made by OWNER."""
    path = f"{mount.path}/commons"
    assert as_user(OWNER, [["mkdir", path]]) == ["ok"]
    subprocess.run(
        [
            "setpriv",
            f"--reuid={OWNER}",
            f"--regid={OWNER}",
            "--clear-groups",
            "setfacl",
            "-m",
            "o::rwx",
            path,
        ],
        check=True,
    )
    return path


def test_mode_bits_decide_who_may_write_and_remove(shared):
    f, ro_dir = f"{shared}/mine", f"{shared}/closed"
    assert as_user(OWNER, [["write", f, "owner's"], ["mkdir", ro_dir]]) == ["ok", "ok"]
    assert as_user(OWNER, [["write", f"{ro_dir}/inside", "x"], ["chmod", ro_dir, "755"]]) == [
        "ok",
        "ok",
    ]
    assert as_user(
        OTHER,
        [
            ["append", f, "more"],
            ["write", f, "replaced"],
            ["truncate", f, "0"],
            ["write", f"{ro_dir}/new", "x"],
            ["unlink", f"{ro_dir}/inside"],
            ["read", f],
            ["stat", f],
        ],
    ) == ["EACCES", "EACCES", "EACCES", "EACCES", "EACCES", "owner's", "0o644"]
    # The bucket itself is writable by everyone: its entries may be removed by anyone.
    assert as_user(OTHER, [["unlink", f]]) == ["ok"]


def test_a_sticky_directory_keeps_others_from_removing_or_renaming(shared):
    tmp = f"{shared}/tmp"
    made = as_user(OWNER, [["mkdir", tmp], ["chmod", tmp, "1777"], ["write", f"{tmp}/o", "x"]])
    assert made == ["ok"] * 3
    assert as_user(
        OTHER,
        [
            ["unlink", f"{tmp}/o"],
            ["rename", f"{tmp}/o", f"{tmp}/taken"],
            ["write", f"{tmp}/mine", "y"],
            ["unlink", f"{tmp}/mine"],
        ],
    ) == ["EPERM", "EPERM", "ok", "ok"]
    assert os.path.exists(f"{tmp}/o")
    assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o1777


def test_only_the_owner_changes_mode_and_sets_times(shared):
    f = f"{shared}/f"
    assert as_user(OWNER, [["write", f, "x"], ["chmod", f, "666"]]) == ["ok", "ok"]
    assert as_user(OTHER, [["chmod", f, "777"], ["utime", f], ["touch", f]]) == [
        "EPERM",
        "EPERM",
        "ok",  # times set to now need only write permission
    ]
    assert as_user(OWNER, [["chmod", f, "600"], ["utime", f]]) == ["ok", "ok"]
    assert os.stat(f).st_mtime == 1_000_000


def test_everyone_sees_the_stored_mode_and_owner(shared):
    f = f"{shared}/f"
    assert as_user(OWNER, [["write", f, "x"], ["chmod", f, "640"]]) == ["ok", "ok"]
    assert as_user(OTHER, [["stat", f]]) == ["0o640"]
    assert os.stat(f).st_uid == OWNER and os.stat(f).st_gid == OWNER
    listing = subprocess.run(
        ["setpriv", f"--reuid={OTHER}", f"--regid={OTHER}", "--clear-groups", "ls", "-ln", f],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert listing.startswith(f"-rw-r----- 1 {OWNER} {OWNER} 1 ")


def test_a_write_by_another_user_clears_set_id_bits(shared):
    f = f"{shared}/tool"
    assert as_user(OWNER, [["write", f, "#!/bin/sh\n"], ["chmod", f, "6777"]]) == ["ok", "ok"]
    assert as_user(OTHER, [["append", f, "echo\n"]]) == ["ok"]
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o777
    # Root keeps them, as on a local disk (CAP_FSETID).
    os.chmod(f, 0o6777)
    with open(f, "a") as out:
        out.write("true\n")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o6777


def test_chmod_by_an_owner_outside_the_group_clears_set_group_id(shared):
    f = f"{shared}/g"
    assert as_user(OWNER, [["write", f, "x"]]) == ["ok"]
    os.chown(f, OWNER, GROUP)
    assert as_user(OWNER, [["chmod", f, "2755"]]) == ["ok"]
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o755
    assert as_user(OWNER, [["chmod", f, "2755"]], groups=(GROUP,)) == ["ok"]
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o2755


def test_link_counts_and_dot_entries(bucket):
    (bucket / "a" / "b").mkdir(parents=True)
    (bucket / "c").mkdir()
    (bucket / "f").write_text("x")
    assert os.stat(bucket).st_nlink == 4
    assert os.stat(bucket / "a").st_nlink == 3
    assert os.stat(bucket / "c").st_nlink == 2
    os.rename(bucket / "a" / "b", bucket / "c" / "b")
    assert (os.stat(bucket / "a").st_nlink, os.stat(bucket / "c").st_nlink) == (2, 3)
    (bucket / "c" / "b").rmdir()
    assert os.stat(bucket / "c").st_nlink == 2
    listing = subprocess.run(["ls", "-a", bucket], capture_output=True, text=True, check=True)
    assert listing.stdout.split() == [".", "..", "a", "c", "f"]
    with open(bucket / "f") as f:
        assert os.fstat(f.fileno()).st_nlink == 1
        os.unlink(bucket / "f")
        assert os.fstat(f.fileno()).st_nlink == 0
        assert f.read() == "x"


def test_fifos_sockets_and_root_s_device_nodes_work(bucket):
    fifo = bucket / "pipe"
    os.mkfifo(fifo, 0o600)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    writer = subprocess.Popen(["sh", "-c", f"echo through > {fifo}"])
    assert fifo.read_text() == "through\n"
    assert writer.wait() == 0
    with pytest.raises(OSError):  # no blob: not an object
        os.getxattr(fifo, "user.fsobj.id")
    path = str(bucket / "sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    client = socket.socket(socket.AF_UNIX)
    client.connect(path)
    peer, _ = server.accept()
    client.sendall(b"hello")
    assert peer.recv(5) == b"hello"
    for s in (peer, client, server):
        s.close()
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    # Root makes device nodes (the kernel asks CAP_MKNOD); the mount is nodev, so none
    # is ever opened as its device.
    os.mknod(bucket / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(bucket / "loop", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    null, loop = os.stat(bucket / "null"), os.stat(bucket / "loop")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(null.st_mode) == 0o666 & ~umask  # as anywhere
    with pytest.raises(PermissionError):
        os.close(os.open(bucket / "null", os.O_RDONLY))
    os.chmod(bucket, 0o777)
    assert as_user(1001, [["mknod", str(bucket / "mine"), "1", "3"]]) == ["EPERM"]
    os.unlink(bucket / "null")
    os.unlink(bucket / "loop")
    os.link(fifo, bucket / "hard")  # any file but a directory may have several names
    assert os.stat(bucket / "hard").st_ino == os.stat(fifo).st_ino
    os.unlink(bucket / "hard")
    os.unlink(fifo)
    os.unlink(path)
    assert sorted(os.listdir(bucket)) == []


def test_hard_links_with_ln_cp_al_and_rsync_link_dest(bucket):
    """Several names, one file: ln, cp -al and rsync --link-dest make them; a change
    through one name shows through the others, for every user; the last unlink frees it."""
    (bucket / "src" / "sub").mkdir(parents=True)
    (bucket / "src" / "a").write_text("alpha")
    (bucket / "src" / "sub" / "b").write_text("beta")
    subprocess.run(["ln", f"{bucket}/src/a", f"{bucket}/src/sub/a-too"], check=True)
    a, a_too = os.stat(bucket / "src" / "a"), os.stat(bucket / "src" / "sub" / "a-too")
    assert a.st_ino == a_too.st_ino and a.st_nlink == a_too.st_nlink == 2
    with open(bucket / "src" / "sub" / "a-too", "a") as f:
        f.write("+")
    os.chmod(bucket, 0o755)
    assert as_user(OWNER, [["read", f"{bucket}/src/a"]]) == ["alpha+"]
    os.chmod(bucket / "src" / "sub" / "a-too", 0o640)
    assert as_user(OWNER, [["read", f"{bucket}/src/a"]]) == ["EACCES"]
    assert (bucket / "src" / "a").read_text() == "alpha+"
    assert stat.S_IMODE(os.stat(bucket / "src" / "sub" / "a-too").st_mode) == 0o640

    subprocess.run(["cp", "-al", f"{bucket}/src", f"{bucket}/copy"], check=True)
    assert os.stat(bucket / "copy" / "sub" / "b").st_ino == os.stat(bucket / "src/sub/b").st_ino
    assert os.stat(bucket / "copy" / "a").st_nlink == 4
    (bucket / "next").mkdir()
    subprocess.run(
        ["rsync", "-a", f"--link-dest={bucket}/copy", f"{bucket}/src/", f"{bucket}/next/"],
        check=True,
    )
    assert os.stat(bucket / "next" / "sub" / "b").st_nlink == 3  # linked, not copied
    du = subprocess.run(["du", "-sb", f"{bucket}"], capture_output=True, text=True, check=True)
    assert int(du.stdout.split()[0]) == 6 + 4  # each file counted once (directories: 0)

    for name in ("src", "copy", "next"):
        subprocess.run(["rm", "-rf", f"{bucket}/{name}"], check=True)
    assert os.listdir(bucket) == []
