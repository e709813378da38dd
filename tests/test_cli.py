"""The fsobj command and mount.sh, as a user runs them."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fsobj_cli, is_mounted

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def places(tmp_path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    yield tmp_path / "store", mountpoint
    if is_mounted(mountpoint):
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)


@pytest.mark.parametrize("options_first", [False, True], ids=["options-after", "options-before"])
def test_mount_sh_mounts_in_background_and_umount_flushes(places, options_first):
    store, mountpoint = places
    options = ["--store", str(store), "--log-level", "debug"]
    where = [str(mountpoint)]
    result = subprocess.run(
        [str(ROOT / "mount.sh"), *(options + where if options_first else where + options)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert is_mounted(mountpoint)  # usable as soon as the command returns
    (mountpoint / "notes").mkdir()
    (mountpoint / "notes" / "todo.txt").write_text("ship it\n")
    assert os.listdir(mountpoint / "notes") == ["todo.txt"]  # logs a DEBUG line
    with open("/proc/mounts") as mounts:
        entry = next(line for line in mounts if line.split()[1] == str(mountpoint))
    assert entry.split()[:3] == [str(store), str(mountpoint), "fuse.fsobj"]
    fsobj_cli("umount", str(mountpoint))
    assert not is_mounted(mountpoint)
    conn = sqlite3.connect(store / "meta.sqlite3")
    names = {row[0] for row in conn.execute("SELECT name FROM entries")}
    assert {"notes", "todo.txt"} <= names
    log = (store / "fsobj.log").read_text()
    assert "mounted store" in log and " DEBUG " in log
    assert os.stat(store).st_mode & 0o777 == 0o700  # only the API service reads it


def test_default_store_is_under_xdg_data_home(places, tmp_path):
    _, mountpoint = places
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"))
    subprocess.run(
        [str(ROOT / ".venv/bin/fsobj"), "mount", str(mountpoint)],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        (mountpoint / "bkt").mkdir()
    finally:
        fsobj_cli("umount", str(mountpoint))
    assert (tmp_path / "xdg" / "fsobj" / "meta.sqlite3").exists()


def test_mount_errors_are_clear_and_harmless(places, tmp_path):
    store, mountpoint = places
    missing = fsobj_cli("mount", "--store", str(store), str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 1
    assert "not a directory" in missing.stderr
    assert "Traceback" not in missing.stderr

    fsobj_cli("mount", "--store", str(store), str(mountpoint))
    try:
        second = tmp_path / "second"
        second.mkdir()
        busy = fsobj_cli("mount", "--store", str(store), str(second), check=False)
        assert busy.returncode == 1
        assert "in use by another fsobj process" in busy.stderr
        assert not is_mounted(second)
    finally:
        fsobj_cli("umount", str(mountpoint))

    conn = sqlite3.connect(store / "meta.sqlite3", isolation_level=None)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    newer = fsobj_cli("mount", "--store", str(store), str(mountpoint), check=False)
    assert newer.returncode == 1
    assert "newer than this fsobj understands" in newer.stderr
    assert not is_mounted(mountpoint)

    not_ours = fsobj_cli("umount", str(tmp_path), check=False)
    assert not_ours.returncode == 1 and "not an fsobj mount" in not_ours.stderr


def test_info_shows_id_etag_size_and_metadata(bucket):
    (bucket / "photos").mkdir()
    path = bucket / "photos" / "cat.png"
    path.write_bytes(b"\x89PNG....")
    os.setxattr(path, "user.camera", b"pinhole")
    out = fsobj_cli("info", str(path)).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines())
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    assert fields["bucket"] == "test-bucket"
    assert fields["key"] == "photos/cat.png"
    assert fields["id"] == os.getxattr(path, "user.fsobj.id").decode()
    assert fields["etag"] == os.getxattr(path, "user.fsobj.etag").decode()
    assert fields["content-type"] == "image/png"
    assert fields["size"] == "8"
    assert fields["meta camera"] == "pinhole"
    os.mkfifo(bucket / "pipe")
    special = fsobj_cli("info", str(bucket / "pipe"), check=False)
    assert special.returncode == 1
    assert "only objects and directories have fsobj metadata" in special.stderr


def test_python_dash_m_fsobj_works():
    out = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "fsobj", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for command in ("mount", "umount", "bucket", "info"):
        assert command in out


def test_a_mount_that_cannot_be_shared_is_private(monkeypatch):
    from fsobj.cli import daemon
    from fsobj.fuse import mount as fuse_mount

    monkeypatch.setattr(daemon, "may_allow_other", lambda: False)
    assert daemon.is_private(False) is True
    assert "allow_other" not in fuse_mount.mount_options(Path("/store"), True)
    monkeypatch.setattr(daemon, "may_allow_other", lambda: True)
    assert daemon.is_private(False) is False
    assert daemon.is_private(True) is True
    assert "allow_other" in fuse_mount.mount_options(Path("/store"), False)


def test_serving_s3_alone_never_imports_pyfuse3():
    """`fsobj serve` runs the core and the S3 front end: what it loads knows no FUSE."""
    check = (
        "import sys\n"
        "from fsobj.cli import daemon, main\n"
        "from fsobj.s3 import server\n"
        "main.parser()\n"
        "assert 'pyfuse3' not in sys.modules, 'pyfuse3 was imported'\n"
        "from fsobj.cli import s3_commands\n"
        "assert 'pyfuse3' not in sys.modules, 'pyfuse3 was imported'\n"
        "from fsobj.fuse import mount\n"
        "assert 'pyfuse3' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True)


def test_bash_completes_fsobj_commands_and_options(tmp_path):
    script = tmp_path / "fsobj.bash"
    script.write_text(fsobj_cli("completion", "bash").stdout)

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        shell = (
            f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1};"
            f' COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}};'
            f' _shtab_fsobj fsobj {words[-1]} {words[-2]}; echo "${{COMPREPLY[@]}}"'
        )
        run = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True)
        return run.stdout.split()

    assert complete("fsobj", "versio") == ["versioning", "versions"]
    assert "--metrics" in complete("fsobj", "mount", "--me")
    assert fsobj_cli("--version").stdout.startswith("fsobj ")
