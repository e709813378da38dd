"""The crash harness (tests/crash_harness.py), short enough for every run."""

import pytest
from crash_harness import run


def test_sigkill_at_random_moments_loses_nothing_committed(tmp_path):
    lines = []
    run(seed=1, iterations=4, workdir=tmp_path, say=lines.append)
    assert len(lines) == 4


def test_sigkill_during_s3_puts_copies_and_multipart_uploads(tmp_path):
    lines = []
    run(seed=2, iterations=4, workdir=tmp_path, say=lines.append, s3=True, sealed=True)
    assert len(lines) == 4


@pytest.mark.parametrize("metadata", ["local", "postgresql"])
def test_sigkill_with_blobs_at_an_s3_service_leaves_no_orphan(
    tmp_path, monkeypatch, request, blob_service, metadata
):
    """The store keeps its blobs at SeaweedFS (and its metadata in PostgreSQL: a shared
    store, which the S3 workload drives, PUTs making directories): after each crash the
    objects are as committed, no object names a blob the service lacks (fsck --verify),
    and gc leaves the service exactly the named blobs."""
    from services import KEY

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEY[1])
    meta = None
    if metadata == "postgresql":
        request.getfixturevalue("pg_password")
        meta = request.getfixturevalue("pg_cluster").new_database()
    bucket = f"crash-{metadata}"
    blob_service.client().create_bucket(Bucket=bucket)
    lines = []
    run(
        seed=3 if meta is None else 4,
        iterations=3,
        workdir=tmp_path,
        say=lines.append,
        s3=meta is not None,
        blobs_at=(blob_service.endpoint, f"s3://{bucket}/store"),
        meta=meta,
        sealed=meta is None,  # blobs sealed on their way to the service
    )
    assert len(lines) == 3
