"""What the metadata store needs from a database, and what differs between the two it
runs on: SQLite (sqlite.py, the embedded default) and PostgreSQL
(postgres.py, for a store whose metadata lives on a server).

The store's work is written once, as functions that run in the database's own thread
with a DB-API connection (transactions.py, and the statements that namespace.py and
store.py build): one function is one round trip and, when it changes anything, one
transaction. The SQL is the common part of both dialects (`INSERT ... ON CONFLICT`,
`IS DISTINCT FROM`, `?` placeholders, which the PostgreSQL connection rewrites); what
cannot be said the same way is a method of `Dialect`, which each connection carries as
`conn.dialect`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Conflict(Exception):
    """A statement broke a uniqueness rule (a name taken meanwhile): nothing was written."""


class MissingParent(Conflict):
    """A statement named a parent that is gone, or removed one that still has children
    (another host changed the directory meanwhile): nothing was written."""


class Dialect:
    """SQL that differs between the databases, and their connection-wide steps."""

    name = ""
    begin = "BEGIN"  # opens a transaction that writes
    binary = "BLOB"  # the type of bytes, for temporary tables
    # After a SELECT inside a transaction: lock the rows read until it ends (several hosts
    # commit to one object: the last to take the lock wins, knowing what it replaced).
    lock_rows = ""
    # Folds the usage counted by connections that are gone into one row (shard 0) per
    # bucket and owner; nothing where every change counts in shard 0 already.
    fold_usage = ""

    def key_order(self) -> str:
        """An entry's place among its siblings in S3's key order: its name and a
        directory's trailing slash, compared as UTF-8 bytes ("a-b" < "a/" < "a0").
        Queries must spell it exactly so, for the database to use its index."""
        raise NotImplementedError

    def hex(self, column: str) -> str:
        """SQL for the lowercase hex digits of a bytes column."""
        raise NotImplementedError

    def octet_length(self, expression: str) -> str:
        raise NotImplementedError

    def blob_name(self, column: str) -> str:
        """SQL for a blob id as the data store names it (the UUID's text) from the 16
        bytes the database keeps: computed in the database, which costs the service's loop
        nothing."""
        text = self.hex(column)
        groups = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
        parts = " || '-' || ".join(f"substr({text}, {start}, {length})" for start, length in groups)
        return f"CASE WHEN {column} IS NULL THEN NULL ELSE {parts} END"

    def prepare(self, conn: Any) -> tuple[int, int]:
        """Prepare the connection and bring the schema up to date; returns the first
        range of inode numbers this connection may hand out (`inodes`)."""
        raise NotImplementedError

    def inodes(self, conn: Any) -> tuple[int, int]:
        """A new range [first, end) of inode numbers never used, for this process alone."""
        raise NotImplementedError

    def release_pin(self, conn: Any, key: bytes) -> bool:
        """In a commit's transaction: release this session's pin of the new blob `key`;
        whether it still held one (a blob whose pin lapsed may have been collected)."""
        return True

    def pinned(self, column: str) -> str:
        """SQL that is true when a live session pins the blob `column` names (a blob being
        uploaded on another host: see metadata_postgres)."""
        return "FALSE"

    def write_synced(self, conn: Any, write: Callable[[], None]) -> None:
        """Run `write` (one transaction) so that it is durable when it returns."""
        write()

    def make_durable(self, conn: Any) -> None:
        """Make every committed transaction durable."""

    def check(self, conn: Any) -> list[str]:
        """Problems the database finds in itself."""
        return []


class Database(Protocol):
    """One connection to the metadata database, owned by a thread of its own."""

    dialect: Dialect
    session: int | None  # this process's session, on a store that several hosts serve

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` in the database's thread: one round trip. Integrity
        errors come back as Conflict, a database out of space or out of reach as OSError."""
        ...

    async def run_short(self, fn: Callable[..., T], *args: Any) -> T:
        """As `run`, for a short transaction that neither syncs nor reads much (a commit,
        an unlink, a rename): a database in this process may run it without the round
        trip."""
        ...

    async def heartbeat(self) -> None:
        """Keep this process's session alive (nothing without one)."""
        ...

    async def close(self) -> None: ...
