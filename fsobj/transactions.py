"""The metadata store's transactions: the functions that run in its database thread.

`MetadataStore` (metadata.py) sends each of them through one aiosqlite round trip; every
change runs inside one transaction. The schema itself lives in schema.py.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import schema


def select(conn: sqlite3.Connection, sql: str, params: Iterable[Any]) -> list[tuple]:
    return conn.execute(sql, tuple(params)).fetchall()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """All statements inside commit together or not at all (the connection autocommits)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def write(conn: sqlite3.Connection, statements: list[tuple[str, tuple]]) -> None:
    with transaction(conn):
        for sql, params in statements:
            conn.execute(sql, params)


def write_after(
    conn: sqlite3.Connection, inserts: list[tuple[str, tuple]], statements: list[tuple[str, tuple]]
) -> None:
    write(conn, inserts + statements)


def update_many(
    conn: sqlite3.Connection,
    inserts: list[tuple[str, tuple]],
    updates: list[tuple[int, dict[str, Any] | Callable[[], dict[str, Any]]]],
    synced: bool = False,
) -> list[dict[str, Any] | OSError]:
    results: list[dict[str, Any] | OSError] = []
    statements = list(inserts)
    for inode, changes in updates:
        if callable(changes):
            try:
                changes = changes()
            except OSError as error:
                results.append(error)
                continue
        results.append(changes)
        row = dict(changes)
        checksums = row.pop("checksums", None)
        metadata = row.pop("user_metadata", None)  # all of it, replaced with the content
        if metadata is not None:
            statements.append(("DELETE FROM user_metadata WHERE inode = ?", (inode,)))
            statements += [
                ("INSERT INTO user_metadata (inode, name, value) VALUES (?, ?, ?)", (inode, k, v))
                for k, v in metadata.items()
            ]
        if row.get("object_id") is not None:
            row["object_id"] = schema.blob_key(row["object_id"])
            if checksums is not None:
                statements.append(record_checksums(row["object_id"], checksums))
        columns = ", ".join(f"{name} = ?" for name in row)
        statements.append((f"UPDATE entries SET {columns} WHERE inode = ?", (*row.values(), inode)))
    if not synced:
        write(conn, statements)
        return results
    # In WAL mode, FULL syncs the log at commit: this transaction, and every one before
    # it, is durable when it returns (NORMAL leaves that to the durability points).
    conn.execute("PRAGMA synchronous = FULL")
    try:
        write(conn, statements)
    finally:
        conn.execute("PRAGMA synchronous = NORMAL")
    return results


def record_checksums(key: bytes, checksums: bytes) -> tuple[str, tuple]:
    """The statement that records a blob's checksums (key: its id as stored)."""
    return (
        "INSERT OR REPLACE INTO blob_checksums (object_id, checksums) VALUES (?, ?)",
        (key, checksums),
    )


def unnamed_blobs(conn: sqlite3.Connection, object_ids: list[str]) -> list[str]:
    """Those of `object_ids` that no entry names: a set difference inside SQLite, so a
    collector's memory holds one batch of ids, never the store's."""
    names, odd = {}, []
    for object_id in object_ids:
        try:
            names[schema.blob_key(object_id)] = object_id  # as named on disk
        except ValueError:
            odd.append(object_id)  # not a blob's name: nothing can name it
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS listed_blobs (id BLOB PRIMARY KEY) WITHOUT ROWID")
    conn.execute("DELETE FROM temp.listed_blobs")
    conn.executemany(
        "INSERT OR IGNORE INTO temp.listed_blobs (id) VALUES (?)", [(key,) for key in names]
    )
    rows = conn.execute(
        "SELECT id FROM temp.listed_blobs"
        " WHERE NOT EXISTS (SELECT 1 FROM entries WHERE object_id = listed_blobs.id)"
    ).fetchall()
    conn.execute("DELETE FROM temp.listed_blobs")
    return odd + [names[key] for (key,) in rows]


