"""A store whose blobs live at an S3 service (SeaweedFS here), on real mounts: every blob
is at the service before its object exists, the local cache stays bounded and is refilled
and checked, and an outage fails writes cleanly and heals by itself."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import fsobj_cli, mounted_at
from services import KEY, SeaweedFS, seaweedfs

MIB = 1 << 20


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as running:
        yield running


@pytest.fixture
def remote_store(service: SeaweedFS, tmp_path: Path, monkeypatch, request):
    """A new store formatted onto its own prefix of the service's bucket `fsobj-blobs`,
    with credentials in a 0600 file that the mount finds through the environment."""
    service.offer_bucket(monkeypatch, tmp_path)
    prefix = request.node.name[:40]
    store = tmp_path / "store"
    out = fsobj_cli(
        "format", "--store", str(store), "--data", f"s3://fsobj-blobs/{prefix}",
        "--endpoint", service.endpoint, "--cache-size", "3M",
    ).stdout  # fmt: skip
    assert "blobs at s3://fsobj-blobs/" in out
    return store, prefix


def remote_blobs(service: SeaweedFS, prefix: str) -> dict[str, int]:
    """The blobs the service holds under `prefix`: object id -> size."""
    pages = service.client().get_paginator("list_objects_v2")
    return {
        item["Key"].split("/")[-1]: item["Size"]
        for page in pages.paginate(Bucket="fsobj-blobs", Prefix=prefix + "/")
        for item in page.get("Contents", [])
    }


def remote_blobs_left(
    service: SeaweedFS, prefix: str, expected: int, seconds: float = 10.0
) -> dict[str, int]:
    """`remote_blobs` once the service is down to `expected` of them, or after `seconds`:
    a daemon removes the blobs a durability point made unnamed just after it."""
    deadline = time.monotonic() + seconds
    while len(held := remote_blobs(service, prefix)) > expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return held


def object_id(path: Path) -> str:
    return os.getxattr(path, "user.fsobj.id").decode()


def cached_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in (store / "blobs").rglob("*") if p.is_file())


def content(number: int, size: int = MIB) -> bytes:
    return bytes([number % 251]) * size


def test_blobs_live_at_the_service_and_the_cache_stays_bounded(service, remote_store, tmp_path):
    store, prefix = remote_store
    with mounted_at(store, tmp_path / "fsobj.log") as mount:
        bucket = mount / "photos"
        bucket.mkdir()
        for number in range(6):
            (bucket / f"p{number}").write_bytes(content(number))
        (bucket / "small").write_bytes(b"small")
        ids = {object_id(bucket / f"p{n}"): n for n in range(6)}
        held = remote_blobs(service, prefix)
        assert {i: held[i] for i in ids} == dict.fromkeys(ids, MIB)
        assert held[object_id(bucket / "small")] == 5
        # Six 1 MiB blobs went through a 3 MiB cache: at most three stay.
        assert cached_bytes(store) <= 3 * MIB
        for number in (0, 5, 1, 4):  # read back, refilled from the service as needed
            assert (bucket / f"p{number}").read_bytes() == content(number)
        assert cached_bytes(store) <= 3 * MIB
        stats = fsobj_cli("stats", str(mount.path)).stdout.splitlines()
        counted = dict(line.split() for line in stats)
        # What the daemon counts of its cache and of the service (its metrics' totals).
        assert int(counted["blob_cache_misses"]) >= 1 and int(counted["blob_cache_evictions"]) >= 3
        assert int(counted["blob_service_calls"]) >= 8  # seven uploads and a download at least

        # A rewrite is a new blob at the service; the old one goes once nothing names it.
        old = object_id(bucket / "p0")
        (bucket / "p0").write_bytes(b"rewritten")
        mount.make_durable()
        held = remote_blobs_left(service, prefix, 7)
        assert old not in held and held[object_id(bucket / "p0")] == 9
        (bucket / "p1").unlink()
        mount.make_durable()
        held = remote_blobs_left(service, prefix, 6)
        assert object_id(bucket / "p2") in held
        assert len(held) == 6  # p0, p2..p5, small

    # Without any local blob (a new host, a lost cache) everything is still there.
    shutil.rmtree(store / "blobs")
    with mounted_at(store, tmp_path / "fsobj.log") as mount:
        bucket = mount / "photos"
        assert (bucket / "p0").read_bytes() == b"rewritten"
        for number in range(2, 6):
            assert (bucket / f"p{number}").read_bytes() == content(number)
    report = fsobj_cli("fsck", "--store", str(store), "--verify")
    assert "store is clean" in report.stdout + report.stderr


def test_a_damaged_blob_at_the_service_is_an_error_never_wrong_data(
    service, remote_store, tmp_path
):
    store, prefix = remote_store
    with mounted_at(store, tmp_path / "fsobj.log") as mount:
        (mount / "docs").mkdir()
        (mount / "docs" / "report").write_bytes(content(7, 2 * MIB))
        blob = object_id(mount / "docs" / "report")
    # The same size, other bytes: only the checksums can tell.
    service.client().put_object(
        Bucket="fsobj-blobs", Key=f"{prefix}/{blob}", Body=content(8, 2 * MIB)
    )
    shutil.rmtree(store / "blobs")
    with mounted_at(store, tmp_path / "fsobj.log") as mount:
        mount.expect_errors = True
        with pytest.raises(OSError) as raised:
            (mount / "docs" / "report").read_bytes()
        assert raised.value.errno == errno.EIO
        assert "fails its checksum" in mount.log_text()
    assert not list((store / "blobs").rglob(blob))  # no damaged copy under its name


def test_an_outage_fails_writes_cleanly_and_heals(service, remote_store, tmp_path):
    store, _ = remote_store
    with mounted_at(store, tmp_path / "fsobj.log") as mount:
        mount.expect_errors = True
        (mount / "logs").mkdir()
        (mount / "logs" / "kept").write_bytes(b"before the outage")
        service.stop()
        try:
            with pytest.raises(OSError) as raised, open(mount / "logs" / "kept", "wb") as out:
                out.write(b"during the outage")
            assert raised.value.errno == errno.EIO
            with pytest.raises(OSError) as raised:
                (mount / "logs" / "new").write_bytes(b"during the outage")
            assert raised.value.errno == errno.EIO
            # Nothing of the failed writes is committed; cached blobs still read.
            assert (mount / "logs" / "kept").read_bytes() == b"before the outage"
            assert not (mount / "logs" / "new").exists() or (
                (mount / "logs" / "new").read_bytes() == b""
            )
        finally:
            service.start()
        (mount / "logs" / "new").write_bytes(b"after the outage")
        assert (mount / "logs" / "new").read_bytes() == b"after the outage"
        log = mount.log_text()
        assert log.count("the blob service at") == 2  # one line when it fails, one when back
        assert "answers again" in log


def test_backends_that_do_not_work_are_one_clear_error_and_nothing_is_written(
    service, tmp_path, monkeypatch
):
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    store = tmp_path / "store"

    def format_fails(*options: str, env: dict[str, str]) -> str:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        result = fsobj_cli("format", "--store", str(store), *options, check=False)
        assert result.returncode == 1, result
        assert not (store / "backends.json").exists()
        assert "Traceback" not in result.stderr
        return result.stderr.strip()

    good = {"AWS_ACCESS_KEY_ID": KEY[0], "AWS_SECRET_ACCESS_KEY": KEY[1]}
    wrong = {"AWS_ACCESS_KEY_ID": KEY[0], "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    endpoint = ("--endpoint", service.endpoint)
    assert "not s3://BUCKET" in format_fails("--data", "http://x/y", *endpoint, env=good)
    assert "no bucket 'absent'" in format_fails("--data", "s3://absent/p", *endpoint, env=good)
    message = format_fails("--data", "s3://probe/p", *endpoint, env=wrong)
    assert message.endswith("wrong credentials, or none for this bucket"), message
    assert len(message.splitlines()) == 1
    dead = ("--endpoint", "http://127.0.0.1:9")
    assert "blob service cannot be used" in format_fails("--data", "s3://probe/p", *dead, env=good)

    # A formatted store whose credentials stop working does not mount, and says why.
    fsobj_cli("format", "--store", str(store), "--data", "s3://probe/p", *endpoint)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = fsobj_cli("mount", "--store", str(store), str(mountpoint), check=False)
    assert result.returncode != 0
    assert "blob service cannot be used" in result.stderr, result.stderr
    assert not (store / "meta.sqlite3").exists()
