"""The metadata store on SQLite, the embedded default: `STORE/meta.sqlite3` in WAL mode,
reached through aiosqlite (asyncio-only): opened and closed through trio-asyncio, and its
worker thread hands each call's outcome straight back to trio (`SqliteDatabase.run`).
Only this module knows about that bridge. The schema and its migrations are schema.py's."""

from __future__ import annotations

import errno
import functools
import logging
import sqlite3
from collections.abc import Callable
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


def _note_synced(conn: sqlite3.Connection) -> None:
    if isinstance(conn, SqliteConnection):
        conn.synced_changes = conn.total_changes

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


class SqliteDatabase:
    """The aiosqlite connection, with one call that runs a function in its thread."""

    dialect: Dialect = SQLITE
    session: int | None = None  # one process serves a store in SQLite: no session

    def __init__(self, conn: aiosqlite.Connection):
        self._conn = conn

    async def heartbeat(self) -> None:
        pass

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        # aiosqlite has no public "run this callable" call. Its public methods queue a
        # function with an asyncio future for its thread (`_execute`, version pinned in
        # pyproject.toml). The work is queued here with no future; it hands its outcome to
        # trio itself, which wakes this task directly: 90 microseconds a call, where going
        # back through trio-asyncio's loop took 240 (docs/benchmarks.md).
        if not self._conn._running:
            raise ValueError("the metadata store is closed")
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()
        call = functools.partial(fn, self._conn._conn, *args)

        def in_thread() -> None:
            token.run_sync_soon(trio.lowlevel.reschedule, task, outcome.capture(call))

        self._conn._tx.put_nowait((None, in_thread))
        try:
            # Never abandoned halfway: the transaction's outcome is always known.
            result: T = await trio.lowlevel.wait_task_rescheduled(
                lambda _: trio.lowlevel.Abort.FAILED
            )
        except sqlite3.IntegrityError as error:
            raise Conflict(str(error)) from None
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode == sqlite3.SQLITE_FULL:  # the store's disk is full
                raise OSError(errno.ENOSPC, f"metadata store: {error}") from None
            raise
        return result

    async def close(self) -> None:
        try:
            await self.run(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        except (OSError, sqlite3.Error) as error:
            # Nothing is lost: the log keeps every commit until a later checkpoint.
            log.warning("could not fold the write-ahead log into the database: %s", error)
        finally:
            await trio_asyncio.aio_as_trio(self._conn.close)()


async def open_sqlite(path: Path) -> SqliteDatabase:
    """Connect to the database at `path` (made when absent). Must run inside
    `trio_asyncio.open_loop()`."""
    connecting = aiosqlite.connect(
        str(path), isolation_level=None, check_same_thread=False, factory=SqliteConnection
    )
    return SqliteDatabase(await trio_asyncio.aio_as_trio(connecting.__aenter__)())
