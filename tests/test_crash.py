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
