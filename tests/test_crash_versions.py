"""The crash harness (tests/crash_harness.py) in a versioned bucket: a module of its own,
so that it runs beside test_crash.py's, not after them."""

from crash_harness import run


def test_sigkill_in_a_versioned_bucket_loses_no_version(tmp_path):
    """Puts, renames, links, clones and deletes in a versioned bucket: after each crash
    and gc the objects are as committed and every version a finished put made is kept."""
    lines = []
    run(seed=5, iterations=3, workdir=tmp_path, say=lines.append, versioned=True)
    assert len(lines) == 3
