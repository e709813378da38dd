"""Running a mount: in the foreground, or as a background process that the caller waits for
until the mount is usable."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import trio
import trio_asyncio

from fsobj import measures
from fsobj.metadata.cache import DEFAULT_CAPACITY
from fsobj.metadata.store import Sharing
from fsobj.refusals import Refused
from fsobj.service import lifecycle
from fsobj.service.objects import ObjectService
from fsobj.service.store import Store, open_store, single_error, store_is_free
from fsobj.service.uploads import ABANDONED_UPLOAD

log = logging.getLogger(__name__)

DURABILITY_SECONDS = 5.0  # like a journaling filesystem's commit interval
GC_SECONDS = 3600.0


class MountError(Exception):
    """A mount that could not be made or unmade; the message says why, for the user."""


def is_private(asked: bool) -> bool:
    """Whether the mount will serve its owner alone: when asked, or when this user may not
    share it (without allow_other the kernel lets only the mounting user in)."""
    if asked:
        return True
    if may_allow_other():
        return False
    log.warning("only this user can use the mount: add user_allow_other to /etc/fuse.conf")
    return True


def may_allow_other() -> bool:
    """Whether this process may mount with allow_other (root, or user_allow_other set)."""
    if os.getuid() == 0:
        return True
    try:
        with open("/etc/fuse.conf") as conf:
            return any(line.split("#", 1)[0].strip() == "user_allow_other" for line in conf)
    except OSError:
        return False


@dataclasses.dataclass(frozen=True)
class MountOptions:
    """How a mount serves. A private mount serves only the user who mounted it; what is
    closed becomes durable within `commit_interval` seconds; the daemon keeps at most
    `cache_entries` entries of the namespace in memory."""

    private: bool = False
    commit_interval: float = DURABILITY_SECONDS
    cache_entries: int = DEFAULT_CAPACITY
    s3: str | None = None  # [HOST:]PORT to serve S3 at, from the same process
    upload_days: float = ABANDONED_UPLOAD / 86400  # then gc removes a multipart upload
    # A shared store (docs/scale.md): how long other hosts' changes may take to show here,
    # and how long after this process stops its heartbeat its session lapses.
    metadata_seconds: float = 1.0
    session_seconds: float = 60.0
    lifecycle_day: float = lifecycle.DAY  # seconds in a day of lifecycle rules (tests: 1)
    metrics: str | None = None  # [HOST:]PORT to serve Prometheus metrics at

    @property
    def sharing(self) -> Sharing:
        """What the daemon read may be served for the metadata timeout, by the daemon and
        then the kernel, which is given what is left of it with each answer."""
        return Sharing(self.metadata_seconds, self.session_seconds)

    def as_arguments(self) -> list[str]:
        """The same options on `fsobj mount`'s command line."""
        return [
            *(["--private"] if self.private else []),
            f"--commit-interval={self.commit_interval}",
            f"--cache-entries={self.cache_entries}",
            *([f"--s3={self.s3}"] if self.s3 else []),
            f"--abandon-uploads-after={self.upload_days}",
            f"--metadata-timeout={self.metadata_seconds}",
            f"--session-timeout={self.session_seconds}",
            f"--lifecycle-day={self.lifecycle_day}",
            *([f"--metrics={self.metrics}"] if self.metrics else []),
        ]


def serve(
    store: Path,
    mountpoint: Path,
    on_ready: Callable[[], None] = lambda: None,
    options: MountOptions = MountOptions(),
) -> None:
    """Mount `store` at `mountpoint` and serve requests until unmounted or signalled."""
    if not mountpoint.is_dir():
        raise MountError(f"mount point {mountpoint} is not a directory")
    try:
        trio.run(_serve, store, mountpoint, on_ready, options)
    except BaseExceptionGroup as group:
        raise single_error(group) from None


async def _serve(
    store_root: Path,
    mountpoint: Path,
    on_ready: Callable[[], None],
    options: MountOptions,
) -> None:
    private = is_private(options.private)
    commit_interval = options.commit_interval
    async with (
        trio_asyncio.open_loop(),
        open_store(store_root, str(mountpoint), options.cache_entries, options.sharing) as store,
    ):
        unclean = store.begin_mount()
        if unclean:
            log.warning("store %s was not unmounted cleanly: recovering", store_root)
        await store.recover()
        # Only a mount imports pyfuse3 (`fsobj serve` runs without it).
        from fsobj.fuse.mount import KernelMount

        try:
            mount = KernelMount(store.service, store_root, mountpoint, private)
        except RuntimeError as error:
            store.end_mount()
            raise MountError(f"cannot mount at {mountpoint}: {error}") from None
        log.info(
            "mounted store %s at %s (durable every %g s)", store_root, mountpoint, commit_interval
        )
        signalled = False
        s3 = _S3Serving()
        try:
            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    nonlocal signalled
                    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                        async for signum in signals:
                            log.info("%s received: unmounting", signal.Signals(signum).name)
                            signalled = True
                            mount.terminate()
                            return

                nursery.start_soon(stop_on_signal)
                await _start_services(nursery, store, options, unclean, s3)
                on_ready()
                await mount.serve()
                if not await s3.stop():
                    mount.close(unmount=signalled)
                    await _write_out(store)
                    _leave_stalled_client(store, f"unmounted {mountpoint}")
                nursery.cancel_scope.cancel()
        finally:
            mount.close(unmount=signalled or sys.exc_info()[0] is not None)
            await _write_out(store)
        store.end_mount()
        log.info("unmounted %s", mountpoint)


