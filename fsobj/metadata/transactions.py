"""The metadata store's transactions: the functions that run in its database thread.

`MetadataStore` (store.py) sends each of them through one round trip of its database
(SQLite or PostgreSQL); every change runs inside one transaction. `conn` is a DB-API
connection carrying its dialect (backend.py) for what the two say differently.
The schemas live in schema.py and schema_postgres.py.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fsobj.metadata import schema
from fsobj.metadata.archive import archived
from fsobj.metadata.entries import Commit, Entry
from fsobj.refusals import Reason, Refused

# A DB-API connection with a `dialect`: sqlite3's (sqlite.SqliteConnection) or
# psycopg's behind postgres.PostgresConnection.
Connection = Any
# What must be done, blocking, just before a transaction, in its round trip (a blob's sync).
Before = Callable[[], None]


def select(conn: Connection, sql: str, params: Iterable[Any]) -> list[tuple]:
    return conn.execute(sql, tuple(params)).fetchall()


@contextlib.contextmanager
def transaction(conn: Connection) -> Iterator[None]:
    """All statements inside commit together or not at all (the connection autocommits)."""
    conn.execute(conn.dialect.begin)
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def write(conn: Connection, statements: list[tuple[str, tuple]]) -> None:
    with transaction(conn):
        for sql, params in statements:
            conn.execute(sql, params)


def write_after(
    conn: Connection, inserts: list[tuple[str, tuple]], statements: list[tuple[str, tuple]]
) -> None:
    write(conn, inserts + statements)


def commit_many(
    conn: Connection,
    inserts: list[tuple[str, tuple]],
    commits: list[tuple[Rows, Commit]],
    synced: bool = False,
    inserted: frozenset[int] = frozenset(),
    before: Before | None = None,
) -> list[str | Refused | OSError | None]:
    """Record each commit in its object's row, in one transaction (after `inserts`);
    returns per commit the blob its row named before, or why it failed alone: its row is
    gone (STALE: removed by another host), a copy's source blob is no longer named, or
    the new blob's upload pin is lost (EIO: see Dialect.release_pin). The commits at the
    positions `inserted` are their objects' first, which `inserts` wrote whole with the
    row (insert_entry's `committed`): no row named a blob before. `before` runs first,
    in the same thread: what must be durable before the rows name it (an error in it
    fails the whole transaction)."""
    results: list[str | Refused | OSError | None] = []
    if before is not None:
        before()

    def run() -> None:
        results.clear()
        with transaction(conn):
            for sql, params in inserts:
                conn.execute(sql, params)
            results.extend(
                None if index in inserted else _commit(conn, rows, commit)
                for index, (rows, commit) in enumerate(commits)
            )

    if synced:
        conn.dialect.write_synced(conn, run)
    else:
        run()
    return results


def written_whole(commit: Commit, metadata: dict[str, bytes] | None) -> bool:
    """Whether an object's first commit can be written with its row (insert_entry's
    `committed`), the row's user metadata being `metadata`: nothing in it needs the row
    looked up first (a condition, a shared blob, a version kept or restored) or written
    apart (user metadata; notes, unless they remove items the row does not have, as a
    commit from the mount removes those of the content it replaces)."""
    return (
        commit.expects is None
        and not commit.shares_blob
        and commit.archive is None
        and commit.restores is None
        and commit.user_metadata is None
        and metadata is not None
        and all(value is None and name not in metadata for name, value in commit.notes)
    )


def _commit(conn: Connection, rows: Rows, commit: Commit) -> str | Refused | OSError | None:
    where, params = file_rows(rows)
    found = conn.execute(
        f"SELECT object_id, etag FROM entries WHERE {where} LIMIT 1{conn.dialect.lock_rows}",
        params,
    ).fetchone()
    expects = commit.expects
    if found is None:
        if expects and expects.absent:  # its row was not written: another host's name now
            return Refused(Reason.CONDITION, None, "the key exists (If-None-Match)")
        return Refused(Reason.STALE, None, "the object was removed meanwhile (by another host)")
    if expects and expects.absent and found[0] is not None:
        return Refused(Reason.CONDITION, None, "the key exists (If-None-Match)")
    if expects and expects.etag is not None and (found[0] is None or found[1] != expects.etag):
        return Refused(Reason.CONDITION, None, "the key holds another object (If-Match)")
    key = schema.blob_key(commit.object_id)
    # A copy's source blob must still be named, or it may be gone; a copy onto itself
    # names it already. A new blob is pinned by its upload until its row names it.
    if commit.shares_blob:
        if found[0] != key and not _still_named(conn, key, where, params):
            return Refused(Reason.NO_SUCH_KEY, None, "the source was replaced meanwhile")
    elif not conn.dialect.release_pin(conn, key):
        return OSError(errno.EIO, "this host's session expired during the upload")
    statements: list[tuple[str, tuple]] = []
    if commit.archive is not None:  # before the row changes: what it replaces is kept
        statements += archived(commit.archive, commit.ctime_ns, False)
    if commit.user_metadata is not None:  # all of it, replaced with the content
        statements += user_metadata_of(rows, commit.user_metadata)
    elif commit.notes:
        names = f"SELECT inode FROM entries WHERE {where}"
        dropped = [name for name, value in commit.notes if value is None]
        if dropped:
            sql = f"DELETE FROM user_metadata WHERE name IN ({', '.join('?' * len(dropped))})"
            statements.append((f"{sql} AND inode IN ({names})", (*dropped, *params)))
        for name, value in commit.notes:
            if value is not None:
                sql = (
                    "INSERT INTO user_metadata (inode, name, value)"
                    f" SELECT inode, ?, ? FROM entries WHERE {where}"
                    " ON CONFLICT (inode, name) DO UPDATE SET value = excluded.value"
                )
                statements.append((sql, (name, value, *params)))
    if commit.checksums is not None:
        statements.append(record_checksums(key, commit.checksums))
    if commit.restores is not None:
        statements.append(
            (
                "DELETE FROM versions WHERE bucket = ? AND key = ? AND version_id = ?",
                commit.restores,
            )
        )
    row = commit.attributes()
    del row["checksums"]  # a blob's, in blob_checksums
    row["object_id"] = key
    statements.append(_update_row(rows, row))
    for sql, params in statements:
        conn.execute(sql, params)
    previous = found[0]
    return None if previous is None or previous == key else schema.blob_name(previous)


def _still_named(conn: Connection, key: bytes, where: str, params: tuple) -> bool:
    """Whether a row other than those `where` picks, or a past version, names the blob."""
    return bool(
        conn.execute(
            f"SELECT 1 FROM entries WHERE object_id = ? AND NOT {where} LIMIT 1"
            f"{conn.dialect.lock_rows}",
            (key, *params),
        ).fetchone()
        or conn.execute(  # or a past version (a copy of one)
            f"SELECT 1 FROM versions WHERE object_id = ? LIMIT 1{conn.dialect.lock_rows}",
            (key,),
        ).fetchone()
    )


# The rows of one file, as the cache knows it: ("file_inode", the kernel's inode) for the
# names of a file that has several (hard links), which carry the same content and
# attributes; ("inode", its row) for a name alone; ("shared", its row) for a name alone
# that another host may have linked meanwhile.
Rows = tuple[str, int]


def rows_of(inode: int, file_inode: int | None, shared: bool) -> Rows:
    """The rows of the file that the entry `inode` names. On one host every link is made
    by this process, so the cache knows them all; on a shared store the database says."""
    if file_inode is not None:
        return ("file_inode", file_inode)
    return ("shared" if shared else "inode", inode)


def file_rows(rows: Rows) -> tuple[str, tuple]:
    """The condition that selects every row of the file, and its parameters."""
    column, inode = rows
    if column in ("file_inode", "inode"):
        return f"{column} = ?", (inode,)
    return (
        "inode IN (SELECT CAST(? AS BIGINT) UNION SELECT inode FROM entries"
        " WHERE file_inode = (SELECT file_inode FROM entries WHERE inode = ?))",
        (inode, inode),
    )


def user_metadata_of(rows: Rows, items: dict[str, bytes]) -> list[tuple[str, tuple]]:
    """The statements that make `items` all of a file's user metadata."""
    where, params = file_rows(rows)
    names = f"SELECT inode FROM entries WHERE {where}"
    return [
        (f"DELETE FROM user_metadata WHERE inode IN ({names})", params),
        *(
            (f"INSERT INTO user_metadata (inode, name, value) SELECT inode, ?, ? FROM"
             f" entries WHERE {where}", (k, v, *params))
            for k, v in items.items()
        ),
    ]  # fmt: skip


