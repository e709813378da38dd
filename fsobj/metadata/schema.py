"""The metadata store's schema: the one place that defines it, as numbered migrations.

The namespace is a tree of entries (buckets, directories, objects, symlinks) keyed by
(parent, name), so that a rename of a whole directory is one row update. An object's S3
key is the path of names from its bucket down; its blob is named by `object_id`.
"""

import sqlite3
import time
import uuid

ROOT_INODE = 1

# An entry's place among its siblings in S3's key order (backend.Dialect.key_order),
# as SQLite spells it: queries must spell it exactly so, for SQLite to use the index of
# migration 7.
KEY_ORDER = "(name || CASE WHEN kind IN ('bucket', 'dir') THEN '/' ELSE '' END)"

# A blob that no entry names any more loses its checksums (migration 6, and 8, which makes
# the table anew).
_BLOB_UNNAMED = """    CREATE TRIGGER blob_unnamed_by_delete AFTER DELETE ON entries
    WHEN old.object_id IS NOT NULL BEGIN
        DELETE FROM blob_checksums WHERE object_id = old.object_id
        AND NOT EXISTS (SELECT 1 FROM entries WHERE object_id = old.object_id);
    END;
    CREATE TRIGGER blob_unnamed_by_update AFTER UPDATE OF object_id ON entries
    WHEN old.object_id IS NOT NULL AND old.object_id IS NOT new.object_id BEGIN
        DELETE FROM blob_checksums WHERE object_id = old.object_id
        AND NOT EXISTS (SELECT 1 FROM entries WHERE object_id = old.object_id);
    END;"""

# What a trigger does once a blob may be named by neither an entry nor a version (10).
_UNNAMED_BY_ANY = """DELETE FROM blob_checksums WHERE object_id = old.object_id
        AND NOT EXISTS (SELECT 1 FROM entries WHERE object_id = old.object_id)
        AND NOT EXISTS (SELECT 1 FROM versions WHERE object_id = old.object_id);"""

# Where each entry is (migration 11): its bucket, a bucket's being itself, as the tree
# says; a move to another bucket places the moved tree anew (namespace.move).
PLACE_ENTRIES = """UPDATE entries SET bucket = placed.bucket FROM (
        WITH RECURSIVE tree(inode, bucket) AS (
            SELECT inode, inode FROM entries WHERE kind = 'bucket'
            UNION ALL SELECT e.inode, tree.bucket FROM entries e JOIN tree ON e.parent = tree.inode
        ) SELECT inode, bucket FROM tree
    ) AS placed WHERE placed.inode = entries.inode;"""

# What each bucket holds, by owner, counted from the rows (migration 11, fsck's repair):
# current objects (each name of a file counts, as S3 lists it) and past versions, each
# with its bytes. `bucket_usage` keeps these sums as the triggers change them.
USAGE_COUNTED = """SELECT bucket, uid, sum(objects) AS objects, sum(bytes) AS bytes,
        sum(versions) AS versions, sum(version_bytes) AS version_bytes FROM (
            SELECT bucket, uid, 1 AS objects, size AS bytes, 0 AS versions, 0 AS version_bytes
            FROM entries WHERE kind = 'object' AND bucket IS NOT NULL
            UNION ALL SELECT bucket, uid, 0, 0, 1, size FROM versions WHERE object_id IS NOT NULL
        ) AS counted GROUP BY bucket, uid"""
USAGE_COLUMNS = "bucket, uid, objects, bytes, versions, version_bytes"
# The usage recorded, by bucket and owner (the shards of each summed).
USAGE_SUMS = """SELECT bucket, uid, sum(objects) AS objects, sum(bytes) AS bytes,
        sum(versions) AS versions, sum(version_bytes) AS version_bytes
        FROM bucket_usage GROUP BY bucket, uid"""
COUNT_USAGE = (
    "DELETE FROM bucket_usage",
    f"INSERT INTO bucket_usage ({USAGE_COLUMNS}) {USAGE_COUNTED}",
)
USAGE_RECOUNTED = "".join(f"{statement};\n" for statement in COUNT_USAGE)


def _usage_change(row: str, sign: str, current: bool, when: str) -> str:
    """The statement of a trigger that counts `row` (old or new) in or out of its bucket's
    usage: as a current object, or as a past version."""
    count, size = ("objects", "bytes") if current else ("versions", "version_bytes")
    return (
        f"INSERT INTO bucket_usage (bucket, uid, {count}, {size})"
        f" SELECT {row}.bucket, {row}.uid, {sign}1, {sign}{row}.size WHERE {when}"
        f" ON CONFLICT (bucket, uid, shard) DO UPDATE SET {count} = {count} + excluded.{count},"
        f" {size} = {size} + excluded.{size};"
    )


