"""The history of keys in versioned buckets (S3 versioning): the versions that changes
replaced, and delete markers, by bucket and key. An object's current version is its entry
(with its `version_id`); what a commit, removal or rename replaces in a versioned bucket
is archived here in the same transaction, so a change and the history it leaves are one.
Built on `TreeStore`, whose transactions it shares."""

from __future__ import annotations

from fsobj.metadata import transactions
from fsobj.metadata.archive import PastVersion
from fsobj.metadata.trees import TreeStore


class VersionStore(TreeStore):
    """The archived versions and delete markers of versioned buckets."""

    def _past(self, row: tuple) -> PastVersion:
        return PastVersion(*row)

    def _past_columns(self) -> str:
        return (
            f"key, version_id, until_ns, {self.dialect.blob_name('v.object_id')}, size, etag,"
            " content_type, mtime_ns, uid, blocks, c.checksums FROM versions v"
            " LEFT JOIN blob_checksums c ON c.object_id = v.object_id"
        )

    async def past_versions(
        self, bucket: int, prefix: str, after_key: str, limit: int, key: str | None = None
    ) -> list[PastVersion]:
        """Archived versions and delete markers of `bucket`: of keys that start with
        `prefix` and come after `after_key` (or of `key` alone), by key in S3's order,
        the newest of each key first."""
        params: tuple[str, ...]
        if key is not None:
            where, params = "v.key = ?", (key,)
        else:
            # Keys past the prefix's range stop the scan: '\U0010ffff' sorts after any
            # character a key may hold.
            where = "v.key >= ? AND v.key > ? AND v.key < ?"
            params = (prefix, after_key, prefix + "\U0010ffff")
        rows = await self._run(
            transactions.select,
            f"SELECT {self._past_columns()} WHERE v.bucket = ? AND {where}"
            " ORDER BY v.key, v.until_ns DESC LIMIT ?",
            (bucket, *params, limit),
        )
        return [self._past(row) for row in rows]

    async def past_version(self, bucket: int, key: str, version_id: str) -> PastVersion | None:
        rows = await self._run(
            transactions.select,
            f"SELECT {self._past_columns()} WHERE v.bucket = ? AND v.key = ? AND v.version_id = ?",
            (bucket, key, version_id),
        )
        return self._past(rows[0]) if rows else None

    async def version_metadata(self, bucket: int, key: str, version_id: str) -> dict[str, bytes]:
        rows = await self._run(
            transactions.select,
            "SELECT name, value FROM version_metadata WHERE bucket = ? AND key = ?"
            " AND version_id = ?",
            (bucket, key, version_id),
        )
        return {name: bytes(value) for name, value in rows}

    async def remove_version(self, bucket: int, key: str, version_id: str) -> str | None:
        """Remove an archived version or delete marker for good; returns its blob (which
        may be named elsewhere still), or None."""
        found = await self.past_version(bucket, key, version_id)
        if found is None:
            return None
        await self._run(
            transactions.write,
            [
                (
                    "DELETE FROM versions WHERE bucket = ? AND key = ? AND version_id = ?",
                    (bucket, key, version_id),
                )
            ],
        )
        return found.object_id

    async def has_versions(self, bucket: int) -> bool:
        rows = await self._run(
            transactions.select, "SELECT 1 FROM versions WHERE bucket = ? LIMIT 1", (bucket,)
        )
        return bool(rows)

    async def every_past_version(
        self, after: tuple[int, str, str], limit: int
    ) -> list[tuple[int, PastVersion]]:
        """A page of every bucket's past versions (delete markers too) with their bucket,
        in (bucket, key, version id) order after `after`, for checks."""
        bucket, key, version_id = after
        rows = await self._run(
            transactions.select,
            f"SELECT v.bucket, {self._past_columns()}"
            " WHERE (v.bucket, v.key, v.version_id) > (?, ?, ?)"
            " ORDER BY v.bucket, v.key, v.version_id LIMIT ?",
            (bucket, key, version_id, limit),
        )
        return [(row[0], self._past(row[1:])) for row in rows]

    async def set_version_item(
        self, bucket: int, key: str, version_id: str, name: str, value: bytes | None
    ) -> None:
        """Set (or remove, None) one item of a past version's user metadata: its
        retention or legal hold (object lock), the one thing of a version that changes."""
        at = (bucket, key, version_id)
        statements: list[tuple[str, tuple]] = [
            (
                "DELETE FROM version_metadata WHERE bucket = ? AND key = ? AND version_id = ?"
                " AND name = ?",
                (*at, name),
            )
        ]
        if value is not None:
            statements.append(
                (
                    "INSERT INTO version_metadata (bucket, key, version_id, name, value)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (*at, name, value),
                )
            )
        await self._run(transactions.write, statements)

    async def add_marker(
        self, bucket: int, key: str, version_id: str | None, uid: int, now_ns: int
    ) -> None:
        """A delete marker for a key that has no current version (None: the null one,
        which takes the place of an archived null version)."""
        statements: list[tuple[str, tuple]] = []
        if version_id is None:
            statements.append(
                (
                    "DELETE FROM versions WHERE bucket = ? AND key = ? AND version_id = 'null'",
                    (bucket, key),
                )
            )
        statements.append(
            (
                "INSERT INTO versions (bucket, key, version_id, until_ns, object_id, size,"
                " mtime_ns, uid) VALUES (?, ?, ?, ?, NULL, 0, ?, ?)",
                (bucket, key, version_id or "null", now_ns, now_ns, uid),
            )
        )
        await self._run(transactions.write, statements)