def update_columns(
    conn: Connection, inserts: list[tuple[str, tuple]], rows: Rows, changes: dict[str, Any]
) -> None:
    """Set some columns of a file's rows (mode, owner, times, content type)."""
    write(conn, [*inserts, _update_row(rows, changes)])


def _update_row(rows: Rows, columns: dict[str, Any]) -> tuple[str, tuple]:
    assignments = ", ".join(f"{name} = ?" for name in columns)
    where, params = file_rows(rows)
    return f"UPDATE entries SET {assignments} WHERE {where}", (*columns.values(), *params)


def one_name_less(row: tuple[str, tuple], now_ns: int) -> tuple[str, tuple]:
    """Before a row goes (`row`: a condition that selects it, and its parameters): the
    file's other names (hard links) count one name less; nothing when it has none. The
    database decides, not the cache, which may not know of links made on another host."""
    condition, params = row
    return (
        "UPDATE entries SET links = links - 1, ctime_ns = ? WHERE file_inode ="
        f" (SELECT file_inode FROM entries WHERE {condition}) AND NOT ({condition})",
        (now_ns, *params, *params),
    )


# The columns of an entry's row; reads add its blob's checksums from their own table.
ENTRY_COLUMNS = (
    "inode, parent, name, kind, mode, uid, gid, atime_ns, mtime_ns, ctime_ns,"
    " object_id, size, etag, content_type, target, unsynced, subdirs, blocks, rdev,"
    " file_inode, links, version_id"
)


