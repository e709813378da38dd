"""The metadata store's schema on PostgreSQL, as numbered migrations.

The same shape as the SQLite schema (schema.py) at its version 7: the same tables,
columns, keys and indexes, in PostgreSQL's types (64-bit integers, `bytea`), with the
triggers in PL/pgSQL and S3's key order compared as bytes (`COLLATE "C"`). Its history
starts there, so its migrations are numbered on their own; `schema_version` records the
last one applied.
"""

from __future__ import annotations

import time
from typing import Any

from fsobj.metadata.schema import PLACE_ENTRIES, ROOT_INODE, USAGE_RECOUNTED, SchemaError

# Inode numbers a process takes from the database at a time (migration 2).
INODE_RANGE = 1024

KEY_ORDER = """((name || CASE WHEN kind IN ('bucket', 'dir') THEN '/' ELSE '' END) COLLATE "C")"""

# Each migration takes the schema from version N to N+1; never edit one that has shipped.
MIGRATIONS: list[str] = [
    f"""
    CREATE TABLE entries (
        inode        BIGINT PRIMARY KEY,  -- handed out by the store, never reused
        parent       BIGINT NOT NULL,
        name         TEXT NOT NULL,
        kind         TEXT NOT NULL CHECK (kind IN
                     ('root', 'bucket', 'dir', 'object', 'symlink', 'fifo', 'socket')),
        mode         BIGINT NOT NULL,
        uid          BIGINT NOT NULL,
        gid          BIGINT NOT NULL,
        atime_ns     BIGINT NOT NULL,
        mtime_ns     BIGINT NOT NULL,
        ctime_ns     BIGINT NOT NULL,
        object_id    BYTEA,               -- the blob's UUID, 16 bytes; NULL until committed
        size         BIGINT NOT NULL DEFAULT 0,
        etag         TEXT,
        content_type TEXT,
        target       TEXT,                -- a symlink's target
        unsynced     BIGINT NOT NULL DEFAULT 0,  -- group sync generation (schema.py: 4)
        subdirs      BIGINT NOT NULL DEFAULT 0,  -- directories directly inside
        blocks       BIGINT,              -- 512-byte blocks of a sparse blob
        UNIQUE (parent, name)
    );
    CREATE INDEX entries_by_object ON entries (object_id) WHERE object_id IS NOT NULL;
    CREATE INDEX entries_unsynced ON entries (unsynced) WHERE unsynced != 0;
    CREATE INDEX entries_in_key_order ON entries (parent, {KEY_ORDER});
    CREATE TABLE buckets (
        inode      BIGINT PRIMARY KEY REFERENCES entries (inode) ON DELETE CASCADE,
        owner_uid  BIGINT NOT NULL,
        created_ns BIGINT NOT NULL
    );
    CREATE TABLE user_metadata (
        inode BIGINT NOT NULL REFERENCES entries (inode) ON DELETE CASCADE,
        name  TEXT NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (inode, name)
    );
    CREATE TABLE grants (
        bucket     BIGINT NOT NULL REFERENCES buckets (inode) ON DELETE CASCADE,
        grantee    TEXT NOT NULL,
        permission TEXT NOT NULL
                   CHECK (permission IN ('READ', 'WRITE', 'READ_ACP', 'WRITE_ACP', 'FULL_CONTROL')),
        PRIMARY KEY (bucket, grantee, permission)
    );
    CREATE TABLE blob_checksums (
        object_id BYTEA PRIMARY KEY,
        checksums BYTEA NOT NULL
    );
    CREATE TABLE group_sync (synced_through BIGINT NOT NULL);
    INSERT INTO group_sync (synced_through) VALUES (0);
    CREATE TABLE access_keys (
        key_id     TEXT PRIMARY KEY,
        secret     TEXT NOT NULL,
        uid        BIGINT NOT NULL,
        created_ns BIGINT NOT NULL
    );
    -- A blob that no entry names any more loses its checksums.
    CREATE FUNCTION blob_unnamed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.object_id IS NOT NULL
           AND (TG_OP = 'DELETE' OR OLD.object_id IS DISTINCT FROM NEW.object_id) THEN
            DELETE FROM blob_checksums WHERE object_id = OLD.object_id
            AND NOT EXISTS (SELECT 1 FROM entries WHERE object_id = OLD.object_id);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER blob_unnamed_by_delete AFTER DELETE ON entries
        FOR EACH ROW EXECUTE FUNCTION blob_unnamed();
    CREATE TRIGGER blob_unnamed_by_update AFTER UPDATE OF object_id ON entries
        FOR EACH ROW EXECUTE FUNCTION blob_unnamed();
    """,
    # 2: several hosts on one store (docs/scale.md). Inode numbers come from a sequence,
    # a range of INODE_RANGE per call; each serving process holds a session, renewed by
    # its heartbeat, and pins the blobs it is uploading or fetching; the database keeps
    # every entry's parent in place, so a directory removed on one host while another
    # makes a name in it is refused by one of them; `settings` says where blobs live,
    # for hosts that join the store.
    f"""
    CREATE SEQUENCE inode_ranges INCREMENT BY {INODE_RANGE} MINVALUE 0;
    SELECT setval('inode_ranges', (SELECT max(inode) FROM entries), true);
    CREATE TABLE sessions (
        id      BIGSERIAL PRIMARY KEY,
        host    TEXT NOT NULL,
        pid     BIGINT NOT NULL,
        started TIMESTAMPTZ NOT NULL DEFAULT now(),
        expires TIMESTAMPTZ NOT NULL   -- renewed by the heartbeat; dead after it
    );
    CREATE TABLE pins (
        object_id BYTEA NOT NULL,
        session   BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        PRIMARY KEY (object_id, session)
    );
    CREATE INDEX pins_by_session ON pins (session);
    CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    -- The root has no parent: NULL here (0 in SQLite, and to the code that reads it).
    ALTER TABLE entries ALTER COLUMN parent DROP NOT NULL;
    UPDATE entries SET parent = NULL WHERE inode = {ROOT_INODE};
    ALTER TABLE entries ADD CONSTRAINT entries_root_alone_has_no_parent
        CHECK ((parent IS NULL) = (inode = {ROOT_INODE}));
    ALTER TABLE entries ADD CONSTRAINT entries_parent_exists
        FOREIGN KEY (parent) REFERENCES entries (inode);
    """,
    # 3: device nodes, which root makes (stored, never opened: the mount is nodev), and
    # the device each stands for.
    """
    ALTER TABLE entries DROP CONSTRAINT entries_kind_check;
    ALTER TABLE entries ADD CONSTRAINT entries_kind_check CHECK (kind IN ('root', 'bucket',
        'dir', 'object', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev'));
    ALTER TABLE entries ADD COLUMN rdev BIGINT NOT NULL DEFAULT 0;
    """,
    # 4: hard links (schema.py, 9).
    """
    ALTER TABLE entries ADD COLUMN file_inode BIGINT;
    ALTER TABLE entries ADD COLUMN links INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX entries_by_file ON entries (file_inode) WHERE file_inode IS NOT NULL;
    """,
    # 5: S3 versioning (schema.py, 10). Keys compare as UTF-8 bytes, as S3 lists them.
    """
    ALTER TABLE entries ADD COLUMN version_id TEXT;
    CREATE TABLE versions (
        bucket       BIGINT NOT NULL REFERENCES entries (inode) ON DELETE CASCADE,
        key          TEXT COLLATE "C" NOT NULL,
        version_id   TEXT NOT NULL,
        until_ns     BIGINT NOT NULL,
        object_id    BYTEA,
        size         BIGINT NOT NULL DEFAULT 0,
        etag         TEXT,
        content_type TEXT,
        mtime_ns     BIGINT NOT NULL,
        uid          BIGINT NOT NULL,
        blocks       BIGINT,
        PRIMARY KEY (bucket, key, version_id)
    );
    CREATE INDEX versions_by_object ON versions (object_id) WHERE object_id IS NOT NULL;
    CREATE INDEX versions_in_order ON versions (bucket, key, until_ns);
    CREATE TABLE version_metadata (
        bucket     BIGINT NOT NULL,
        key        TEXT COLLATE "C" NOT NULL,
        version_id TEXT NOT NULL,
        name       TEXT NOT NULL,
        value      BYTEA NOT NULL,
        PRIMARY KEY (bucket, key, version_id, name),
        FOREIGN KEY (bucket, key, version_id) REFERENCES versions ON DELETE CASCADE
    );
    CREATE OR REPLACE FUNCTION blob_unnamed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.object_id IS NOT NULL
           AND (TG_OP = 'DELETE' OR OLD.object_id IS DISTINCT FROM NEW.object_id) THEN
            DELETE FROM blob_checksums WHERE object_id = OLD.object_id
            AND NOT EXISTS (SELECT 1 FROM entries WHERE object_id = OLD.object_id)
            AND NOT EXISTS (SELECT 1 FROM versions WHERE object_id = OLD.object_id);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER version_unnamed AFTER DELETE ON versions
        FOR EACH ROW EXECUTE FUNCTION blob_unnamed();
    """,
    # 6: usage, exact as commits happen (schema.py, 11). Each connection counts its
    # changes in rows of its own (`shard`: its backend's pid), so that hosts committing
    # into one bucket never wait on one row, nor deadlock on two; readers sum the shards,
    # and gc folds the shards of connections gone into shard 0.
    f"""
    ALTER TABLE entries ADD COLUMN bucket BIGINT;
    {PLACE_ENTRIES}
    CREATE TABLE bucket_usage (
        bucket        BIGINT NOT NULL,
        uid           BIGINT NOT NULL,
        shard         BIGINT NOT NULL DEFAULT 0,
        objects       BIGINT NOT NULL DEFAULT 0,
        bytes         BIGINT NOT NULL DEFAULT 0,
        versions      BIGINT NOT NULL DEFAULT 0,
        version_bytes BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (bucket, uid, shard)
    );
    {USAGE_RECOUNTED}
    CREATE FUNCTION entry_placed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.kind = 'bucket' THEN
            NEW.bucket := NEW.inode;
        ELSE
            SELECT CASE WHEN kind = 'bucket' THEN inode ELSE bucket END INTO NEW.bucket
            FROM entries WHERE inode = NEW.parent;
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER entry_placed BEFORE INSERT ON entries
        FOR EACH ROW WHEN (NEW.bucket IS NULL) EXECUTE FUNCTION entry_placed();
    CREATE FUNCTION usage_add(b BIGINT, owner BIGINT, n BIGINT, size BIGINT, current BOOLEAN)
    RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        IF b IS NULL THEN
            RETURN;
        END IF;
        IF current THEN
            INSERT INTO bucket_usage (bucket, uid, shard, objects, bytes)
            VALUES (b, owner, pg_backend_pid(), n, size) ON CONFLICT (bucket, uid, shard)
            DO UPDATE SET objects = bucket_usage.objects + n, bytes = bucket_usage.bytes + size;
        ELSE
            INSERT INTO bucket_usage (bucket, uid, shard, versions, version_bytes)
            VALUES (b, owner, pg_backend_pid(), n, size) ON CONFLICT (bucket, uid, shard)
            DO UPDATE SET versions = bucket_usage.versions + n,
                version_bytes = bucket_usage.version_bytes + size;
        END IF;
    END $$;
    CREATE FUNCTION usage_of_entries() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP != 'INSERT' AND OLD.kind = 'object' THEN
            PERFORM usage_add(OLD.bucket, OLD.uid, -1, -OLD.size, true);
        END IF;
        IF TG_OP != 'DELETE' AND NEW.kind = 'object' THEN
            PERFORM usage_add(NEW.bucket, NEW.uid, 1, NEW.size, true);
        END IF;
        IF TG_OP = 'DELETE' AND OLD.kind = 'bucket' THEN
            DELETE FROM bucket_usage WHERE bucket = OLD.inode;
        END IF;
        RETURN NULL;
    END $$;
    CREATE FUNCTION usage_of_versions() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP != 'INSERT' AND OLD.object_id IS NOT NULL THEN
            PERFORM usage_add(OLD.bucket, OLD.uid, -1, -OLD.size, false);
        END IF;
        IF TG_OP != 'DELETE' AND NEW.object_id IS NOT NULL THEN
            PERFORM usage_add(NEW.bucket, NEW.uid, 1, NEW.size, false);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER usage_by_insert AFTER INSERT ON entries
        FOR EACH ROW WHEN (NEW.kind = 'object') EXECUTE FUNCTION usage_of_entries();
    CREATE TRIGGER usage_by_update AFTER UPDATE OF bucket, uid, size, kind ON entries
        FOR EACH ROW WHEN ((OLD.kind = 'object' OR NEW.kind = 'object')
            AND (OLD.bucket IS DISTINCT FROM NEW.bucket OR OLD.uid != NEW.uid
                 OR OLD.size != NEW.size OR OLD.kind != NEW.kind))
        EXECUTE FUNCTION usage_of_entries();
    CREATE TRIGGER usage_by_delete AFTER DELETE ON entries
        FOR EACH ROW WHEN (OLD.kind IN ('object', 'bucket')) EXECUTE FUNCTION usage_of_entries();
    CREATE TRIGGER version_usage AFTER INSERT OR DELETE ON versions
        FOR EACH ROW EXECUTE FUNCTION usage_of_versions();
    """,
    # 7: the objects whose etag is still to be computed (schema.py, 13).
    """
    CREATE INDEX entries_etag_pending ON entries (object_id)
        WHERE etag IS NULL AND object_id IS NOT NULL;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
# Serializes migrations of one database by several hosts at once (an advisory lock's key).
_MIGRATION_LOCK = 0x66736F626A  # "fsobj"


def migrate(conn: Any) -> int:
    """Bring the database to SCHEMA_VERSION; returns the version it had before. `conn` is
    a psycopg connection in autocommit mode. A database of a newer schema is refused
    before anything is written."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        found = row[0] if row else 0
        if found > SCHEMA_VERSION:
            raise SchemaError(
                f"the store's metadata has schema version {found} (PostgreSQL), newer than"
                f" this fsobj understands ({SCHEMA_VERSION}); upgrade fsobj"
            )
        for version in range(found, SCHEMA_VERSION):
            conn.execute(MIGRATIONS[version])
            if version == 0:
                now = time.time_ns()
                conn.execute(
                    "INSERT INTO entries (inode, parent, name, kind, mode, uid, gid, atime_ns,"
                    " mtime_ns, ctime_ns) VALUES (%s, 0, '', 'root', %s, 0, 0, %s, %s, %s)",
                    (ROOT_INODE, 0o1777, now, now, now),
                )
        if found == 0:
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
        elif found < SCHEMA_VERSION:
            conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
    return found