_OLD_OBJECT = "old.kind = 'object' AND old.bucket IS NOT NULL"
_NEW_OBJECT = "new.kind = 'object' AND new.bucket IS NOT NULL"


# Each migration takes the schema from version N to N+1; never edit one that has shipped.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE entries (
        inode        INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the kernel may hold it
        parent       INTEGER NOT NULL,
        name         TEXT NOT NULL,
        kind         TEXT NOT NULL CHECK (kind IN ('root', 'bucket', 'dir', 'object', 'symlink')),
        mode         INTEGER NOT NULL,
        uid          INTEGER NOT NULL,
        gid          INTEGER NOT NULL,
        atime_ns     INTEGER NOT NULL,
        mtime_ns     INTEGER NOT NULL,
        ctime_ns     INTEGER NOT NULL,
        object_id    TEXT,                -- UUID of the object's blob; NULL until first commit
        size         INTEGER NOT NULL DEFAULT 0,
        etag         TEXT,                -- MD5 hex of the content
        content_type TEXT,
        target       TEXT,                -- symlink target
        UNIQUE (parent, name)
    );
    CREATE INDEX entries_by_parent ON entries (parent);
    CREATE INDEX entries_by_object ON entries (object_id);
    CREATE TABLE buckets (
        inode      INTEGER PRIMARY KEY REFERENCES entries (inode) ON DELETE CASCADE,
        owner_uid  INTEGER NOT NULL,
        created_ns INTEGER NOT NULL
    );
    CREATE TABLE user_metadata (
        inode INTEGER NOT NULL REFERENCES entries (inode) ON DELETE CASCADE,
        name  TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (inode, name)
    ) WITHOUT ROWID;
    """,
    # 2: bucket ACLs. The owner (buckets.owner_uid) always holds FULL_CONTROL.
    """
    CREATE TABLE grants (
        bucket     INTEGER NOT NULL REFERENCES buckets (inode) ON DELETE CASCADE,
        grantee    TEXT NOT NULL,  -- uid:N, gid:N, authenticated, everyone
        permission TEXT NOT NULL
                   CHECK (permission IN ('READ', 'WRITE', 'READ_ACP', 'WRITE_ACP', 'FULL_CONTROL')),
        PRIMARY KEY (bucket, grantee, permission)
    ) WITHOUT ROWID;
    -- every user may create buckets at the top level, and remove only their own: 01777
    UPDATE entries SET mode = 1023 | 512 WHERE inode = 1;
    """,
    # 3: per-chunk CRC-32s of each object's blob (little-endian uint32 per 1 MiB), verified
    # on read; NULL for objects committed before this version (fsck --verify fills them).
    """
    ALTER TABLE entries ADD COLUMN checksums BLOB;
    """,
    # 4: a new object whose small blob was written without a sync of its own carries the
    # generation of the group sync that makes it durable (0: none needed). Generations up to
    # group_sync.synced_through are durable. After a crash, an object of a later generation
    # is verified, and removed if its blob did not survive (it had no earlier version).
    """
    ALTER TABLE entries ADD COLUMN unsynced INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX entries_unsynced ON entries (unsynced) WHERE unsynced != 0;
    CREATE TABLE group_sync (synced_through INTEGER NOT NULL);
    INSERT INTO group_sync (synced_through) VALUES (0);
    """,
    # 5: FIFOs and sockets (entries without a blob), and each directory's count of the
    # directories it holds (its st_nlink is 2 more). SQLite cannot change a CHECK
    # constraint, so the table is made anew (migrate runs with foreign keys off).
    """
    CREATE TABLE entries_new (
        inode        INTEGER PRIMARY KEY AUTOINCREMENT,
        parent       INTEGER NOT NULL,
        name         TEXT NOT NULL,
        kind         TEXT NOT NULL CHECK (kind IN
                     ('root', 'bucket', 'dir', 'object', 'symlink', 'fifo', 'socket')),
        mode         INTEGER NOT NULL,
        uid          INTEGER NOT NULL,
        gid          INTEGER NOT NULL,
        atime_ns     INTEGER NOT NULL,
        mtime_ns     INTEGER NOT NULL,
        ctime_ns     INTEGER NOT NULL,
        object_id    TEXT,
        size         INTEGER NOT NULL DEFAULT 0,
        etag         TEXT,
        content_type TEXT,
        target       TEXT,
        checksums    BLOB,
        unsynced     INTEGER NOT NULL DEFAULT 0,
        subdirs      INTEGER NOT NULL DEFAULT 0,  -- directories directly inside (st_nlink - 2)
        UNIQUE (parent, name)
    );
    INSERT INTO entries_new (inode, parent, name, kind, mode, uid, gid, atime_ns, mtime_ns,
        ctime_ns, object_id, size, etag, content_type, target, checksums, unsynced)
    SELECT inode, parent, name, kind, mode, uid, gid, atime_ns, mtime_ns,
        ctime_ns, object_id, size, etag, content_type, target, checksums, unsynced
    FROM entries;
    -- the highest inode ever handed out must survive the table it was recorded for
    UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'entries')
    WHERE name = 'entries_new';
    DROP TABLE entries;
    ALTER TABLE entries_new RENAME TO entries;
    CREATE INDEX entries_by_parent ON entries (parent);
    CREATE INDEX entries_by_object ON entries (object_id);
    CREATE INDEX entries_unsynced ON entries (unsynced) WHERE unsynced != 0;
    UPDATE entries SET subdirs = (SELECT count(*) FROM entries c
        WHERE c.parent = entries.inode AND c.kind IN ('bucket', 'dir') AND c.inode != 1)
    WHERE kind IN ('root', 'bucket', 'dir');
    """,
    # 6: ten million objects. Blob ids are 16 bytes, not 36 characters of text; the
    # checksums of a blob leave the namespace's rows (which lookups and listings read) for
    # a table of their own, kept by triggers: a blob that no entry names loses them. And
    # what a sparse blob occupies, for st_blocks.
    f"""
    CREATE TABLE blob_checksums (
        object_id BLOB PRIMARY KEY,  -- 16 bytes: the blob's UUID
        checksums BLOB NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO blob_checksums (object_id, checksums)
    SELECT uuid_bytes(object_id), checksums FROM entries
    WHERE object_id IS NOT NULL AND checksums IS NOT NULL;
    -- In place, not a new table: the declared type of object_id stays TEXT, whose affinity
    -- keeps blobs as they are; from here on the column holds each blob's 16-byte UUID.
    DROP INDEX entries_by_object;
    UPDATE entries SET object_id = uuid_bytes(object_id) WHERE object_id IS NOT NULL;
    CREATE INDEX entries_by_object ON entries (object_id) WHERE object_id IS NOT NULL;
    ALTER TABLE entries DROP COLUMN checksums;
    ALTER TABLE entries ADD COLUMN blocks INTEGER;  -- 512-byte blocks of a sparse blob
{_BLOB_UNNAMED}
    """,
    # 7: the S3 front end. Access keys, each acting as a local uid; and the order S3 lists
    # keys in (UTF-8 bytes, a directory counted with its trailing slash), as an index, so
    # that a listing reads one page of a directory at a time in that order.
    f"""
    CREATE TABLE access_keys (
        key_id     TEXT PRIMARY KEY,
        secret     TEXT NOT NULL,
        uid        INTEGER NOT NULL,
        created_ns INTEGER NOT NULL
    );
    CREATE INDEX entries_in_key_order ON entries (parent, {KEY_ORDER});
    """,
    # 8: device nodes, which root makes (stored, never opened: the mount is nodev), and
    # the device each stands for. The table is made anew for the CHECK constraint, as in
    # 5, with the indexes and triggers that went with the old one.
    f"""
    CREATE TABLE entries_new (
        inode        INTEGER PRIMARY KEY AUTOINCREMENT,
        parent       INTEGER NOT NULL,
        name         TEXT NOT NULL,
        kind         TEXT NOT NULL CHECK (kind IN ('root', 'bucket', 'dir', 'object',
                     'symlink', 'fifo', 'socket', 'chardev', 'blockdev')),
        mode         INTEGER NOT NULL,
        uid          INTEGER NOT NULL,
        gid          INTEGER NOT NULL,
        atime_ns     INTEGER NOT NULL,
        mtime_ns     INTEGER NOT NULL,
        ctime_ns     INTEGER NOT NULL,
        object_id    TEXT,                -- the blob's UUID, 16 bytes (see 6)
        size         INTEGER NOT NULL DEFAULT 0,
        etag         TEXT,
        content_type TEXT,
        target       TEXT,
        unsynced     INTEGER NOT NULL DEFAULT 0,
        subdirs      INTEGER NOT NULL DEFAULT 0,
        blocks       INTEGER,
        rdev         INTEGER NOT NULL DEFAULT 0,  -- a device node's device number
        UNIQUE (parent, name)
    );
    INSERT INTO entries_new (inode, parent, name, kind, mode, uid, gid, atime_ns, mtime_ns,
        ctime_ns, object_id, size, etag, content_type, target, unsynced, subdirs, blocks)
    SELECT inode, parent, name, kind, mode, uid, gid, atime_ns, mtime_ns,
        ctime_ns, object_id, size, etag, content_type, target, unsynced, subdirs, blocks
    FROM entries;
    UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'entries')
    WHERE name = 'entries_new';
    DROP TABLE entries;
    ALTER TABLE entries_new RENAME TO entries;
    CREATE INDEX entries_by_parent ON entries (parent);
    CREATE INDEX entries_by_object ON entries (object_id) WHERE object_id IS NOT NULL;
    CREATE INDEX entries_unsynced ON entries (unsynced) WHERE unsynced != 0;
    CREATE INDEX entries_in_key_order ON entries (parent, {KEY_ORDER});
{_BLOB_UNNAMED}
    """,
    # 9: hard links. Each name keeps its own row (S3 lists, reads and replaces keys by
    # name); the names of one file share `file_inode`, the inode the kernel knows them by
    # (the first name's, kept while any name is left), and carry the same content and
    # attributes, which every change writes to all of them in one transaction; `links` is
    # how many names the file has.
    """
    ALTER TABLE entries ADD COLUMN file_inode INTEGER;
    ALTER TABLE entries ADD COLUMN links INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX entries_by_file ON entries (file_inode) WHERE file_inode IS NOT NULL;
    """,
    # 10: S3 versioning. An object's current version is its entry, with its id (NULL: S3's
    # "null" version); what a change replaces in a versioned bucket, and delete markers,
    # are rows of `versions`, by bucket and key (the key as it was then), with their user
    # metadata. A blob loses its checksums when neither an entry nor a version names it.
    f"""
    ALTER TABLE entries ADD COLUMN version_id TEXT;
    CREATE TABLE versions (
        bucket       INTEGER NOT NULL REFERENCES entries (inode) ON DELETE CASCADE,
        key          TEXT NOT NULL,
        version_id   TEXT NOT NULL,     -- 'null' for S3's null version
        until_ns     INTEGER NOT NULL,  -- when it stopped being current; a marker's: made
        object_id    TEXT,              -- the blob's 16-byte UUID; NULL: a delete marker
        size         INTEGER NOT NULL DEFAULT 0,
        etag         TEXT,
        content_type TEXT,
        mtime_ns     INTEGER NOT NULL,
        uid          INTEGER NOT NULL,
        blocks       INTEGER,
        PRIMARY KEY (bucket, key, version_id)
    );
    CREATE INDEX versions_by_object ON versions (object_id) WHERE object_id IS NOT NULL;
    CREATE INDEX versions_in_order ON versions (bucket, key, until_ns);
    CREATE TABLE version_metadata (
        bucket     INTEGER NOT NULL,
        key        TEXT NOT NULL,
        version_id TEXT NOT NULL,
        name       TEXT NOT NULL,
        value      BLOB NOT NULL,
        PRIMARY KEY (bucket, key, version_id, name),
        FOREIGN KEY (bucket, key, version_id) REFERENCES versions ON DELETE CASCADE
    ) WITHOUT ROWID;
    DROP TRIGGER blob_unnamed_by_delete;
    DROP TRIGGER blob_unnamed_by_update;
    CREATE TRIGGER blob_unnamed_by_delete AFTER DELETE ON entries
    WHEN old.object_id IS NOT NULL BEGIN {_UNNAMED_BY_ANY} END;
    CREATE TRIGGER blob_unnamed_by_update AFTER UPDATE OF object_id ON entries
    WHEN old.object_id IS NOT NULL AND old.object_id IS NOT new.object_id BEGIN
        {_UNNAMED_BY_ANY}
    END;
    CREATE TRIGGER version_unnamed AFTER DELETE ON versions
    WHEN old.object_id IS NOT NULL BEGIN {_UNNAMED_BY_ANY} END;
    """,
    # 11: usage, exact as commits happen: each entry knows its bucket (set from its parent
    # when the row is made), and `bucket_usage` counts objects, past versions and their
    # bytes by bucket and owner, changed by triggers in the transaction that changes a
    # row. `shard` is 0 here; on PostgreSQL each connection counts in a row of its own.
    f"""
    ALTER TABLE entries ADD COLUMN bucket INTEGER;
    {PLACE_ENTRIES}
    CREATE TABLE bucket_usage (
        bucket        INTEGER NOT NULL,
        uid           INTEGER NOT NULL,
        shard         INTEGER NOT NULL DEFAULT 0,
        objects       INTEGER NOT NULL DEFAULT 0,
        bytes         INTEGER NOT NULL DEFAULT 0,
        versions      INTEGER NOT NULL DEFAULT 0,
        version_bytes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (bucket, uid, shard)
    ) WITHOUT ROWID;
    {USAGE_RECOUNTED}
    CREATE TRIGGER entry_placed AFTER INSERT ON entries WHEN new.bucket IS NULL BEGIN
        UPDATE entries SET bucket = CASE WHEN new.kind = 'bucket' THEN new.inode
            ELSE (SELECT CASE WHEN p.kind = 'bucket' THEN p.inode ELSE p.bucket END
                  FROM entries p WHERE p.inode = new.parent) END
        WHERE inode = new.inode;
    END;
    CREATE TRIGGER usage_by_insert AFTER INSERT ON entries WHEN {_NEW_OBJECT} BEGIN
        {_usage_change("new", "", True, "true")}
    END;
    CREATE TRIGGER usage_by_update AFTER UPDATE OF bucket, uid, size, kind ON entries
    WHEN (old.kind = 'object' OR new.kind = 'object') AND (old.bucket IS NOT new.bucket
        OR old.uid != new.uid OR old.size != new.size OR old.kind != new.kind) BEGIN
        {_usage_change("old", "-", True, _OLD_OBJECT)}
        {_usage_change("new", "", True, _NEW_OBJECT)}
    END;
    CREATE TRIGGER usage_by_delete AFTER DELETE ON entries WHEN {_OLD_OBJECT} BEGIN
        {_usage_change("old", "-", True, "true")}
    END;
    CREATE TRIGGER usage_of_removed_bucket AFTER DELETE ON entries
    WHEN old.kind = 'bucket' BEGIN
        DELETE FROM bucket_usage WHERE bucket = old.inode;
    END;
    CREATE TRIGGER version_usage_by_insert AFTER INSERT ON versions
    WHEN new.object_id IS NOT NULL BEGIN
        {_usage_change("new", "", False, "true")}
    END;
    CREATE TRIGGER version_usage_by_delete AFTER DELETE ON versions
    WHEN old.object_id IS NOT NULL BEGIN
        {_usage_change("old", "-", False, "true")}
    END;
    """,
    # 12: an index by parent alone serves no query that the unique index on (parent, name)
    # does not, and cost every new and removed name a page more to write (one in eleven
    # of a new object's).
    """
    DROP INDEX entries_by_parent;
    """,
    # 13: the objects whose etag is still to be computed (service/etags.py), found again
    # when the daemon starts, as a crash or an unmount may come before their turn.
    """
    CREATE INDEX entries_etag_pending ON entries (object_id)
        WHERE etag IS NULL AND object_id IS NOT NULL;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(Exception):
    pass