def make_durable(conn: sqlite3.Connection, synced_through: int | None) -> None:
    if synced_through is not None:
        write(conn, [("UPDATE group_sync SET synced_through = ?", (synced_through,))])
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def remove_pending(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    with transaction(conn):
        rows = conn.execute(
            "SELECT inode, name FROM entries WHERE kind = 'object' AND object_id IS NULL"
        ).fetchall()
        conn.executemany("DELETE FROM entries WHERE inode = ?", [(inode,) for inode, _ in rows])
    return rows


# What must hold in a healthy store, as queries that return the rows breaking each rule.
INVARIANTS = {
    "entry whose parent is missing": "SELECT e.inode, e.name FROM entries e"
    " LEFT JOIN entries p ON p.inode = e.parent WHERE e.inode != 1 AND p.inode IS NULL",
    "entry whose parent is not a directory": "SELECT e.inode, e.name FROM entries e"
    " JOIN entries p ON p.inode = e.parent WHERE p.kind NOT IN ('root', 'bucket', 'dir')",
    "bucket outside the top level, or top-level entry that is no bucket": "SELECT inode, name"
    " FROM entries WHERE inode != 1 AND (kind = 'bucket') != (parent = 1)",
    "bucket without its bucket record": "SELECT e.inode, e.name FROM entries e"
    " LEFT JOIN buckets b USING (inode) WHERE e.kind = 'bucket' AND b.inode IS NULL",
    "object never committed (its writer died before close)": "SELECT inode, name FROM entries"
    " WHERE kind = 'object' AND object_id IS NULL",
    "symlink without a target": "SELECT inode, name FROM entries"
    " WHERE kind = 'symlink' AND target IS NULL",
    "directory whose count of subdirectories is wrong": "SELECT d.inode, d.name FROM entries d"
    " WHERE d.kind IN ('root', 'bucket', 'dir') AND d.subdirs != (SELECT count(*) FROM entries c"
    " WHERE c.parent = d.inode AND c.kind IN ('bucket', 'dir') AND c.inode != 1)",
    # Entries may share a blob (a copy over S3 names its source's): a blob is removed only
    # when no entry names it, so sharing is no problem.
}


def check(conn: sqlite3.Connection) -> list[str]:
    problems = [
        f"database: {row[0]}"
        for row in conn.execute("PRAGMA integrity_check").fetchall()
        if row[0] != "ok"
    ]
    problems += [f"database: {row}" for row in conn.execute("PRAGMA foreign_key_check")]
    for rule, query in INVARIANTS.items():
        problems += [f"{rule}: inode {inode} ({name})" for inode, name in conn.execute(query)]
    return problems


class NotEmpty(Exception):
    """The directory that `write_if_empty` guards holds something: nothing was written."""


def write_if_empty(
    conn: sqlite3.Connection,
    inserts: list[tuple[str, tuple]],
    statements: list[tuple[str, tuple]],
    directory: int,
) -> None:
    """`write_after`, in a transaction that first checks that no row names `directory`
    as its parent (NotEmpty otherwise, and nothing is written)."""
    with transaction(conn):
        for sql, params in inserts:
            conn.execute(sql, params)
        if conn.execute("SELECT 1 FROM entries WHERE parent = ? LIMIT 1", (directory,)).fetchone():
            raise NotEmpty(directory)
        for sql, params in statements:
            conn.execute(sql, params)


def delete_access_key(conn: sqlite3.Connection, key_id: str) -> bool:
    with transaction(conn):
        return conn.execute("DELETE FROM access_keys WHERE key_id = ?", (key_id,)).rowcount > 0


def select_acl(conn: sqlite3.Connection, bucket: int) -> tuple[int, list[tuple[str, str]]]:
    (owner,) = conn.execute("SELECT owner_uid FROM buckets WHERE inode = ?", (bucket,)).fetchone()
    grants = conn.execute(
        "SELECT grantee, permission FROM grants WHERE bucket = ? ORDER BY grantee, permission",
        (bucket,),
    ).fetchall()
    return owner, grants


def setup(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """Prepare the connection; returns the first inode number never used, the last
    durable generation of the group sync and the highest one recorded."""
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode keeps every commit atomic; durability comes from make_durable().
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = OFF")  # a migration may make a table anew
    schema.migrate(conn)
    conn.execute("PRAGMA foreign_keys = ON")
    # AUTOINCREMENT's record of the highest inode ever used: numbers stay unique even
    # though this store, not SQLite, assigns them now.
    (used,) = conn.execute(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'entries'), 0),"
        " coalesce((SELECT max(inode) FROM entries), 0))"
    ).fetchone()
    (synced_through,) = conn.execute("SELECT synced_through FROM group_sync").fetchone()
    (recorded,) = conn.execute(
        "SELECT coalesce(max(unsynced), 0) FROM entries WHERE unsynced != 0"
    ).fetchone()
    return used + 1, synced_through, recorded


# -- statements built on the loop, run by `write` -------------------------------------


def touch(directory: int, now_ns: int) -> tuple[str, tuple]:
    """The statement that records a change of a directory's entries in its times."""
    return (
        "UPDATE entries SET mtime_ns = ?, ctime_ns = ? WHERE inode = ?",
        (now_ns, now_ns, directory),
    )


def count_subdirs(counts: dict[int, int]) -> list[tuple[str, tuple]]:
    """The statements that count directories made, removed or moved in each directory."""
    return [
        ("UPDATE entries SET subdirs = subdirs + ? WHERE inode = ?", (change, directory))
        for directory, change in counts.items()
        if change
    ]