def insert_entry(
    entry: Entry,
    touch_parent: bool = True,
    replace: bool = False,
    metadata: dict[str, bytes] | None = None,
    unless_taken: bool = False,
    committed: Commit | None = None,
) -> list[tuple[str, tuple]]:
    """The statements that write a new entry's row, with its user `metadata` and, for a
    directory, its count in its parent's. `replace`: a new object's row, written with its
    first commit, replaces an object of the same name that another host made meanwhile
    (the last close wins; that object's blob is left to gc). `unless_taken`: it is
    written only if the name is free (a conditional create, whose commit then fails).
    `committed`: the object's first commit, written with the row (one statement where
    the commit's own would look the row up and update it, running the usage triggers
    again)."""
    row = {name: getattr(entry, name) for name in ENTRY_COLUMNS.replace(" ", "").split(",")}
    checksums = entry.checksums
    if committed is not None:
        changes = committed.attributes()
        checksums = changes.pop("checksums")
        row.update(changes)
    # No row below it is written before its own: each directory's row counts itself in.
    row["subdirs"] = 0
    key = None
    if row["object_id"] is not None:
        key = row["object_id"] = schema.blob_key(row["object_id"])
    values = tuple(row.values())
    statements: list[tuple[str, tuple]] = []
    if replace and entry.kind == "object" and not unless_taken:
        named = ("parent = ? AND name = ? AND kind = 'object'", (entry.parent, entry.name))
        statements += [
            one_name_less(named, entry.ctime_ns),
            (f"DELETE FROM entries WHERE {named[0]}", named[1]),
        ]
    # Its bucket given here, the trigger that would find it (schema.py, 11) does nothing.
    bucket = ("?", entry.inode) if entry.kind == "bucket" else (_BUCKET_OF_CHILDREN, entry.parent)
    statements.append(
        (
            f"INSERT INTO entries ({ENTRY_COLUMNS}, bucket)"
            f" VALUES ({', '.join('?' * len(values))}, {bucket[0]})"
            + (" ON CONFLICT (parent, name) DO NOTHING" if unless_taken else ""),
            (*values, bucket[1]),
        )
    )
    if touch_parent:
        statements.append(touch(entry.parent, entry.ctime_ns))
    if key is not None and checksums is not None:
        statements.append(record_checksums(key, checksums))
    if entry.is_dir:
        statements += count_subdirs({entry.parent: 1})
    statements += [
        ("INSERT INTO user_metadata (inode, name, value) VALUES (?, ?, ?)", (entry.inode, k, v))
        for k, v in (metadata or {}).items()
    ]
    return statements


def record_checksums(key: bytes, checksums: bytes) -> tuple[str, tuple]:
    """The statement that records a blob's checksums (key: its id as stored)."""
    return (
        "INSERT INTO blob_checksums (object_id, checksums) VALUES (?, ?)"
        " ON CONFLICT (object_id) DO UPDATE SET checksums = excluded.checksums",
        (key, checksums),
    )


