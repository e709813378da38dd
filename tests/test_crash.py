"""The crash harness (tests/crash_harness.py), short enough for every run."""

from crash_harness import run


def test_sigkill_at_random_moments_loses_nothing_committed(tmp_path):
    lines = []
    run(seed=1, iterations=4, workdir=tmp_path, say=lines.append)
    assert len(lines) == 4


def test_sigkill_during_s3_puts_copies_and_multipart_uploads(tmp_path):
    lines = []
    run(seed=2, iterations=4, workdir=tmp_path, say=lines.append, s3=True)
    assert len(lines) == 4


def test_sigkill_with_blobs_at_an_s3_service_leaves_no_orphan(tmp_path, monkeypatch):
    """The store keeps its blobs at SeaweedFS: after each crash, no object names a blob the
    service lacks (fsck --verify), and gc leaves the service exactly the named blobs."""
    from services import KEY, seaweedfs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEY[1])
    with seaweedfs(tmp_path / "service") as service:
        service.client().create_bucket(Bucket="crash-blobs")
        lines = []
        blobs_at = (service.endpoint, "s3://crash-blobs/store")
        run(seed=3, iterations=4, workdir=tmp_path, say=lines.append, blobs_at=blobs_at)
        assert len(lines) == 4


def test_sigkill_with_metadata_in_postgresql_and_blobs_at_an_s3_service(
    tmp_path, monkeypatch, pg_cluster, pg_password
):
    """Both parts of the store elsewhere: after each crash the objects are as committed,
    fsck --verify is clean, and the service holds exactly the blobs objects name."""
    from services import KEY, seaweedfs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEY[1])
    with seaweedfs(tmp_path / "service") as service:
        service.client().create_bucket(Bucket="crash-shared")
        lines = []
        blobs_at = (service.endpoint, "s3://crash-shared/store")
        meta = pg_cluster.new_database()
        run(seed=4, iterations=4, workdir=tmp_path, say=lines.append, blobs_at=blobs_at, meta=meta)
        assert len(lines) == 4
