"""The metadata store: the namespace (namespace.py), and buckets' ACLs, user
metadata, S3 access keys and what concerns the store as a whole, in SQLite or PostgreSQL
(backend.py)."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import trio

from fsobj.datastore.store import new_object_id
from fsobj.iam.policy import Acl, Grant, Permission
from fsobj.metadata import schema, transactions
from fsobj.metadata.backend import Database
from fsobj.metadata.cache import DEFAULT_CAPACITY
from fsobj.metadata.entries import Bucket, Entry, Usage
from fsobj.metadata.sqlite import open_sqlite
from fsobj.metadata.versions import VersionStore

log = logging.getLogger(__name__)

PINNED_IDS = 64


class MetadataStore(VersionStore):
    """Trio-facing interface to the metadata database. Use `open_metadata_store`."""

    def __init__(self, db: Database, cache_entries: int = DEFAULT_CAPACITY):
        super().__init__(db, cache_entries)
        self._acls: dict[int, Acl] = {}  # per bucket, as long as it lives
        self._acls_read: dict[int, float] = {}  # when (a shared store reads them again)
        self.access_key_changes = 0  # keys removed since the store opened
        # Group sync of new objects' blobs: commits record the current generation; a sync
        # starts a new one and, once the blobs are on disk, records that every generation
        # up to its own is durable (one row, however many objects). Set when the store opens.
        self._generation = 1
        self._handed_out = 0
        self._synced_through = 0
        # Pinned ids for new blobs on a shared store, and the session that pinned them.
        self._blob_ids: list[str] = []
        self._blob_ids_session: int | None = None
        self._pinning = trio.Lock()

    def _forget(self, inode: int) -> None:
        super()._forget(inode)
        self._acls.pop(inode, None)
        self._acls_read.pop(inode, None)

    # -- buckets ----------------------------------------------------------------------

    async def buckets(self) -> list[Bucket]:
        rows = await self._run(
            transactions.select,
            "SELECT b.inode, e.name, b.owner_uid, b.created_ns"
            " FROM buckets b JOIN entries e USING (inode) ORDER BY e.name",
            (),
        )
        return [Bucket(*row) for row in rows]

    async def usage(self, bucket: int | None = None) -> list[Usage]:
        """What each bucket (or `bucket` alone) holds, by owner, exact as of the last
        commit: the triggers count every change in its own transaction (schema.py, 11)."""
        where, params = ("WHERE bucket = ?", (bucket,)) if bucket is not None else ("", ())
        rows = await self._run(
            transactions.select,
            f"SELECT {schema.USAGE_COLUMNS} FROM ({schema.USAGE_SUMS}) AS sums {where}"
            " ORDER BY bucket, uid",
            params,
        )
        return [Usage(*(int(value) for value in row)) for row in rows]

    async def recount_usage(self) -> None:
        """Place every entry in its bucket and count usage anew from the rows (fsck)."""
        await self._run(
            transactions.write,
            [(statement, ()) for statement in (schema.PLACE_ENTRIES, *schema.COUNT_USAGE)],
        )

    async def fold_usage(self) -> None:
        """Fold what connections that are gone counted into one row per bucket and owner
        (PostgreSQL: schema_postgres.py, 6), so that reading usage stays cheap."""
        if self.dialect.fold_usage:
            await self._run(transactions.write, [(self.dialect.fold_usage, ())])

    def cached_acl(self, bucket: int) -> Acl:
        """A bucket's ACL that `acl` has read (it stays cached while the bucket lives)."""
        return self._acls[bucket]

    async def acl(self, bucket: int) -> Acl:
        """The bucket's owner and grants (cached; every change goes through set_grants)."""
        found = self._acls.get(bucket)
        if found is None or (self.shared and self._acl_age(bucket) >= self.fresh_seconds):
            rows = await self._run(transactions.select_acl, bucket)
            owner, grants = rows
            found = self._acls[bucket] = Acl(
                owner, tuple(Grant(g, Permission(p)) for g, p in grants)
            )
            self._acls_read[bucket] = time.monotonic()
        return found

    def _acl_age(self, bucket: int) -> float:
        return time.monotonic() - self._acls_read.get(bucket, 0.0)

    def trusted_for(self, entry: Entry) -> float:
        """As NamespaceStore's; a bucket's attributes also show its grants."""
        left = super().trusted_for(entry)
        if self.shared and entry.kind == "bucket":
            left = min(left, max(0.0, self.fresh_seconds - self._acl_age(entry.inode)))
        return left

    async def set_grants(self, bucket: int, grants: tuple[Grant, ...]) -> None:
        """Replace a bucket's grants in one transaction."""
        statements: list[tuple[str, tuple]] = [("DELETE FROM grants WHERE bucket = ?", (bucket,))]
        statements += [
            (
                "INSERT INTO grants (bucket, grantee, permission) VALUES (?, ?, ?)",
                (bucket, g.grantee, g.permission.value),
            )
            for g in grants
        ]
        await self._run(transactions.write, statements)
        owner = (await self.acl(bucket)).owner
        self._acls[bucket] = Acl(owner, grants)

    # -- user metadata ----------------------------------------------------------------

    async def user_metadata(self, inode: int) -> dict[str, bytes]:
        found = self._cache.user_metadata(inode)
        if found is None:
            rows = await self._run(
                transactions.select,
                "SELECT name, value FROM user_metadata WHERE inode = ?",
                (inode,),
            )
            found = self._cache.set_user_metadata(
                inode, {name: bytes(value) for name, value in rows}
            )
        return found

    async def set_user_metadata(
        self, inode: int, name: str, value: bytes | None, file_inode: int | None = None
    ) -> None:
        """Set one user metadata item, or remove it when `value` is None: of the entry
        `inode`, and of every name of its file if it has several (`file_inode`, hard
        links). An entry whose row is not written yet changes in the cache alone: its row
        carries the item."""
        current = await self.user_metadata(inode)
        if inode in self._unwritten:
            if value is None:
                current.pop(name, None)
            else:
                current[name] = value
            return
        rows = transactions.rows_of(inode, file_inode, self.shared)
        where, of = transactions.file_rows(rows)
        statement: tuple[str, tuple]
        if value is None:
            statement = (
                f"DELETE FROM user_metadata WHERE name = ? AND inode IN"
                f" (SELECT inode FROM entries WHERE {where})",
                (name, *of),
            )
        else:
            statement = (
                f"INSERT INTO user_metadata (inode, name, value) SELECT inode, ?, ? FROM entries"
                f" WHERE {where} ON CONFLICT (inode, name) DO UPDATE SET value = excluded.value",
                (name, value, *of),
            )
        await self._write([statement])
        self._user_metadata_changed(inode, file_inode)
        if value is None:
            current.pop(name, None)
        else:
            current[name] = value

    # -- access keys (the S3 front end's identities) -------------------------------------

    async def add_access_key(self, key_id: str, secret: str, uid: int, now_ns: int) -> None:
        await self._run(
            transactions.write,
            [
                (
                    "INSERT INTO access_keys (key_id, secret, uid, created_ns) VALUES (?, ?, ?, ?)",
                    (key_id, secret, uid, now_ns),
                )
            ],
        )

    async def access_keys(self, key_id: str | None = None) -> list[tuple[str, str, int, int]]:
        """(key id, secret, uid, created) of every key, or of the one named."""
        where = "" if key_id is None else " WHERE key_id = ?"
        return await self._run(
            transactions.select,
            f"SELECT key_id, secret, uid, created_ns FROM access_keys{where} ORDER BY key_id",
            () if key_id is None else (key_id,),
        )

    async def remove_access_key(self, key_id: str) -> bool:
        removed = await self._run(transactions.delete_access_key, key_id)
        self.access_key_changes += 1  # what front ends remember of keys is out of date
        return removed

    # -- what several hosts share -------------------------------------------------------

    async def new_blob_id(self) -> str:
        """The id for a blob about to be written. On a shared store it is pinned by this
        process's session already, so no collector on any host takes the blob for garbage
        before its row names it; ids are pinned PINNED_IDS at a time, in one round trip."""
        if not self.shared:
            return new_object_id()
        while not self._blob_ids or self._blob_ids_session != self._db.session:
            async with self._pinning:
                if not self._blob_ids or self._blob_ids_session != self._db.session:
                    ids = [new_object_id() for _ in range(PINNED_IDS)]
                    self._blob_ids_session = await self._run(transactions.pin_blobs, ids)
                    self._blob_ids = ids
        return self._blob_ids.pop()

    async def heartbeat(self) -> None:
        """Keep this process's session on a shared store alive."""
        await self._db.heartbeat()

    @property
    def session(self) -> int | None:
        return self._db.session

    async def other_sessions(self) -> int:
        """How many other processes serve this shared store now (live sessions)."""
        rows = await self._run(
            transactions.select,
            "SELECT count(*) FROM sessions WHERE expires > now() AND id != ?",
            (self._db.session,),
        )
        return rows[0][0]

    async def end_session(self, session: int) -> None:
        """End a session of a process known to be gone (its pins go with it)."""
        if session != self._db.session:
            await self._run(transactions.write, [("DELETE FROM sessions WHERE id = ?", (session,))])

    async def settle_setting(self, name: str, value: str) -> str:
        """The store's setting `name`: `value` if it had none, else the one recorded."""
        return await self._run(transactions.settle_setting, name, value)

    # -- the store as a whole ---------------------------------------------------------

    async def unnamed_blobs(self, object_ids: list[str]) -> list[str]:
        """Those of `object_ids` that no entry names (compared inside the database)."""
        return await self._run(transactions.unnamed_blobs, object_ids)

    async def record_etag(self, object_id: str, etag: str) -> None:
        """The etag of a blob committed without one (service/etags.py), for every entry
        and past version that names it."""
        key = schema.blob_key(object_id)
        pending = "SET etag = ? WHERE object_id = ? AND etag IS NULL"
        await self._run(
            transactions.write,
            [
                (f"UPDATE entries {pending}", (etag, key)),
                (f"UPDATE versions {pending}", (etag, key)),
            ],
        )

    async def objects_without_etag(self) -> list[int]:
        """The objects committed without their etag whose etag is not recorded yet (the
        daemon stopped first), by inode."""
        rows = await self._run(
            transactions.select,
            "SELECT inode FROM entries WHERE etag IS NULL AND object_id IS NOT NULL",
            (),
        )
        return [inode for (inode,) in rows]

    async def remove_pending_objects(self) -> list[str]:
        """Delete objects that were created but never committed (their writer died before
        close); returns their names. Only for a store nobody has open."""
        rows = await self._run(transactions.remove_pending)
        for inode, _ in rows:
            self._forget(inode)
        return [name for _, name in rows]

    async def count_objects(self) -> int:
        return (
            await self._run(
                transactions.select, "SELECT count(*) FROM entries WHERE kind = 'object'", ()
            )
        )[0][0]

    async def object_versions(
        self, after_inode: int, limit: int, skip_parent: int | None = None
    ) -> list[tuple[int, str | None, int, bytes | None]]:
        """(inode, object_id, size, checksums) of a page of objects in inode order (but
        those directly in `skip_parent`), for checks."""
        return await self._run(
            transactions.select,
            f"SELECT inode, {self.object_id_sql}, size, checksums"
            " FROM entries LEFT JOIN blob_checksums USING (object_id)"
            " WHERE inode > ? AND kind = 'object' AND parent IS DISTINCT FROM ?"
            " ORDER BY inode LIMIT ?",
            (after_inode, skip_parent, limit),
        )

    async def check(self) -> list[str]:
        """Problems in the database itself and in the invariants of the namespace."""
        return await self._run(transactions.check)

    def unsynced_generation(self) -> int:
        """The mark for a new object committed with a blob that is not synced yet."""
        self._handed_out = self._generation
        return self._generation

    def is_synced(self, entry: Entry) -> bool:
        return entry.unsynced <= self._synced_through

    def begin_sync(self) -> int | None:
        """Start a group sync: the generation whose blobs the caller is about to make
        durable (every blob of it is written already), or None if none is waiting."""
        if self._handed_out <= self._synced_through:
            return None
        through = self._generation
        self._generation += 1
        return through

    async def make_durable(self, synced_through: int | None = None) -> None:
        """Force every committed transaction to disk (a WAL checkpoint syncs the log
        first); with `synced_through`, record that the blobs of the generations up to it
        are durable now."""
        if synced_through is not None and synced_through <= self._synced_through:
            synced_through = None
        await self._run(transactions.make_durable, synced_through)
        if synced_through is not None:
            self._synced_through = synced_through

    async def unsynced_objects(self) -> list[tuple[int, str, str | None, int, bytes | None]]:
        """(inode, name, object_id, size, checksums) of objects whose blob may not have
        reached the disk: after a crash, what must be verified."""
        return await self._run(
            transactions.select,
            f"SELECT inode, name, {self.object_id_sql}, size, checksums"
            " FROM entries LEFT JOIN blob_checksums USING (object_id)"
            " WHERE unsynced != 0 AND unsynced > ?",
            (self._synced_through,),
        )

    async def settle_unsynced(self, lost: list[int]) -> None:
        """After a crash, once the blobs that survived are durable: remove the objects
        whose blob did not survive, and record every generation as durable. Only for a
        store nobody has open."""
        statements = [("DELETE FROM entries WHERE inode = ?", (inode,)) for inode in lost]
        statements.append(("UPDATE group_sync SET synced_through = ?", (self._generation,)))
        await self._run(transactions.write, statements)
        self._synced_through = self._generation
        self._generation += 1
        for inode in lost:
            self._forget(inode)

    async def close(self) -> None:
        await self._db.close()