def blob_key(object_id: str) -> bytes:
    """A blob's id as the database keeps it: the UUID's 16 bytes."""
    return uuid.UUID(object_id).bytes


def blob_name(key: bytes) -> str:
    """A blob's id as the data store names it, from the bytes the database keeps."""
    return str(uuid.UUID(bytes=bytes(key)))


def _uuid_bytes(text: str | None) -> bytes | None:
    return None if text is None else blob_key(text)


def _statements(script: str) -> list[str]:
    """Split a script into statements (executescript would commit our transaction)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending)
            pending = ""
    return statements


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION; returns the version it had before. Foreign
    keys must be off (a migration may make a table anew); each migration ends with a
    check that they hold."""
    conn.create_function("uuid_bytes", 1, _uuid_bytes, deterministic=True)
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"the store's metadata has schema version {found}, newer than this fsobj "
            f"understands ({SCHEMA_VERSION}); upgrade fsobj"
        )
    for version in range(found, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            if version == 0:
                now = time.time_ns()
                conn.execute(
                    "INSERT INTO entries (inode, parent, name, kind, mode, uid, gid,"
                    " atime_ns, mtime_ns, ctime_ns) VALUES (?, 0, '', 'root', ?, 0, 0, ?, ?, ?)",
                    (ROOT_INODE, 0o755, now, now, now),
                )
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise SchemaError(f"migration {version + 1} broke foreign keys: {broken[:5]}")
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found