async def _write_out(store: Store) -> None:
    """Commit what is open and make everything durable, as a daemon's last work."""
    await store.service.objects.commit_all()
    try:
        await store.service.make_all_durable()
    except OSError as error:  # nothing is lost: the log keeps every commit
        log.warning("could not make everything durable at unmount: %s", error)


class _S3Serving:
    """The S3 server of a daemon, which stops apart from the rest: hypercorn shields a
    connection's send from cancellation, so a client that reads nothing of an answer
    would hold the daemon as long as it lives."""

    GRACE = 2.0  # seconds the server has to stop before the daemon ends without it

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.started = False

    async def run(
        self, store: Store, address: str, task_status: trio.TaskStatus[list[str]]
    ) -> None:
        from fsobj.s3.server import serve_s3

        self.started = True
        try:
            with self.scope:
                await serve_s3(store, address, task_status=task_status)
        finally:
            self.done.set()

    async def stop(self) -> bool:
        """Stop serving; whether it stopped within GRACE."""
        if not self.started:
            return True
        self.scope.cancel()
        with trio.move_on_after(self.GRACE):
            await self.done.wait()
        return self.done.is_set()


def _leave_stalled_client(store: Store, said: str) -> NoReturn:
    """End the process, everything written out, though an S3 client still waits on an
    answer it does not read (its connection goes with the process)."""
    store.end_mount()
    log.warning("an S3 client that reads nothing of its answer held the server: left it")
    log.info(said)
    logging.shutdown()
    os._exit(0)


async def _start_services(
    nursery: trio.Nursery, store: Store, options: MountOptions, unclean: bool, s3: _S3Serving
) -> None:
    """What serves beside the requests: periodic durability and collection, and S3."""
    store.service.abandoned_upload = options.upload_days * 86400
    nursery.start_soon(_make_durable_every, store, options.commit_interval)
    nursery.start_soon(store.service.objects.durability.remove_unnamed)
    nursery.start_soon(store.service.objects.etags.run)
    nursery.start_soon(store.service.objects.journals.run, options.commit_interval)
    nursery.start_soon(_collect_garbage_every, store, GC_SECONDS, unclean)
    store.service.lifecycle_day = options.lifecycle_day
    nursery.start_soon(_apply_lifecycle_every, store, min(3600.0, options.lifecycle_day / 4))
    if store.meta.shared:
        nursery.start_soon(_heartbeat_every, store, options.session_seconds / 3)
    if options.metrics:
        _serve_metrics(nursery, store, options.metrics)
    if options.s3:
        try:
            listening = await nursery.start(s3.run, store, options.s3)
        except* OSError as failed:  # hypercorn's own task group wraps it
            reason = failed.exceptions[0]
            why = reason.strerror if isinstance(reason, OSError) else str(reason)
            raise MountError(f"cannot serve S3 at {options.s3}: {why}") from None
        log.info("serving S3 at %s", ", ".join(listening))


def _serve_metrics(nursery: trio.Nursery, store: Store, where: str) -> None:
    """Serve /metrics in the Prometheus text format at `where` ([HOST:]PORT), from a
    thread of the library's (a scrape reads counters, never waits on the loop)."""
    import prometheus_client

    host, _, port = where.rpartition(":")
    measures.watch(store.service)
    try:
        server, thread = prometheus_client.start_http_server(
            int(port), host or "127.0.0.1", registry=measures.REGISTRY
        )
    except OSError as error:
        raise MountError(f"cannot serve metrics at {where}: {error.strerror}") from None
    log.info("serving metrics at http://%s/metrics", where)

    async def stop_with_the_daemon() -> None:
        try:
            await trio.sleep_forever()
        finally:
            server.shutdown()
            thread.join()

    nursery.start_soon(stop_with_the_daemon)


