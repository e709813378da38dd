"""The metadata store on PostgreSQL, for a store whose metadata lives on a server.

One psycopg (3) connection, used by one worker thread at a time through
`trio.to_thread.run_sync`: the store's transactions are whole functions that run next to
the connection (transactions.py), as they run in aiosqlite's thread for SQLite, so the
synchronous driver in a thread is the bridge (psycopg's asyncio interface would cost a
trio-asyncio hop per statement, not per transaction). Statements keep SQLite's `?`
placeholders; `PostgresConnection` rewrites them once per statement text.

The password comes from libpq's own sources (`PGPASSWORD`, the 0600 file `~/.pgpass` or
`PGPASSFILE`), never from a command line. A lost connection is EIO for the request that
met it, logged once per outage; the next request reconnects.

A store whose blobs live at an S3 service is shared: every host that serves it holds a
session (a row in `sessions`, kept alive by a heartbeat, dead once `expires` passes) and
pins the blobs it is uploading before any row names them, so that no collector anywhere
takes them for garbage; a commit releases its blob's pin in the transaction that names the
blob, and fails if the pin lapsed. A store whose blobs are local files is served by one
process: it takes a session-level advisory lock instead, so a second mount of the same
database is refused, as a second mount of a store directory is.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import trio

from fsobj import measures
from fsobj.metadata import schema_postgres
from fsobj.metadata.backend import Conflict, Dialect, MissingParent

log = logging.getLogger(__name__)
T = TypeVar("T")

# Runs of a transaction that the database undoes to break a deadlock, before EIO.
RETRIES = 5
_UNDONE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
# The key of the advisory lock that the one process serving a store holds.
_OWNER_LOCK = 0x66736F626A_01


class StoreInUse(Exception):
    """Another fsobj process holds the store's metadata."""


class PostgresDialect(Dialect):
    name = "postgresql"
    begin = "BEGIN"
    binary = "BYTEA"
    fold_usage = (
        "WITH gone AS (DELETE FROM bucket_usage WHERE shard != 0"
        " AND shard NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)"
        " RETURNING bucket, uid, objects, bytes, versions, version_bytes)"
        " INSERT INTO bucket_usage (bucket, uid, shard, objects, bytes, versions, version_bytes)"
        " SELECT bucket, uid, 0, sum(objects), sum(bytes), sum(versions), sum(version_bytes)"
        " FROM gone GROUP BY bucket, uid ON CONFLICT (bucket, uid, shard) DO UPDATE SET"
        " objects = bucket_usage.objects + excluded.objects,"
        " bytes = bucket_usage.bytes + excluded.bytes,"
        " versions = bucket_usage.versions + excluded.versions,"
        " version_bytes = bucket_usage.version_bytes + excluded.version_bytes"
    )

    def key_order(self) -> str:
        return schema_postgres.KEY_ORDER

    def hex(self, column: str) -> str:
        return f"encode({column}, 'hex')"

    def octet_length(self, expression: str) -> str:
        return f"octet_length({expression})"

    lock_rows = " FOR UPDATE"

    def prepare(self, conn: PostgresConnection) -> tuple[int, int]:
        return self.inodes(conn)  # the schema is migrated as the connection opens

    def inodes(self, conn: PostgresConnection) -> tuple[int, int]:
        (last,) = conn.execute("SELECT nextval('inode_ranges')").fetchall()[0]
        return last - schema_postgres.INODE_RANGE + 1, last + 1

    def release_pin(self, conn: PostgresConnection, key: bytes) -> bool:
        if conn.session is None:
            return True
        released = conn.execute(
            "DELETE FROM pins WHERE object_id = ? AND session = ?"
            " AND session IN (SELECT id FROM sessions WHERE expires > now())",
            (key, conn.session),
        )
        return released.rowcount > 0

    def pinned(self, column: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM pins p JOIN sessions s ON s.id = p.session"
            f" WHERE p.object_id = {column} AND s.expires > now())"
        )


POSTGRES = PostgresDialect()