@dataclasses.dataclass(frozen=True)
class Sharing:
    """How a process serves a store that several hosts serve: what it caches is trusted
    for `fresh_seconds`; its session lapses `session_seconds` after its last heartbeat."""

    fresh_seconds: float = 1.0
    session_seconds: float = 60.0


async def open_metadata_store(
    where: Path | str, cache_entries: int = DEFAULT_CAPACITY, sharing: Sharing | None = None
) -> MetadataStore:
    """The metadata store in the SQLite file at `where` (made when absent), or in the
    PostgreSQL database that the URL `where` names, served by this process alone or,
    with `sharing`, by several hosts; its schema is brought up to date first. Must run
    inside `trio_asyncio.open_loop()`."""
    if isinstance(where, Path):
        assert sharing is None, "a store in SQLite has one host"
        db: Database = await open_sqlite(where)
    else:
        from fsobj.metadata.postgres import open_postgres

        db = await open_postgres(
            where, sharing is not None, sharing.session_seconds if sharing else 0.0
        )
    store = MetadataStore(db, cache_entries)
    if sharing is not None:
        store.share(sharing.fresh_seconds)
    try:
        (
            store._next_inode,
            store._inode_end,
            store._synced_through,
            recorded,
        ) = await store._run(transactions.setup)
        # Generations only grow, so a mark left by an earlier mount is never taken for one
        # this mount's syncs cover.
        store._generation = max(store._synced_through, recorded) + 1
    except BaseException:
        await db.close()
        raise
    return store
