"""The crash harness (tests/crash_harness.py), short enough for every run."""

import pytest
from crash_harness import run


def test_sigkill_at_random_moments_loses_nothing_committed(tmp_path):
    lines = []
    run(seed=1, iterations=4, workdir=tmp_path, say=lines.append)
    assert len(lines) == 4


def test_sigkill_during_s3_puts_copies_and_multipart_uploads(tmp_path):
    lines = []
    run(seed=2, iterations=4, workdir=tmp_path, say=lines.append, s3=True)
    assert len(lines) == 4


@pytest.mark.parametrize("metadata", ["local", "postgresql"])
def test_sigkill_with_blobs_at_an_s3_service_leaves_no_orphan(
    tmp_path, monkeypatch, request, metadata
):
    """The store keeps its blobs at SeaweedFS (and its metadata in PostgreSQL): after
    each crash the objects are as committed, no object names a blob the service lacks
    (fsck --verify), and gc leaves the service exactly the named blobs."""
    from services import KEY, seaweedfs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEY[1])
    meta = None
    if metadata == "postgresql":
        request.getfixturevalue("pg_password")
        meta = request.getfixturevalue("pg_cluster").new_database()
    with seaweedfs(tmp_path / "service") as service:
        service.client().create_bucket(Bucket="crash-blobs")
        lines = []
        blobs_at = (service.endpoint, "s3://crash-blobs/store")
        seed = 3 if meta is None else 4
        run(
            seed=seed,
            iterations=4,
            workdir=tmp_path,
            say=lines.append,
            blobs_at=blobs_at,
            meta=meta,
        )
        assert len(lines) == 4
