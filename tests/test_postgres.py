"""Stores whose metadata lives in PostgreSQL (a private cluster, services.py), on real
mounts: made with `fsobj format --meta`, refused with one clear line when the database
cannot be used, one owner at a time, and an outage of the server fails requests with EIO
and heals by itself, losing nothing committed. (The whole mount suite also runs on
PostgreSQL: their `[postgresql]` runs, conftest.ALSO_ON.)"""

from __future__ import annotations

import errno
import json
import os

import psycopg
import pytest
from conftest import fsobj_cli, is_mounted, mounted_at


@pytest.fixture
def pg_store(tmp_path, pg_cluster, pg_password):
    database = pg_cluster.new_database()
    store = tmp_path / "store"
    out = fsobj_cli("format", "--store", str(store), "--meta", database).stdout
    assert f"metadata in {database}" in out
    assert json.loads((store / "backends.json").read_text()) == {
        "meta": database,
        "cache_bytes": 10 << 30,
    }
    assert (store / "backends.json").stat().st_mode & 0o777 == 0o600
    return store, database


def test_a_store_with_its_metadata_in_postgresql(pg_store, tmp_path):
    store, database = pg_store
    with mounted_at(store, tmp_path / "fsobj.log") as mount:
        (mount / "reports").mkdir()
        (mount / "reports" / "2026").mkdir()
        (mount / "reports" / "2026" / "q4.txt").write_bytes(b"numbers")
        os.setxattr(mount / "reports" / "2026" / "q4.txt", "user.owner", b"finance")
        os.rename(mount / "reports" / "2026", mount / "reports" / "this-year")
    assert not (store / "meta.sqlite3").exists()
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT e.name, m.name, m.value FROM entries e JOIN user_metadata m USING (inode)"
        ).fetchall()
    assert rows == [("q4.txt", "owner", b"finance")]
    with mounted_at(store, tmp_path / "fsobj.log") as mount:  # as a restart finds it
        assert (mount / "reports" / "this-year" / "q4.txt").read_bytes() == b"numbers"
    report = fsobj_cli("fsck", "--store", str(store), "--verify")
    assert "store is clean" in report.stdout + report.stderr


def test_one_owner_at_a_time(pg_store, tmp_path):
    """Two stores formatted onto one database would both believe their caches: the
    second is refused while the first is mounted."""
    store, _ = pg_store
    other = tmp_path / "other"
    other.mkdir()
    (other / "backends.json").write_text((store / "backends.json").read_text())
    with mounted_at(store, tmp_path / "fsobj.log"):
        mountpoint = tmp_path / "mnt"
        mountpoint.mkdir()
        result = fsobj_cli("mount", "--store", str(other), str(mountpoint), check=False)
        assert result.returncode == 1
        assert "in use by another fsobj process" in result.stderr, result.stderr
        assert not is_mounted(mountpoint)


def test_databases_that_cannot_be_used_are_one_clear_error(
    pg_cluster, pg_password, tmp_path, monkeypatch
):
    database = pg_cluster.new_database()
    store = tmp_path / "store"

    def refused(*args: str) -> str:
        result = fsobj_cli("format", "--store", str(store), *args, check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result
        assert not store.exists()
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert "no password in the URL" in refused(
        "--meta", database.replace("fsobj@", "fsobj:secret@")
    )
    assert "is not postgresql://" in refused("--meta", "mysql://x@y/z")
    assert "does not exist" in refused("--meta", database + "_absent")
    monkeypatch.setenv("PGPASSWORD", "wrong")
    assert "password authentication failed" in refused("--meta", database)
    monkeypatch.setenv("PGPASSWORD", pg_password)

    # A database of a newer schema than this fsobj knows is refused at mount, untouched.
    fsobj_cli("format", "--store", str(store), "--meta", database)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (99)")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = fsobj_cli("mount", "--store", str(store), str(mountpoint), check=False)
    assert result.returncode == 1 and "newer than this fsobj understands" in result.stderr
    assert not is_mounted(mountpoint)
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT to_regclass('entries')").fetchone() == (None,)


def test_an_outage_of_the_database_is_eio_and_heals(pg_store, pg_cluster, tmp_path):
    store, _ = pg_store
    with mounted_at(store, tmp_path / "fsobj.log") as mount:
        mount.expect_errors = True
        (mount / "ledger").mkdir()
        (mount / "ledger" / "before").write_bytes(b"committed before")
        pg_cluster.stop("immediate")  # as a crash of the server would
        try:
            with pytest.raises(OSError) as raised:
                (mount / "ledger" / "during").write_bytes(b"x")
            assert raised.value.errno == errno.EIO
            with pytest.raises(OSError) as raised:
                os.mkdir(mount / "ledger" / "sub")
            assert raised.value.errno == errno.EIO
        finally:
            pg_cluster.start()
        (mount / "ledger" / "after").write_bytes(b"committed after")
        assert (mount / "ledger" / "before").read_bytes() == b"committed before"
        assert (mount / "ledger" / "after").read_bytes() == b"committed after"
        log = mount.log_text()
        assert log.count("the metadata database fails") == 1, log
        assert "the metadata database answers again" in log
    with mounted_at(store, tmp_path / "fsobj.log") as mount:
        names = sorted(os.listdir(mount / "ledger"))
        assert names in (["after", "before"], ["after", "before", "during"]), names


def test_metadata_in_postgresql_and_blobs_at_an_s3_service(
    pg_cluster, pg_password, tmp_path, monkeypatch
):
    """The README's shared store: both parts elsewhere, the store directory a cache."""
    from services import KEY, seaweedfs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEY[1])
    database = pg_cluster.new_database()
    with seaweedfs(tmp_path / "service") as service:
        service.client().create_bucket(Bucket="shared")
        store = tmp_path / "store"
        fsobj_cli(
            "format", "--store", str(store), "--meta", database,
            "--data", "s3://shared/objects", "--endpoint", service.endpoint,
        )  # fmt: skip
        with mounted_at(store, tmp_path / "fsobj.log") as mount:
            (mount / "team").mkdir()
            (mount / "team" / "notes.md").write_bytes(b"# notes\n")
            blob = os.getxattr(mount / "team" / "notes.md", "user.fsobj.id").decode()
        held = service.client().list_objects_v2(Bucket="shared", Prefix="objects/")
        assert [item["Key"] for item in held["Contents"]] == [f"objects/{blob}"]
        for cached in (store / "blobs").rglob("*-*"):
            cached.unlink()  # as on a host that never read it
        with mounted_at(store, tmp_path / "fsobj.log") as mount:
            assert (mount / "team" / "notes.md").read_bytes() == b"# notes\n"
        assert not (store / "meta.sqlite3").exists()
