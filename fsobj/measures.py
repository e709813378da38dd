"""What the daemon counts and times, for Prometheus (`--metrics`, docs/operations.md): one
place names every metric. The front ends and the core record into these as they serve;
the gauges of what the daemon holds are read from the core when scraped (`Holdings`).

The registry is fsobj's own, not the library's global one: a scrape shows fsobj's
metrics and the process's (memory, CPU, descriptors), nothing that a library registered.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector

if TYPE_CHECKING:
    from fsobj.service.core import Service

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

# Requests last from some microseconds (a cached getattr) to seconds (a large commit).
_LATENCY = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)


class LoopCounts:
    """A counter changed by the trio loop's thread alone, so kept as a plain number: the
    library's take a lock at every change, and each FUSE request changed three of them
    (7% of the daemon's busy time under `grep -r`). Read at each scrape."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.count = 0
        REGISTRY.register(self)

    def inc(self) -> None:
        self.count += 1

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.count)


class LoopTimings:
    """Requests counted and timed by operation on the loop's thread alone (as
    `LoopCounts`): per operation, [count, seconds, and a count per bucket of _LATENCY],
    shown as a counter of requests and a histogram of their durations."""

    def __init__(
        self,
        requests: tuple[str, str],
        seconds: tuple[str, str],
        label: str | None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        """`label`: what tells the requests apart (None: they are all one kind, `of("")`)."""
        self.requests, self.seconds, self.label = requests, seconds, label
        self.bounds = [*(str(bound) for bound in _LATENCY), "+Inf"]
        self.tallies: dict[str, list] = {}
        registry.register(self)

    def of(self, value: str) -> list:
        """The tally of one operation, for `timed` (looked up once by its caller)."""
        return self.tallies.setdefault(value, [0, 0.0] + [0] * len(self.bounds))

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        labels = [] if self.label is None else [self.label]
        counts = CounterMetricFamily(*self.requests, labels=labels)
        durations = HistogramMetricFamily(*self.seconds, labels=labels)
        for value, tally in sorted(self.tallies.items()):
            values = [] if self.label is None else [value]
            counts.add_metric(values, tally[0])
            buckets = list(zip(self.bounds, itertools.accumulate(tally[2:]), strict=True))
            durations.add_metric(values, buckets, sum_value=tally[1])
        yield counts
        yield durations


def timed(tally: list, seconds: float) -> None:
    """Count one request of `seconds` into its `LoopTimings` tally."""
    tally[0] += 1
    tally[1] += seconds
    tally[2 + bisect.bisect_left(_LATENCY, seconds)] += 1


FUSE_REQUESTS = LoopTimings(
    ("fsobj_fuse_requests", "FUSE requests served"),
    ("fsobj_fuse_request_seconds", "How long FUSE requests took"),
    "operation",
)
NAMESPACE_HITS = LoopCounts(
    "fsobj_namespace_cache_hits", "Look-ups of names and inodes answered from memory"
)
NAMESPACE_MISSES = LoopCounts(
    "fsobj_namespace_cache_misses", "Look-ups of names and inodes that read the metadata database"
)

FUSE_REFUSALS = Counter(
    "fsobj_fuse_refusals",
    "FUSE requests refused, by the reason (an errno to the caller)",
    ["operation", "reason"],
    registry=REGISTRY,
)
S3_REQUESTS = Counter(
    "fsobj_s3_requests",
    "S3 requests answered, by operation and HTTP status",
    ["operation", "status"],
    registry=REGISTRY,
)
S3_SECONDS = Histogram(
    "fsobj_s3_request_seconds",
    "How long S3 requests took to answer (a GET: until its body began)",
    ["operation"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
READ_BYTES = Counter(
    "fsobj_read_bytes", "Bytes of objects read, by front end", ["front_end"], registry=REGISTRY
)
WRITTEN_BYTES = Counter(
    "fsobj_written_bytes",
    "Bytes of objects written, by front end",
    ["front_end"],
    registry=REGISTRY,
)
# Commits and round trips to the database, counted by the loop as FUSE requests are: a
# new file's close changed four of the library's (locked) metrics for them.
COMMITS = LoopTimings(
    ("fsobj_commits", "New versions committed (a close, a PUT, a copy)"),
    ("fsobj_commit_seconds", "How long a commit took, its blob written and its metadata recorded"),
    None,
)
DURABILITY_POINTS = Counter(
    "fsobj_durability_points",
    "Times everything committed was made durable (fsync, the periodic sync, unmount)",
    registry=REGISTRY,
)
JOURNALED_FSYNCS = Counter(
    "fsobj_journaled_fsyncs",
    "fsyncs of files written in place made durable in a journal instead of a commit",
    registry=REGISTRY,
)
DURABILITY_SECONDS = Histogram(
    "fsobj_durability_point_seconds",
    "How long making everything committed durable took",
    buckets=_LATENCY,
    registry=REGISTRY,
)


METADATA_CALLS = LoopTimings(
    ("fsobj_metadata_calls", "Round trips to the metadata database, by what they ran"),
    ("fsobj_metadata_call_seconds", "How long round trips to the metadata database took"),
    "call",
)
METADATA_ERRORS = Counter(
    "fsobj_metadata_errors",
    "Round trips to the metadata database that failed, by call and error (a refusal, a"
    " conflict between hosts, or a failure of the database)",
    ["call", "error"],
    registry=REGISTRY,
)
COMMIT_GROUP = Histogram(
    "fsobj_commit_group_size",
    "Commits recorded together in one transaction (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
BLOB_CACHE_HITS = Counter(
    "fsobj_blob_cache_hits",
    "Blobs found in the local cache of a store whose blobs live at an S3 service",
    registry=REGISTRY,
)
BLOB_CACHE_MISSES = Counter(
    "fsobj_blob_cache_misses", "Blobs fetched from the S3 blob service", registry=REGISTRY
)
BLOB_CACHE_EVICTIONS = Counter(
    "fsobj_blob_cache_evictions", "Blobs the local cache let go for room", registry=REGISTRY
)
BLOB_SERVICE_CALLS = Counter(
    "fsobj_blob_service_calls",
    "Calls to the S3 blob service, by call and outcome (ok, missing, error)",
    ["call", "outcome"],
    registry=REGISTRY,
)
BLOB_SERVICE_SECONDS = Histogram(
    "fsobj_blob_service_call_seconds",
    "How long calls to the S3 blob service took",
    ["call"],
    buckets=_LATENCY,
    registry=REGISTRY,
)

# Shared stores (PostgreSQL), as each heartbeat finds them.
SESSIONS = Gauge(
    "fsobj_sessions",
    "Processes serving the shared store (live sessions), as of this one's last heartbeat",
    registry=REGISTRY,
)
PINNED_BLOBS = Gauge(
    "fsobj_pinned_blobs",
    "Blobs this process has pinned on the shared store (being written or fetched)",
    registry=REGISTRY,
)


@functools.cache
def metadata_call(call: str) -> list:
    """The tally of one kind of metadata round trip, for `timed` (looked up once)."""
    return METADATA_CALLS.of(call)


@functools.cache
def fuse_refusals(op: str, reason: str) -> Counter:
    """The counter of one FUSE operation's refusals for one reason (looked up once, as
    `metadata_call`: `ls -l` is refused an attribute per file)."""
    return FUSE_REFUSALS.labels(op, reason)


class Timed:
    """Times a block into a histogram (a context manager cheaper than the library's)."""

    __slots__ = ("histogram", "start")

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self.start = 0.0

    def __enter__(self) -> Timed:
        self.start = time.monotonic()
        return self

    def __exit__(self, *_: object) -> None:
        self.histogram.observe(time.monotonic() - self.start)


class Holdings:
    """The gauges of what a daemon holds, read from its core at each scrape."""

    def __init__(self, core: Service) -> None:
        self.core = core

    def describe(self) -> list[Metric]:
        return []  # the families are known only when collected: none is checked twice

    def collect(self) -> Iterator[Metric]:
        stats = self.core.stats()
        yield GaugeMetricFamily(
            "fsobj_open_handles", "Files open on the mount and GETs being answered",
            value=stats["open_handles"],
        )  # fmt: skip
        yield GaugeMetricFamily(
            "fsobj_namespace_cache_entries", "Entries of the namespace held in memory",
            value=stats["cached_entries"],
        )  # fmt: skip
        yield GaugeMetricFamily(
            "fsobj_staging_bytes", "Bytes written and not committed yet (staged)",
            value=self.core.objects.staging_bytes(),
        )  # fmt: skip
        cache = self.core.blob_cache()
        if cache is not None:
            yield GaugeMetricFamily(
                "fsobj_blob_cache_bytes", "Bytes of blobs in the local cache",
                value=cache.used,
            )  # fmt: skip
            yield GaugeMetricFamily(
                "fsobj_blob_cache_limit_bytes", "How large the local cache of blobs may grow",
                value=cache.limit,
            )  # fmt: skip


def watch(core: Service) -> None:
    """Let scrapes read what `core` holds (one daemon's core: once)."""
    REGISTRY.register(Holdings(core))


def totals() -> dict[str, int]:
    """fsobj's counters summed over their labels, seconds as microseconds, for
    `user.fsobj.stats` (the live view of `fsobj stats` takes its rates from these)."""
    found: dict[str, int] = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("fsobj_") or family.type not in ("counter", "histogram"):
            continue
        name = family.name.removeprefix("fsobj_")
        for sample in family.samples:
            if family.type == "counter" and sample.name.endswith("_total"):
                found[name] = found.get(name, 0) + int(sample.value)
            elif sample.name.endswith("_sum"):  # a histogram's time: its count is a counter's
                key = name.replace("_seconds", "_us")
                found[key] = found.get(key, 0) + int(sample.value * 1e6)
    return found
