"""The transactions of trees.py: what changes every name of a file (a hard link) or a
whole tree (a clone, a snapshot's removal) in one transaction. Like those of
transactions.py, they run in the metadata store's database thread."""

from __future__ import annotations

from fsobj.metadata import schema
from fsobj.metadata.transactions import (
    ENTRY_COLUMNS,
    Connection,
    Rows,
    count_subdirs,
    file_rows,
    touch,
    transaction,
)
from fsobj.refusals import Reason, Refused


def link(
    conn: Connection,
    inserts: list[tuple[str, tuple]],
    rows: Rows,
    new: tuple[int, int, str],
    now_ns: int,
) -> tuple[int, int]:
    """A new name for a file (a hard link): the row `new` (its inode, parent and name), a
    copy of the file's, with its user metadata; every name of the file counts one more.
    Returns the file's inode and count of names, as the database has them."""
    new_inode, parent, name = new
    where, params = file_rows(rows)
    with transaction(conn):
        for sql, values in inserts:
            conn.execute(sql, values)
        found = conn.execute(
            f"SELECT inode, coalesce(file_inode, inode), links FROM entries WHERE {where}"
            f" LIMIT 1{conn.dialect.lock_rows}",
            params,
        ).fetchone()
        if found is None:
            raise Refused(Reason.STALE, None, "removed meanwhile (by another host)")
        source, file_inode, links = found
        conn.execute(
            f"UPDATE entries SET file_inode = ?, links = links + 1, ctime_ns = ? WHERE {where}",
            (file_inode, now_ns, *params),
        )
        copied = ENTRY_COLUMNS.replace("inode, parent, name,", "?, ?, ?,", 1)
        conn.execute(
            f"INSERT INTO entries ({ENTRY_COLUMNS}) SELECT {copied} FROM entries WHERE inode = ?",
            (new_inode, parent, name, source),
        )
        conn.execute(
            "INSERT INTO user_metadata (inode, name, value)"
            " SELECT ?, name, value FROM user_metadata WHERE inode = ?",
            (new_inode, source),
        )
        conn.execute(*touch(parent, now_ns))
    return file_inode, links + 1


def subtree_size(conn: Connection, top: int) -> int:
    """How many entries the tree below `top` holds, `top` included."""
    return conn.execute(f"WITH RECURSIVE {_SUBTREE} SELECT count(*) FROM sub", (top,)).fetchone()[0]


_SUBTREE = (
    "sub(inode, depth) AS (SELECT CAST(? AS BIGINT), 0 UNION ALL"
    " SELECT e.inode, sub.depth + 1 FROM entries e JOIN sub ON e.parent = sub.inode)"
)


def clone(
    conn: Connection,
    inserts: list[tuple[str, tuple]],
    top: int,
    new_inodes: list[int],
    place: tuple[int, str],
    now_ns: int,
    bucket_owner: int | None,
    marks: dict[str, bytes | None],
) -> int:
    """Copy the tree below `top` by metadata alone (a clone): every entry gets a new inode
    from `new_inodes`, the same content (its blob, shared), attributes and user metadata;
    the copy of `top` is named `place` (parent, name). The names of a file with several
    (hard links) become files of their own. A bucket's copy is a bucket of
    `bucket_owner`'s with the same grants. `marks`: user metadata items the copy of `top`
    gets, or loses (None). Returns how many entries were copied."""
    parent, name = place
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS clone_map (old BIGINT PRIMARY KEY, new BIGINT)")
    with transaction(conn):
        for sql, values in inserts:
            conn.execute(sql, values)
        olds = [row[0] for row in conn.execute(
            f"WITH RECURSIVE {_SUBTREE} SELECT inode FROM sub ORDER BY depth", (top,)
        )]  # fmt: skip
        if len(olds) > len(new_inodes):
            raise Refused(Reason.VANISHED, None, "the tree grew while it was copied: try again")
        conn.execute("DELETE FROM clone_map")
        pairs = list(zip(olds, new_inodes[: len(olds)], strict=True))
        conn.executemany("INSERT INTO clone_map (old, new) VALUES (?, ?)", pairs)
        columns = ENTRY_COLUMNS.split(", ")
        copied = ", ".join(
            {
                "inode": "m.new",
                "parent": "CASE WHEN e.inode = ? THEN ? ELSE pm.new END",
                "name": "CASE WHEN e.inode = ? THEN ? ELSE e.name END",
                "ctime_ns": "?",
                "file_inode": "NULL",
                "links": "1",
                "version_id": "NULL",  # a copy's history starts with it
            }.get(column, f"e.{column}")
            for column in columns
        )
        conn.execute(
            f"INSERT INTO entries ({ENTRY_COLUMNS}) SELECT {copied} FROM clone_map m"
            " JOIN entries e ON e.inode = m.old"
            " LEFT JOIN clone_map pm ON pm.old = e.parent"
            " WHERE e.inode = ? OR pm.new IS NOT NULL ORDER BY m.new",
            (top, parent, top, name, now_ns, top),
        )
        conn.execute(
            "INSERT INTO user_metadata (inode, name, value) SELECT m.new, u.name, u.value"
            " FROM clone_map m JOIN user_metadata u ON u.inode = m.old"
        )
        new_top = new_inodes[0]
        for item, value in marks.items():
            conn.execute("DELETE FROM user_metadata WHERE inode = ? AND name = ?", (new_top, item))
            if value is not None:
                conn.execute(
                    "INSERT INTO user_metadata (inode, name, value) VALUES (?, ?, ?)",
                    (new_top, item, value),
                )
        if bucket_owner is not None:
            conn.execute(
                "INSERT INTO buckets (inode, owner_uid, created_ns) VALUES (?, ?, ?)",
                (new_top, bucket_owner, now_ns),
            )
            conn.execute(
                "INSERT INTO grants (bucket, grantee, permission)"
                " SELECT ?, grantee, permission FROM grants WHERE bucket = ?",
                (new_top, top),
            )
        is_dir = conn.execute(
            "SELECT kind IN ('bucket', 'dir') FROM entries WHERE inode = ?", (new_top,)
        ).fetchone()[0]
        for sql, values in [touch(parent, now_ns), *count_subdirs({parent: 1} if is_dir else {})]:
            conn.execute(sql, values)
        conn.execute("DELETE FROM clone_map")
    return len(olds)


def delete_tree(conn: Connection, top: int, now_ns: int) -> tuple[list[int], list[str]]:
    """Remove the tree below the directory `top` (`top` included) in one transaction: a
    snapshot that goes. Returns the inodes removed and the blobs they named (which may
    be named elsewhere still)."""
    with transaction(conn):
        rows = conn.execute(
            f"WITH RECURSIVE {_SUBTREE} SELECT e.inode, e.object_id, e.parent, e.kind"
            " FROM sub JOIN entries e ON e.inode = sub.inode ORDER BY sub.depth DESC",
            (top,),
        ).fetchall()
        conn.executemany("DELETE FROM entries WHERE inode = ?", [(row[0],) for row in rows])
        parent = next(row[2] for row in rows if row[0] == top)
        for sql, values in [touch(parent, now_ns), *count_subdirs({parent: -1})]:
            conn.execute(sql, values)
    blobs = {schema.blob_name(row[1]) for row in rows if row[1] is not None}
    return [row[0] for row in rows], sorted(blobs)
