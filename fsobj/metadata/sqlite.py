"""The metadata store on SQLite, the embedded default: `STORE/meta.sqlite3` in WAL mode,
reached through aiosqlite (asyncio-only): opened and closed through trio-asyncio, and its
worker thread hands each call's outcome straight back to trio (`SqliteDatabase.run`).
Only this module knows about that bridge. The schema and its migrations are schema.py's."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import outcome
import trio
import trio_asyncio

from fsobj.metadata import schema
from fsobj.metadata.backend import Conflict, Dialect

log = logging.getLogger(__name__)
T = TypeVar("T")


class SqliteDialect(Dialect):
    name = "sqlite"
    begin = "BEGIN IMMEDIATE"  # the write lock at once: no deadlock upgrading a read
    binary = "BLOB"

    def key_order(self) -> str:
        return schema.KEY_ORDER  # SQLite compares text as bytes

    def hex(self, column: str) -> str:
        return f"lower(hex({column}))"

    def octet_length(self, expression: str) -> str:
        return f"length(CAST({expression} AS BLOB))"

    def prepare(self, conn: sqlite3.Connection) -> tuple[int, int]:
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode keeps every commit atomic; durability comes from make_durable().
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = OFF")  # a migration may make a table anew
        schema.migrate(conn)
        conn.execute("PRAGMA foreign_keys = ON")
        # AUTOINCREMENT's record of the highest inode ever used: numbers stay unique even
        # though the store, not SQLite, assigns them now.
        (used,) = conn.execute(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'entries'), 0),"
            " coalesce((SELECT max(inode) FROM entries), 0))"
        ).fetchone()
        # One process owns the store: every number after the highest used is its own.
        return used + 1, 1 << 62

    def write_synced(self, conn: sqlite3.Connection, write: Callable[[], None]) -> None:
        # In WAL mode, FULL syncs the log at commit: this transaction, and every one before
        # it, is durable when it returns (NORMAL leaves that to the durability points).
        conn.execute("PRAGMA synchronous = FULL")
        try:
            write()
        finally:
            conn.execute("PRAGMA synchronous = NORMAL")
        _note_synced(conn)

    def make_durable(self, conn: sqlite3.Connection) -> None:
        # With nothing written since the log was last synced (by a transaction synced
        # alone: an fsync's commit, before SQLite's fsync of the directory), every commit
        # is durable already.
        if isinstance(conn, SqliteConnection) and conn.synced_changes == conn.total_changes:
            return
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        _note_synced(conn)

    def check(self, conn: sqlite3.Connection) -> list[str]:
        problems = [
            f"database: {row[0]}"
            for row in conn.execute("PRAGMA integrity_check").fetchall()
            if row[0] != "ok"
        ]
        return problems + [f"database: {row}" for row in conn.execute("PRAGMA foreign_key_check")]


SQLITE = SqliteDialect()


class SqliteConnection(sqlite3.Connection):
    """sqlite3's connection, carrying its dialect for the functions that run on it."""

    dialect = SQLITE
    synced_changes = -1  # `total_changes` when the log was last synced


def _note_synced(conn: sqlite3.Connection) -> None:
    if isinstance(conn, SqliteConnection):
        conn.synced_changes = conn.total_changes


# Short transactions run on the loop write the log without SQLite's automatic checkpoint
# (which syncs, see SqliteDatabase.run_short); every this many, one runs in the thread and
# folds the log into the database after it: about the 1,000 pages SQLite folds at, as a
# new object's commit writes 8 here (docs/benchmarks.md).
FOLD_EVERY = 100
# For transactions run in the thread: SQLite still folds a log this long by itself.
AUTOCHECKPOINT_PAGES = 10_000


class SqliteDatabase:
    """The aiosqlite connection, with one call that runs a function in its thread."""

    dialect: Dialect = SQLITE
    session: int | None = None  # one process serves a store in SQLite: no session

    def __init__(self, conn: aiosqlite.Connection):
        self._conn = conn
        self._in_thread = 0  # calls queued for aiosqlite's thread or running there
        self._unfolded = 0  # short transactions since the log was last folded

    async def heartbeat(self) -> None:
        pass

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._call_in_thread(functools.partial(fn, self._conn._conn, *args))

    async def run_short(self, fn: Callable[..., T], *args: Any) -> T:
        # On this machine the hop to aiosqlite's thread and back (0.65 ms: two wake-ups
        # of a sleeping thread) costs more than a new object's whole transaction (0.3
        # ms). So a short one runs here on the loop, when the thread has nothing queued:
        # the one connection is then used by one thread at a time, and each transaction
        # still runs whole before the next. It writes the log without syncing it.
        self._unfolded += 1
        if self._in_thread or self._unfolded >= FOLD_EVERY:
            fold = self._unfolded >= FOLD_EVERY
            if fold:
                self._unfolded = 0
            return await self._call_in_thread(functools.partial(self._then_fold, fold, fn, args))
        if not self._conn._running:
            raise ValueError("the metadata store is closed")
        with _translated():
            return fn(self._conn._conn, *args)

    def _then_fold(self, fold: bool, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        result = fn(self._conn._conn, *args)
        if fold:
            try:
                self._conn._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as error:
                # Nothing is lost: the log keeps every commit until a later fold.
                log.warning("could not fold the write-ahead log into the database: %s", error)
            else:
                _note_synced(self._conn._conn)  # the fold syncs the log first
        return result

    async def _call_in_thread(self, call: Callable[[], T]) -> T:
        # aiosqlite has no public "run this callable" call. Its public methods queue a
        # function with an asyncio future for its thread (`_execute`, version pinned in
        # pyproject.toml). The work is queued here with no future; it hands its outcome to
        # trio itself, which wakes this task directly: 90 microseconds a call, where going
        # back through trio-asyncio's loop took 240 (docs/benchmarks.md).
        if not self._conn._running:
            raise ValueError("the metadata store is closed")
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()

        def in_thread() -> None:
            token.run_sync_soon(trio.lowlevel.reschedule, task, outcome.capture(call))

        self._conn._tx.put_nowait((None, in_thread))
        self._in_thread += 1
        try:
            with _translated():
                # Never abandoned halfway: the transaction's outcome is always known.
                result: T = await trio.lowlevel.wait_task_rescheduled(
                    lambda _: trio.lowlevel.Abort.FAILED
                )
        finally:
            self._in_thread -= 1
        return result

    async def close(self) -> None:
        # From now on nothing runs on the loop: aiosqlite's thread closes the connection,
        # and whatever comes after queues behind that (and fails, as on a closed store).
        self._in_thread += 1
        try:
            await self.run(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        except (OSError, sqlite3.Error) as error:
            # Nothing is lost: the log keeps every commit until a later checkpoint.
            log.warning("could not fold the write-ahead log into the database: %s", error)
        finally:
            await trio_asyncio.aio_as_trio(self._conn.close)()


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as error:
        raise Conflict(str(error)) from None
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode == sqlite3.SQLITE_FULL:  # the store's disk is full
            raise OSError(errno.ENOSPC, f"metadata store: {error}") from None
        raise


async def open_sqlite(path: Path) -> SqliteDatabase:
    """Connect to the database at `path` (made when absent). Must run inside
    `trio_asyncio.open_loop()`."""
    connecting = aiosqlite.connect(
        str(path), isolation_level=None, check_same_thread=False, factory=SqliteConnection
    )
    db = SqliteDatabase(await trio_asyncio.aio_as_trio(connecting.__aenter__)())
    await db.run(lambda conn: conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}"))
    return db
