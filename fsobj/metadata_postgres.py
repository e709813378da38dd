"""The metadata store on PostgreSQL, for a store whose metadata lives on a server.

One psycopg (3) connection, used by one worker thread at a time through
`trio.to_thread.run_sync`: the store's transactions are whole functions that run next to
the connection (transactions.py), as they run in aiosqlite's thread for SQLite, so the
synchronous driver in a thread is the bridge (psycopg's asyncio interface would cost a
trio-asyncio hop per statement, not per transaction). Statements keep SQLite's `?`
placeholders; `PostgresConnection` rewrites them once per statement text.

The password comes from libpq's own sources (`PGPASSWORD`, the 0600 file `~/.pgpass` or
`PGPASSFILE`), never from a command line. A lost connection is EIO for the request that
met it, logged once per outage; the next request reconnects. Until several hosts can share
a store, the store takes a session-level advisory lock, so a second mount of the same
database is refused, as a second mount of a store directory is.
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import trio

from . import schema_postgres
from .metadata_backend import Conflict, Dialect

log = logging.getLogger(__name__)
T = TypeVar("T")

# The key of the advisory lock that the one process serving a store holds.
_OWNER_LOCK = 0x66736F626A_01


class StoreInUse(Exception):
    """Another fsobj process holds the store's metadata."""


class PostgresDialect(Dialect):
    name = "postgresql"
    begin = "BEGIN"
    binary = "BYTEA"

    def key_order(self) -> str:
        return schema_postgres.KEY_ORDER

    def hex(self, column: str) -> str:
        return f"encode({column}, 'hex')"

    def octet_length(self, expression: str) -> str:
        return f"octet_length({expression})"

    def prepare(self, conn: PostgresConnection) -> int:
        schema_postgres.migrate(conn.raw)
        return conn.execute("SELECT coalesce(max(inode), 0) FROM entries").fetchall()[0][0]


POSTGRES = PostgresDialect()


@functools.lru_cache(maxsize=1024)
def _placeholders(sql: str) -> str:
    """SQLite's `?` as psycopg's `%s` (the statements have no other `?` or `%`)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresConnection:
    """A psycopg connection with the sqlite3 calls the transactions use."""

    dialect: Dialect = POSTGRES

    def __init__(self, raw: psycopg.Connection):
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self.raw.execute(_placeholders(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.raw.cursor() as cursor:
            cursor.executemany(_placeholders(sql), list(rows))


class PostgresDatabase:
    """The connection, its thread, and what happens when the server goes away."""

    dialect: Dialect = POSTGRES

    def __init__(self, url: str):
        self.url = url
        self._conn: PostgresConnection | None = None
        self._limiter = trio.CapacityLimiter(1)  # one call at a time on the connection
        self._down = False
        self._closed = False

    def connect(self) -> None:
        """Connect and take the owner's lock (blocking: in the thread)."""
        try:
            raw = psycopg.connect(
                self.url,
                autocommit=True,  # transactions are explicit: BEGIN ... COMMIT
                connect_timeout=5,
                application_name=f"fsobj on {socket.gethostname()}"[:63],
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                tcp_user_timeout=20000,  # ms: a server gone silent fails requests, no hang
            )
        except psycopg.Error as error:
            raise OSError(errno.EIO, one_line(error)) from None
        try:
            owned = raw.execute("SELECT pg_try_advisory_lock(%s)", (_OWNER_LOCK,)).fetchall()[0][0]
            if not owned:
                raise StoreInUse("the store's metadata is in use by another fsobj process")
        except BaseException:
            raw.close()
            raise
        self._conn = PostgresConnection(raw)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise ValueError("the metadata store is closed")
        return await trio.to_thread.run_sync(self._call, fn, args, limiter=self._limiter)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            if self._conn is None or self._conn.raw.closed or self._conn.raw.broken:
                self._conn = None
                self.connect()
            assert self._conn is not None
            result = fn(self._conn, *args)
        except psycopg.errors.IntegrityError as error:
            raise Conflict(one_line(error)) from None
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as error:
            if isinstance(error, psycopg.errors.DiskFull):
                raise OSError(errno.ENOSPC, f"metadata store: {one_line(error)}") from None
            if not self._down:
                self._down = True
                log.warning(
                    "the metadata database fails (%s); requests fail with EIO until it answers",
                    one_line(error),
                )
            raise OSError(errno.EIO, f"metadata store: {one_line(error)}") from None
        if self._down:
            self._down = False
            log.warning("the metadata database answers again")
        return result

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await trio.to_thread.run_sync(conn.raw.close, limiter=self._limiter)


def one_line(error: BaseException) -> str:
    """libpq's messages span lines (and repeat the server's address): the useful line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "FATAL:" in line or "failed:" in line:
            return line.split("failed:")[-1].strip() if "failed:" in line else line
    return lines[0] if lines else type(error).__name__


async def open_postgres(url: str) -> PostgresDatabase:
    """Connect to the database at `url`: one clear error (OSError, StoreInUse) if not."""
    db = PostgresDatabase(url)
    await trio.to_thread.run_sync(db.connect, limiter=db._limiter)
    return db