@functools.lru_cache(maxsize=1024)
def _placeholders(sql: str) -> str:
    """SQLite's `?` as psycopg's `%s` (the statements have no other `?` or `%`)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresConnection:
    """A psycopg connection with the sqlite3 calls the transactions use."""

    dialect: Dialect = POSTGRES

    def __init__(self, raw: psycopg.Connection, session: int | None):
        self.raw = raw
        self.session = session  # this process's session on a shared store

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self.raw.execute(_placeholders(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.raw.cursor() as cursor:
            cursor.executemany(_placeholders(sql), list(rows))


class PostgresDatabase:
    """The connection, its thread, and what happens when the server goes away. `shared`:
    several hosts serve the store, each with a session that lives `session_seconds`
    past its last heartbeat (see the module)."""

    dialect: Dialect = POSTGRES

    def __init__(self, url: str, shared: bool = False, session_seconds: float = 60.0):
        self.url = url
        self.shared = shared
        self.session_seconds = session_seconds
        self.session: int | None = None
        self._conn: PostgresConnection | None = None
        self._limiter = trio.CapacityLimiter(1)  # one call at a time on the connection
        self._down = False
        self._closed = False

    def connect(self) -> None:
        """Connect, and take the owner's lock or renew the session (blocking: in the
        thread)."""
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
            # First, so that a database of a newer schema is refused before any write.
            schema_postgres.migrate(raw)
            if self.shared:
                self._join(raw)
            else:
                owned = raw.execute("SELECT pg_try_advisory_lock(%s)", (_OWNER_LOCK,)).fetchall()
                if not owned[0][0]:
                    raise StoreInUse("the store's metadata is in use by another fsobj process")
        except psycopg.Error as error:
            raw.close()
            raise OSError(errno.EIO, one_line(error)) from None
        except BaseException:
            raw.close()
            raise
        self._conn = PostgresConnection(raw, self.session)

    def _join(self, raw: psycopg.Connection) -> None:
        """Renew this process's session, or begin one (the first time, or when it lapsed
        during an outage: its pins are gone, and commits of blobs they covered fail)."""
        if self.session is not None and self._renew(raw):
            return
        if self.session is not None:
            log.warning("session %d lapsed while the database was away", self.session)
        (self.session,) = raw.execute(
            "INSERT INTO sessions (host, pid, expires)"
            " VALUES (%s, %s, now() + make_interval(secs => %s)) RETURNING id",
            (socket.gethostname(), os.getpid(), self.session_seconds),
        ).fetchall()[0]
        log.info("session %d begins", self.session)

    def _renew(self, raw: psycopg.Connection) -> bool:
        renewed = raw.execute(
            "UPDATE sessions SET expires = now() + make_interval(secs => %s)"
            " WHERE id = %s AND expires > now()",
            (self.session_seconds, self.session),
        )
        return renewed.rowcount > 0

    async def heartbeat(self) -> None:
        """Keep this session alive, and remove sessions that lapsed (their pins go too)."""

        def beat(conn: PostgresConnection) -> tuple[int, int]:
            self._join(conn.raw)  # renews it (or, if it lapsed, begins another)
            conn.session = self.session
            conn.execute("DELETE FROM sessions WHERE expires < now()")
            return conn.execute(
                "SELECT (SELECT count(*) FROM sessions WHERE expires > now()),"
                " (SELECT count(*) FROM pins WHERE session = ?)",
                (self.session,),
            ).fetchall()[0]

        sessions, pins = await self.run(beat)
        measures.SESSIONS.set(sessions)
        measures.PINNED_BLOBS.set(pins)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise ValueError("the metadata store is closed")
        return await trio.to_thread.run_sync(self._call, fn, args, limiter=self._limiter)

    run_short = run  # every call crosses the network: no round trip to save

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            if self._conn is None or self._conn.raw.closed or self._conn.raw.broken:
                self._conn = None
                self.connect()
            assert self._conn is not None
            result = self._retrying(fn, self._conn, args)
        except psycopg.errors.ForeignKeyViolation as error:
            raise MissingParent(one_line(error)) from None
        except psycopg.errors.IntegrityError as error:
            raise Conflict(one_line(error)) from None
        except _UNDONE as error:
            log.warning("a transaction was undone %d times by the database: %s", RETRIES, error)
            raise OSError(errno.EIO, f"metadata store: {one_line(error)}") from None
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

    @staticmethod
    def _retrying(fn: Callable[..., T], conn: PostgresConnection, args: tuple[Any, ...]) -> T:
        """`fn` again when the database chose its transaction to undo (a deadlock with
        another host's, which locked the same rows in another order): each transaction
        is one function, rolled back whole, so running it again is safe."""
        for attempt in range(RETRIES):
            try:
                return fn(conn, *args)
            except _UNDONE:
                if attempt == RETRIES - 1:
                    raise
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await trio.to_thread.run_sync(self._end, conn, limiter=self._limiter)

    def _end(self, conn: PostgresConnection) -> None:
        with contextlib.suppress(psycopg.Error):
            if conn.session is not None:  # its pins go with it
                conn.execute("DELETE FROM sessions WHERE id = ?", (conn.session,))
        conn.raw.close()


def one_line(error: BaseException) -> str:
    """libpq's messages span lines (and repeat the server's address): the useful line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "FATAL:" in line or "failed:" in line:
            return line.split("failed:")[-1].strip() if "failed:" in line else line
    return lines[0] if lines else type(error).__name__


async def open_postgres(
    url: str, shared: bool = False, session_seconds: float = 60.0
) -> PostgresDatabase:
    """Connect to the database at `url`: one clear error (OSError, StoreInUse) if not."""
    db = PostgresDatabase(url, shared, session_seconds)
    await trio.to_thread.run_sync(db.connect, limiter=db._limiter)
    return db