def unnamed_blobs(conn: Connection, object_ids: list[str]) -> list[str]:
    """Those of `object_ids` that no entry names and no live session pins (a blob being
    uploaded on another host): a set difference inside the database, so a collector's
    memory holds one batch of ids, never the store's."""
    names, odd = {}, []
    for object_id in object_ids:
        try:
            names[schema.blob_key(object_id)] = object_id  # as named on disk
        except ValueError:
            odd.append(object_id)  # not a blob's name: nothing can name it
    binary = conn.dialect.binary
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS listed_blobs (id {binary} PRIMARY KEY)")
    with transaction(conn):
        conn.execute("DELETE FROM listed_blobs")
        conn.executemany(
            "INSERT INTO listed_blobs (id) VALUES (?) ON CONFLICT DO NOTHING",
            [(key,) for key in names],
        )
        rows = conn.execute(
            "SELECT id FROM listed_blobs"
            " WHERE NOT EXISTS (SELECT 1 FROM entries WHERE object_id = listed_blobs.id)"
            " AND NOT EXISTS (SELECT 1 FROM versions WHERE object_id = listed_blobs.id)"
            f" AND NOT {conn.dialect.pinned('listed_blobs.id')}"
        ).fetchall()
        conn.execute("DELETE FROM listed_blobs")
    return odd + [names[bytes(key)] for (key,) in rows]


def make_durable(conn: Connection, synced_through: int | None) -> None:
    if synced_through is not None:
        write(conn, [("UPDATE group_sync SET synced_through = ?", (synced_through,))])
    conn.dialect.make_durable(conn)


def remove_pending(conn: Connection) -> list[tuple[int, str]]:
    with transaction(conn):
        rows = conn.execute(
            "SELECT inode, name FROM entries WHERE kind = 'object' AND object_id IS NULL"
        ).fetchall()
        conn.executemany("DELETE FROM entries WHERE inode = ?", [(inode,) for inode, _ in rows])
    return rows


NEVER_COMMITTED = "object never committed (its writer died before close)"

MISPLACED = "entry whose bucket is recorded wrong"
MISCOUNTED = "usage of a bucket that differs from what it holds"
# The usage recorded, its shards summed (a row of nothing but zeros counts nothing).
_USAGE_RECORDED = (
    f"SELECT {schema.USAGE_COLUMNS} FROM ({schema.USAGE_SUMS}) AS sums"
    " WHERE objects != 0 OR bytes != 0 OR versions != 0 OR version_bytes != 0"
)

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
    NEVER_COMMITTED: "SELECT inode, name FROM entries WHERE kind = 'object' AND object_id IS NULL",
    "symlink without a target": "SELECT inode, name FROM entries"
    " WHERE kind = 'symlink' AND target IS NULL",
    "directory whose count of subdirectories is wrong": "SELECT d.inode, d.name FROM entries d"
    " WHERE d.kind IN ('root', 'bucket', 'dir') AND d.subdirs != (SELECT count(*) FROM entries c"
    " WHERE c.parent = d.inode AND c.kind IN ('bucket', 'dir') AND c.inode != 1)",
    "file whose count of names (hard links) is wrong": "SELECT e.inode, e.name FROM entries e"
    " WHERE e.links != CASE WHEN e.file_inode IS NULL THEN 1"
    " ELSE (SELECT count(*) FROM entries f WHERE f.file_inode = e.file_inode) END",
    "name of a file whose other names differ in content or attributes": "SELECT e.inode,"
    " e.name FROM entries e JOIN entries f ON f.file_inode = e.file_inode AND f.inode < e.inode"
    " WHERE e.object_id IS DISTINCT FROM f.object_id OR e.kind != f.kind OR e.mode != f.mode"
    " OR e.uid != f.uid OR e.gid != f.gid OR e.size != f.size OR e.mtime_ns != f.mtime_ns",
    "past version of a bucket that is gone": "SELECT v.bucket, v.key FROM versions v"
    " LEFT JOIN entries b ON b.inode = v.bucket WHERE b.kind IS DISTINCT FROM 'bucket'",
    MISPLACED: "SELECT e.inode, e.name FROM entries e LEFT JOIN entries p ON p.inode = e.parent"
    " WHERE e.inode != 1 AND e.bucket IS DISTINCT FROM CASE WHEN e.kind = 'bucket'"
    " THEN e.inode WHEN p.kind = 'bucket' THEN p.inode ELSE p.bucket END",
    MISCOUNTED: f"SELECT bucket, 'owner ' || uid FROM ({schema.USAGE_COUNTED} EXCEPT"
    f" {_USAGE_RECORDED}) AS counted UNION SELECT bucket, 'owner ' || uid FROM"
    f" ({_USAGE_RECORDED} EXCEPT {schema.USAGE_COUNTED}) AS recorded",
    # Entries may share a blob (a copy over S3 names its source's): a blob is removed only
    # when no entry names it, so sharing is no problem.
}


