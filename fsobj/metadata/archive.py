"""How a change in a versioned bucket (S3 versioning) keeps what it replaces: the
statements that archive a name's current version, in the change's own transaction, so
that a change and the history it leaves are one."""

from __future__ import annotations

import dataclasses

NULL = "null"  # S3's id of the version a bucket without versioning (or Suspended) makes


@dataclasses.dataclass(frozen=True, slots=True)
class Archive:
    """How a change keeps what the name `inode` holds, at a key of a versioned bucket."""

    inode: int
    bucket: int
    key: str
    enabled: bool  # versioning Enabled; False: Suspended
    # The new current version's id (a commit, or a rename's new key) or the delete
    # marker's (a removal, or a rename's old key); None: "null", as Suspended makes.
    version_id: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class PastVersion:
    """A version that is not current, or a delete marker (no blob)."""

    key: str
    version_id: str
    until_ns: int  # when it stopped being current; a delete marker's: when it was made
    object_id: str | None
    size: int
    etag: str | None
    content_type: str | None
    mtime_ns: int
    uid: int
    blocks: int | None
    checksums: bytes | None

    @property
    def is_marker(self) -> bool:
        return self.object_id is None


def archived(archive: Archive, now_ns: int, marker: bool) -> list[tuple[str, tuple]]:
    """The statements, to run before the name's entry changes or goes, that archive its
    current version at `archive.key` (unless Suspended and it is the null version, which
    the change replaces for good), and with `marker` add a delete marker. The null
    version is one per key: a new one replaces the archived one."""
    inode, at = archive.inode, (archive.bucket, archive.key)
    statements: list[tuple[str, tuple]] = []
    current = "inode = ? AND object_id IS NOT NULL"
    if archive.enabled:
        # A current null version takes the place of an archived one (only a store that
        # broke the rule has both).
        statements.append(
            (
                "DELETE FROM versions WHERE bucket = ? AND key = ? AND version_id = 'null'"
                " AND EXISTS (SELECT 1 FROM entries WHERE inode = ? AND version_id IS NULL"
                " AND object_id IS NOT NULL)",
                (*at, inode),
            )
        )
    else:
        # Suspended: what comes now is the null version; an archived one goes, and so
        # does a current one (replaced, not archived).
        statements.append(
            ("DELETE FROM versions WHERE bucket = ? AND key = ? AND version_id = 'null'", at)
        )
        current += " AND version_id IS NOT NULL"
    statements += [
        (
            "INSERT INTO versions (bucket, key, version_id, until_ns, object_id, size, etag,"
            " content_type, mtime_ns, uid, blocks) SELECT ?, ?, coalesce(version_id, 'null'),"
            f" ?, object_id, size, etag, content_type, mtime_ns, uid, blocks FROM entries"
            f" WHERE {current}",
            (*at, now_ns, inode),
        ),
        (
            "INSERT INTO version_metadata (bucket, key, version_id, name, value)"
            " SELECT ?, ?, coalesce(e.version_id, 'null'), m.name, m.value"
            " FROM user_metadata m JOIN entries e ON e.inode = m.inode"
            f" WHERE m.{current.replace(' AND ', ' AND e.')}",
            (*at, inode),
        ),
    ]
    if marker:
        statements.append(
            (
                "INSERT INTO versions (bucket, key, version_id, until_ns, object_id, size,"
                " mtime_ns, uid) SELECT ?, ?, ?, ?, NULL, 0, ?, uid FROM entries WHERE inode = ?",
                (*at, archive.version_id or NULL, now_ns + 1, now_ns, inode),
            )
        )
    return statements
