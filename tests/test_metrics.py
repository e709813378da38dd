"""Prometheus metrics (`--metrics`): a scrape after a known workload on a mount that
serves S3 shows each family with the values that workload gave."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import mounted_at
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from s3_fixtures import S3Mount, code_of, free_port, wait_for_port

from fsobj import measures


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample a daemon's endpoint shows: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return samples_of(answer.read().decode())


def samples_of(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.same_on_every_store
def test_a_scrape_counts_what_the_mount_and_s3_served(tmp_path):
    s3_port, metrics_port = free_port(), free_port()
    options = ("--s3", f"127.0.0.1:{s3_port}", "--metrics", f"127.0.0.1:{metrics_port}")
    with mounted_at(tmp_path / "store", tmp_path / "fsobj.log", options) as mounted:
        wait_for_port(s3_port)
        before = scrape(metrics_port)
        bucket = mounted.path / "watched"
        bucket.mkdir()
        (bucket / "one").write_bytes(b"x" * 10_000)
        (bucket / "two").write_bytes(b"y" * 5_000)
        assert (bucket / "one").read_bytes() == b"x" * 10_000
        with open(bucket / "open-now", "wb") as writer:
            writer.write(b"staged")
            writer.flush()
            held = scrape(metrics_port)
        client = S3Mount(mounted, s3_port).client()
        client.put_object(Bucket="watched", Key="put", Body=b"z" * 3_000)
        assert client.get_object(Bucket="watched", Key="put")["Body"].read() == b"z" * 3_000
        assert code_of(client.get_object, Bucket="watched", Key="missing") == "NoSuchKey"
        with pytest.raises(OSError):
            os.mkdir(mounted.path / "Not_A_Bucket_Name")  # a refusal, counted by its reason
        fd = os.open(bucket, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)  # a durability point
        os.close(fd)
        after = scrape(metrics_port)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("fsobj_fuse_requests_total", operation="mkdir") == 2
    assert grew("fsobj_fuse_requests_total", operation="create") == 3
    assert grew("fsobj_fuse_request_seconds_count", operation="create") == 3
    assert grew("fsobj_fuse_request_seconds_bucket", operation="create", le="+Inf") == 3
    assert grew("fsobj_fuse_request_seconds_sum", operation="create") > 0
    assert grew("fsobj_fuse_refusals_total", operation="mkdir", reason="BAD_BUCKET_NAME") == 1
    assert grew("fsobj_written_bytes_total", front_end="fuse") == 15_006
    assert grew("fsobj_read_bytes_total", front_end="fuse") == 10_000
    assert grew("fsobj_written_bytes_total", front_end="s3") == 3_000
    assert grew("fsobj_read_bytes_total", front_end="s3") == 3_000
    assert grew("fsobj_s3_requests_total", operation="PUT object", status="200") == 1
    assert grew("fsobj_s3_requests_total", operation="GET object", status="200") == 1
    assert grew("fsobj_s3_requests_total", operation="GET object", status="404") == 1
    assert grew("fsobj_s3_request_seconds_count", operation="PUT object") == 1
    assert grew("fsobj_commits_total") == 4  # three closes on the mount, one PUT
    assert grew("fsobj_commit_seconds_count") == 4
    assert grew("fsobj_durability_points_total") >= 1  # the fsync's (and periodic ones)
    assert value(held, "fsobj_open_handles") == 1
    assert value(held, "fsobj_staging_bytes") == 6
    assert value(after, "fsobj_open_handles") == 0
    assert value(after, "fsobj_namespace_cache_entries") > 0
    assert value(after, "process_resident_memory_bytes") > 0
    assert grew("fsobj_commit_group_size_count") == 4  # each commit in some group
    assert grew("fsobj_commit_group_size_sum") == 4
    assert grew("fsobj_metadata_calls_total", call="commit_many") >= 1
    assert grew("fsobj_metadata_call_seconds_count", call="commit_many") >= 1
    assert grew("fsobj_namespace_cache_hits_total") > 0
    assert ("fsobj_blob_cache_bytes", ()) not in after  # the blobs are local: no cache


@pytest.mark.same_on_every_store
def test_fsobj_stats_shows_live_rates(tmp_path):
    with mounted_at(tmp_path / "store", tmp_path / "fsobj.log") as mounted:
        bucket = mounted.path / "busy"
        bucket.mkdir()
        watching = subprocess.Popen(
            [sys.executable, "-m", "fsobj", "stats", "--every", "0.5", "--count", "4",
             str(mounted.path)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        written = 0
        while watching.poll() is None and time.monotonic() < deadline:
            (bucket / f"f{written % 50}").write_bytes(b"x" * 100_000)
            written += 1
        out = watching.communicate(timeout=60)[0].splitlines()
    assert watching.returncode == 0 and len(out) == 5, out
    assert out[0].split()[:2] == ["fuse/s", "ms"]
    rows = [[float(cell) for cell in row.split()] for row in out[1:]]
    assert all(len(row) == 12 for row in rows)
    assert max(row[0] for row in rows) > 0  # FUSE requests a second
    assert max(row[5] for row in rows) > 0  # MiB written a second
    assert max(row[6] for row in rows) > 0  # commits a second
    assert all(row[11] > 10 for row in rows)  # the daemon's memory, MiB


async def test_a_failed_metadata_call_is_counted_by_its_error(tmp_path):
    from conftest import metadata_store

    from fsobj.measures import REGISTRY
    from fsobj.refusals import Refused

    labels = {"call": "select_acl", "error": "Refused"}

    def failed() -> float:
        return REGISTRY.get_sample_value("fsobj_metadata_errors_total", labels) or 0.0

    async with metadata_store(tmp_path / "meta.sqlite3") as meta:
        before = failed()
        with pytest.raises(Refused):
            await meta.acl(999_999)  # no such bucket
        assert failed() == before + 1


def test_request_timings_fall_in_the_buckets_prometheus_means():
    """The FUSE requests' counter and histogram are kept by the loop without a lock
    (measures.LoopTimings); a scrape shows them as the library's would: each bucket
    counts the durations up to its bound, cumulatively."""
    registry = CollectorRegistry()
    timings = measures.LoopTimings(("t_requests", "r"), ("t_seconds", "s"), "op", registry)
    tally = timings.of("read")
    for seconds in (0.00005, 0.0001, 0.0002, 0.003, 99.0):
        measures.timed(tally, seconds)
    samples = samples_of(generate_latest(registry).decode())
    assert value(samples, "t_requests_total", op="read") == 5
    assert value(samples, "t_seconds_count", op="read") == 5
    assert value(samples, "t_seconds_sum", op="read") == pytest.approx(99.0033)
    assert value(samples, "t_seconds_bucket", op="read", le="0.0001") == 2  # up to, inclusive
    assert value(samples, "t_seconds_bucket", op="read", le="0.0005") == 3
    assert value(samples, "t_seconds_bucket", op="read", le="0.005") == 4
    assert value(samples, "t_seconds_bucket", op="read", le="30.0") == 4
    assert value(samples, "t_seconds_bucket", op="read", le="+Inf") == 5
    # One kind alone (commits): the same families, without a label.
    alone = measures.LoopTimings(("c_commits", "c"), ("c_seconds", "s"), None, registry)
    measures.timed(alone.of(""), 0.002)
    samples = samples_of(generate_latest(registry).decode())
    assert value(samples, "c_commits_total") == 1
    assert value(samples, "c_seconds_bucket", le="0.005") == 1


@pytest.mark.same_on_every_store
def test_ls_l_asks_no_file_but_the_first_for_its_selinux_label(tmp_path):
    """`ls -l` asks every file for its ACL and its SELinux label. fsobj keeps no
    security.* attribute and says so (ENOTSUP), which coreutils remembers for the whole
    filesystem: one request per file is left, not two."""
    port, files = free_port(), 200
    options = ("--metrics", f"127.0.0.1:{port}")
    with mounted_at(tmp_path / "store", tmp_path / "fsobj.log", options) as mounted:
        bucket = mounted.path / "listed"
        bucket.mkdir()
        for number in range(files):
            (bucket / f"f{number:03d}").write_bytes(b"x")
        with pytest.raises(OSError) as refused:
            os.getxattr(bucket / "f000", "security.selinux")
        assert refused.value.errno == errno.ENOTSUP
        before = scrape(port)
        listed = subprocess.run(["ls", "-l", str(bucket)], capture_output=True, text=True)
        after = scrape(port)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == files + 1  # "total"
    refusals = "fsobj_fuse_refusals_total"
    asked = value(after, refusals, operation="getxattr", reason="UNKEPT_ATTRIBUTE") - value(
        before, refusals, operation="getxattr", reason="UNKEPT_ATTRIBUTE"
    )
    assert asked == 1
    requests = "fsobj_fuse_requests_total"
    getxattrs = value(after, requests, operation="getxattr") - value(
        before, requests, operation="getxattr"
    )
    # About one per file (it was two): the ACL, whose cached answer the kernel drops at
    # each listing.
    assert getxattrs < files * 1.1


@pytest.mark.same_on_every_store
def test_a_new_file_written_write_only_costs_one_request_a_write(tmp_path):
    """tar, cp and git make new files write-only, without O_TRUNC: such a file is written
    with direct I/O, so each write is one request, not split at pages, and the kernel
    asks no `security.capability` before it (it did through the page cache). A writer
    that may read (O_RDWR, as SQLite opens) keeps the page cache, and both questions."""
    port = free_port()
    options = ("--metrics", f"127.0.0.1:{port}")
    requests = "fsobj_fuse_requests_total"

    def written(path, mode: int) -> tuple[float, float]:
        before = scrape(port)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | mode, 0o644)
        try:
            for _ in range(10):
                os.write(fd, b"x" * 10240)  # tar's records: not page-aligned
        finally:
            os.close(fd)
        after = scrape(port)
        return tuple(  # type: ignore[return-value]
            value(after, requests, operation=op) - value(before, requests, operation=op)
            for op in ("write", "getxattr")
        )

    with mounted_at(tmp_path / "store", tmp_path / "fsobj.log", options) as mounted:
        bucket = mounted.path / "written"
        bucket.mkdir()
        assert written(bucket / "write-only", os.O_WRONLY) == (10, 0)
        writes, asked = written(bucket / "read-write", os.O_RDWR)
        assert (bucket / "write-only").read_bytes() == b"x" * 102400
        assert (bucket / "read-write").read_bytes() == b"x" * 102400
    assert writes > 10 and asked == 10