def serve_alone(
    store: Path, options: MountOptions, on_ready: Callable[[], None] = lambda: None
) -> None:
    """Serve `store` over S3 alone (`fsobj serve`), until signalled."""
    try:
        trio.run(_serve_alone, store, options, on_ready)
    except BaseExceptionGroup as group:
        raise single_error(group) from None


async def _serve_alone(
    store_root: Path, options: MountOptions, on_ready: Callable[[], None]
) -> None:
    async with (
        trio_asyncio.open_loop(),
        open_store(
            store_root, f"s3://{options.s3}", options.cache_entries, options.sharing
        ) as store,
    ):
        unclean = store.begin_mount()
        await store.recover()
        s3 = _S3Serving()
        try:
            async with trio.open_nursery() as nursery:
                await _start_services(nursery, store, options, unclean, s3)
                on_ready()
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        log.info("%s received: stopping", signal.Signals(signum).name)
                        break
                if not await s3.stop():
                    await _write_out(store)
                    _leave_stalled_client(store, "stopped serving S3")
                nursery.cancel_scope.cancel()
        finally:
            await _write_out(store)
        store.end_mount()


async def _make_durable_every(store: Store, seconds: float) -> None:
    """Bound what a power loss can take: commits become durable within `seconds`."""
    while True:
        await trio.sleep(seconds)
        try:
            await store.service.objects.durability.make_all_durable()
        except OSError as error:
            log.warning("could not make the metadata durable: %s", error)


async def _heartbeat_every(store: Store, seconds: float) -> None:
    """Keep this process's session on a shared store alive (its pins with it)."""
    while True:
        await trio.sleep(seconds)
        with contextlib.suppress(OSError):  # the database's outage is logged once there
            await store.meta.heartbeat()


async def _collect_garbage_every(store: Store, seconds: float, now: bool) -> None:
    """Reclaim what crashes leave behind: at once after an unclean shutdown, then now and
    then (normal operation removes unreferenced blobs itself)."""
    if not now:
        await trio.sleep(seconds)
    while True:
        try:
            await store.service.collect_garbage()
        except OSError as error:
            log.warning("garbage collection failed: %s", error)
        await trio.sleep(seconds)


async def _apply_lifecycle_every(store: Store, seconds: float) -> None:
    """Buckets' lifecycle rules, applied a few times a day."""
    objects = ObjectService(store.service)
    while True:
        await trio.sleep(seconds)
        try:
            await lifecycle.apply(objects, store.service.lifecycle_day)
        except (OSError, Refused) as error:
            log.warning("lifecycle rules could not be applied: %s", error)


def start_background(
    store: Path,
    mountpoint: Path,
    log_level: str,
    options: MountOptions = MountOptions(),
) -> int:
    """Start a mount in a new process; return its pid once the mount is usable."""
    log_path = store / "fsobj.log"
    try:
        store.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "ab")  # noqa: SIM115 (closed below, after the spawn)
    except OSError as error:
        raise MountError(f"store {store} is not writable: {error.strerror}") from None
    read_end, write_end = os.pipe()
    with log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fsobj",
                "--log-level",
                log_level,
                "mount",
                "--foreground",
                "--ready-fd",
                str(write_end),
                *options.as_arguments(),
                "--store",
                str(store),
                str(mountpoint),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            pass_fds=[write_end],
            start_new_session=True,
        )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as ready:
        signalled = ready.read(1)
    if signalled == b"1":
        return process.pid
    code = process.wait()
    tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
    raise MountError(f"the mount process exited with status {code}:\n  " + "\n  ".join(tail))


def mount_of(path: Path) -> Path | None:
    """The fsobj mount point that `path` (absolute) lies on, or None."""
    mount = path
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return mount if mounted_store(mount) is not None else None


def mounted_store(mountpoint: Path) -> Path | None:
    """The store mounted at `mountpoint`, read from the kernel's mount table."""
    target = os.path.realpath(mountpoint)
    with open("/proc/mounts") as mounts:
        for line in mounts:
            source, where, fstype = line.split()[:3]
            where = where.replace("\\040", " ")
            if where == target and fstype == "fuse.fsobj":
                return Path(source.replace("\\040", " "))
    return None


def unmount(mountpoint: Path, timeout: float = 60.0) -> None:
    """Unmount and wait for the serving process to finish writing everything out."""
    store = mounted_store(mountpoint)
    if store is None:
        raise MountError(f"{mountpoint} is not an fsobj mount")
    result = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, text=True)
    if result.returncode != 0:
        raise MountError(f"cannot unmount {mountpoint}: {result.stderr.strip()}")
    # The serving process holds the store's lock until everything is written out.
    deadline = time.monotonic() + timeout
    while not store_is_free(store):
        if time.monotonic() > deadline:
            raise MountError(f"unmounted, but the store {store} is still busy after {timeout}s")
        time.sleep(0.05)