def check(conn: Connection) -> list[str]:
    problems = conn.dialect.check(conn)
    for rule, query in INVARIANTS.items():
        problems += [f"{rule}: inode {inode} ({name})" for inode, name in conn.execute(query)]
    return problems


def write_if_empty(
    conn: Connection,
    inserts: list[tuple[str, tuple]],
    statements: list[tuple[str, tuple]],
    directory: int,
) -> None:
    """`write_after`, in a transaction that first checks that no row names `directory`
    as its parent (refused NOT_EMPTY otherwise, and nothing is written)."""
    with transaction(conn):
        for sql, params in inserts:
            conn.execute(sql, params)
        if conn.execute("SELECT 1 FROM entries WHERE parent = ? LIMIT 1", (directory,)).fetchone():
            raise Refused(Reason.NOT_EMPTY, None, "the directory is not empty")
        for sql, params in statements:
            conn.execute(sql, params)


def pin_blobs(conn: Connection, object_ids: list[str]) -> int:
    """Pin the blobs about to be written under these ids by this connection's session;
    returns the session."""
    with transaction(conn):
        conn.executemany(
            "INSERT INTO pins (object_id, session) VALUES (?, ?)",
            [(schema.blob_key(object_id), conn.session) for object_id in object_ids],
        )
    return conn.session


def settle_setting(conn: Connection, name: str, value: str) -> str:
    with transaction(conn):
        conn.execute(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (name, value),
        )
        return conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()[0]


def delete_access_key(conn: Connection, key_id: str) -> bool:
    with transaction(conn):
        return conn.execute("DELETE FROM access_keys WHERE key_id = ?", (key_id,)).rowcount > 0


def select_acl(conn: Connection, bucket: int) -> tuple[int, list[tuple[str, str]]]:
    found = conn.execute("SELECT owner_uid FROM buckets WHERE inode = ?", (bucket,)).fetchone()
    if found is None:  # removed by another host
        raise Refused(Reason.NO_SUCH_BUCKET, None, "the bucket was removed")
    (owner,) = found
    grants = conn.execute(
        "SELECT grantee, permission FROM grants WHERE bucket = ? ORDER BY grantee, permission",
        (bucket,),
    ).fetchall()
    return owner, grants


def setup(conn: Connection) -> tuple[int, int, int, int]:
    """Prepare the connection and the schema (Dialect.prepare); returns the first range
    of inode numbers to hand out [first, end), the last durable generation of the group
    sync and the highest one recorded."""
    first, end = conn.dialect.prepare(conn)
    synced_through, recorded = conn.execute(
        "SELECT (SELECT synced_through FROM group_sync),"
        " (SELECT coalesce(max(unsynced), 0) FROM entries WHERE unsynced != 0)"
    ).fetchall()[0]
    return first, end, synced_through, recorded


def inodes(conn: Connection) -> tuple[int, int]:
    return conn.dialect.inodes(conn)


# -- statements built on the loop, run by `write` -------------------------------------


def touch(directory: int, now_ns: int) -> tuple[str, tuple]:
    """The statement that records a change of a directory's entries in its times."""
    return (
        "UPDATE entries SET mtime_ns = ?, ctime_ns = ? WHERE inode = ?",
        (now_ns, now_ns, directory),
    )


_BUCKET_OF_CHILDREN = (
    "(SELECT CASE WHEN kind = 'bucket' THEN inode ELSE bucket END FROM entries WHERE inode = ?)"
)


def place_moved(inode: int, new_parent: int) -> tuple[str, tuple]:
    """The statement that places a tree moved into another bucket in that bucket (the
    usage triggers then move its counts); nothing when the bucket stays."""
    return (
        "WITH RECURSIVE moved(inode) AS (SELECT inode FROM entries WHERE inode = ?"
        f" AND bucket IS DISTINCT FROM {_BUCKET_OF_CHILDREN} UNION ALL"
        " SELECT e.inode FROM entries e JOIN moved ON e.parent = moved.inode)"
        f" UPDATE entries SET bucket = {_BUCKET_OF_CHILDREN}"
        " WHERE inode IN (SELECT inode FROM moved)",
        (inode, new_parent, new_parent),
    )


def count_subdirs(counts: dict[int, int]) -> list[tuple[str, tuple]]:
    """The statements that count directories made, removed or moved in each directory."""
    return [
        ("UPDATE entries SET subdirs = subdirs + ? WHERE inode = ?", (change, directory))
        for directory, change in counts.items()
        if change
    ]
