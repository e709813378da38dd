"""The crash harness (tests/crash_harness.py), short enough for every run."""

from crash_harness import run


def test_sigkill_at_random_moments_loses_nothing_committed(tmp_path):
    lines = []
    run(seed=1, iterations=4, workdir=tmp_path, say=lines.append)
    assert len(lines) == 4
