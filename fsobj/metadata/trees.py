"""Many entries at once: a directory's entries a page at a time (in inode order for the
mount, in S3's key order for listings over S3), and what changes a whole tree or every
name of a file in one transaction: renames (of a directory, its whole tree), hard links,
clones, a snapshot's removal. Built on
`NamespaceStore` (namespace.py), whose cache and transactions it shares."""

from __future__ import annotations

from typing import Any

from fsobj.metadata import transactions, tree_transactions
from fsobj.metadata.archive import Archive, archived
from fsobj.metadata.backend import Conflict, MissingParent
from fsobj.metadata.entries import Entry
from fsobj.metadata.namespace import NamespaceStore
from fsobj.refusals import Reason, Refused

_LISTED = (
    "SELECT inode, coalesce(parent, 0), name, kind, mode, uid, gid, atime_ns, mtime_ns,"
    " ctime_ns, NULL, size, etag, content_type, target, NULL, unsynced, subdirs, blocks, rdev,"
    " file_inode, links, version_id FROM entries"
)


class TreeStore(NamespaceStore):
    """Listings and the operations on whole trees and on files of several names."""

    async def move(
        self,
        entry: Entry,
        new_parent: int,
        new_name: str,
        now_ns: int,
        replaced: Entry | None,
        archives: tuple[Archive | None, Archive | None] | None = None,
    ) -> None:
        """Rename atomically, replacing `replaced` (already at the destination) if given.
        To replace, the entry's blob must be durable already (a crash must not trade the
        replaced object for one whose content was lost): its unsynced mark goes. In a
        versioned bucket, `archives` (of the old key and the new) says how the move is kept
        as S3 sees it: the old key deleted (a delete marker), what the new key held
        archived, and the new key's current version a new one."""
        self._refuse_if_removing(new_parent)
        statements: list[tuple[str, tuple]] = []
        changes: dict[str, Any] = {"parent": new_parent, "name": new_name, "ctime_ns": now_ns}
        if archives is not None:
            old_key, new_key = archives
            changes["version_id"] = new_key.version_id if new_key else None
            statements += archived(old_key, now_ns, True) if old_key else []
            if replaced is not None and new_key is not None:
                statements += archived(new_key, now_ns, False)
        if replaced is not None:
            statements += self._unname(replaced, now_ns)
            changes["unsynced"] = 0
        assignments = ", ".join(f"{column} = ?" for column in changes)
        statements.append(
            (
                f"UPDATE entries SET {assignments} WHERE inode = ?",
                (*changes.values(), entry.inode),
            )
        )
        statements += [
            transactions.place_moved(entry.inode, new_parent),
            transactions.touch(entry.parent, now_ns),
            transactions.touch(new_parent, now_ns),
        ]
        counts = {entry.parent: 0, new_parent: 0}
        if entry.is_dir:
            counts[entry.parent] -= 1
            counts[new_parent] += 1
        if replaced is not None and replaced.is_dir:
            counts[new_parent] -= 1
        statements += transactions.count_subdirs(counts)
        if replaced is not None and replaced.is_dir:
            await self._write_if_empty(replaced.inode, statements, [entry], long=entry.is_dir)
        else:
            try:
                # A directory moved into another bucket takes everything below it along.
                await self._write(statements, [entry, replaced], long=entry.is_dir)
            except MissingParent:
                raise Refused(Reason.NO_SUCH_KEY, None, "the directory was removed") from None
        if entry.is_dir:
            self.directory_moves += 1
        self._counted_subdirs(counts)
        if replaced is not None:
            self._forget(replaced.inode)
            self._one_name_less(replaced, now_ns)
        self._touched(entry.parent, now_ns)
        self._touched(new_parent, now_ns)
        old_parent, old_name = entry.parent, entry.name
        self._changed(entry, changes, whole_file=False)
        self._cache.renamed(entry, old_parent, old_name)

    async def children(self, parent: int, after_inode: int, limit: int) -> list[Entry]:
        """One page of a directory, in inode order, starting after `after_inode`: the
        cached entries, and for the others what their rows said, for their attributes
        (without blob id and checksums, which cost a listing half its time to read).
        Those are not cached: a listing of a million entries must not push out what is
        in use (and `current` gives an entry as it is now, should it change after the
        page was read). On a shared store, what is read is news: whole rows, which renew
        the cached entries and, while the cache has room, join it (`ls -l` then looks
        up what the listing read)."""
        await self._write_all()
        mark = self._cache.changes
        rows = await self._run(
            transactions.select,
            f"{self._select if self.shared else _LISTED} WHERE parent = ? AND inode > ?"
            " ORDER BY inode LIMIT ?",
            (parent, after_inode, limit),
        )
        if self.shared:
            return [self._read_in_listing(row, mark) for row in rows]
        return [self._listed(row) for row in rows]

    def _read_in_listing(self, row: tuple, mark: int) -> Entry:
        if self._cache.peek(row[0]) is None and not self._cache.has_room():
            return Entry(*row)
        return self._remember(Entry(*row), mark)

    async def children_in_key_order(
        self, parent: int, after: str, inclusive: bool, limit: int, marked: str
    ) -> list[tuple[Entry, bool]]:
        """One page of a directory in S3's key order (Dialect.key_order), from `after` on,
        for listings over S3, each entry with whether it holds the user metadata item
        `marked`; like `children`, the entries are not cached."""
        await self._write_all()
        columns = _LISTED.removesuffix(" FROM entries")
        rows = await self._run(
            transactions.select,
            f"{columns}, EXISTS (SELECT 1 FROM user_metadata m"
            " WHERE m.inode = entries.inode AND m.name = ?) FROM entries"
            f" WHERE parent = ? AND {self._key_order} {'>=' if inclusive else '>'} ?"
            f" ORDER BY {self._key_order} LIMIT ?",
            (marked, parent, after, limit),
        )
        return [(self._listed(row[:-1]), bool(row[-1])) for row in rows]

    def _listed(self, row: tuple) -> Entry:
        """An entry of a listing: the cached one if any (every change here updates it),
        unless another host may have changed it since (then the row, which is newer)."""
        cached = self._cache.peek(row[0])
        return cached if cached is not None and self._fresh(cached) else Entry(*row)

    def current(self, entry: Entry) -> Entry:
        """The entry as it is now: the cached one, which every change updates, if any."""
        return self._cache.peek(entry.inode) or entry

    async def has_children(self, inode: int) -> bool:
        await self._write_all()
        rows = await self._run(
            transactions.select, "SELECT 1 FROM entries WHERE parent = ? LIMIT 1", (inode,)
        )
        return bool(rows)

    async def subtree_key_bytes(self, inode: int) -> int:
        """The longest key suffix below `inode`, in UTF-8 bytes (0 for a leaf)."""
        await self._write_all()
        rows = await self._run(
            transactions.select,
            "WITH RECURSIVE sub(inode, len) AS ("
            " SELECT CAST(? AS BIGINT), CAST(0 AS BIGINT) UNION ALL"
            f" SELECT e.inode, sub.len + {self.dialect.octet_length('e.name')} + 1"
            " FROM entries e JOIN sub ON e.parent = sub.inode)"
            " SELECT max(len) FROM sub",
            (inode,),
        )
        return rows[0][0] or 0

    async def link(self, entry: Entry, new_parent: int, new_name: str, now_ns: int) -> Entry:
        """A new name for the file of `entry` (a hard link), in one transaction; returns
        the new name's entry. The file keeps the inode the kernel knows it by."""
        self._refuse_if_removing(new_parent)
        new = Entry(**{name: getattr(entry, name) for name in entry.__slots__})
        new.inode = await self._new_inode()
        new.parent, new.name = new_parent, new_name
        try:
            file_inode, links = await self._writing(
                [entry], tree_transactions.link, self._rows_of(entry),
                (new.inode, new_parent, new_name), now_ns,
            )  # fmt: skip
        except MissingParent:
            raise Refused(Reason.NO_SUCH_KEY, None, "the directory was removed") from None
        except Conflict:
            raise Refused(Reason.EXISTS, None, f"{new_name} exists already") from None
        metadata = self._cache.user_metadata(entry.inode)
        new.file_inode, new.links, new.ctime_ns = file_inode, links, now_ns
        self._changed(entry, {"file_inode": file_inode, "links": links, "ctime_ns": now_ns})
        self._cache.file_named(entry)
        self._touched(new_parent, now_ns)
        added = self._cache.add(new)
        if metadata is not None:
            self._cache.set_user_metadata(new.inode, dict(metadata))
        return added

    async def clone(
        self,
        top: Entry,
        place: tuple[int, str],
        now_ns: int,
        bucket_owner: int | None,
        marks: dict[str, bytes | None],
    ) -> tuple[Entry, int]:
        """Copy the tree below `top` by metadata alone, in one transaction
        (`tree_transactions.clone`): the copy shares every blob and is independent from then
        on. Returns the copy's top entry and how many entries were copied."""
        new_parent, new_name = place
        self._refuse_if_removing(new_parent)
        await self._write_all()  # the rows the copy reads
        count = await self._run(tree_transactions.subtree_size, top.inode)
        spare = count // 100 + 16  # for names made below it meanwhile
        inodes = [await self._new_inode() for _ in range(count + spare)]
        try:
            copied = await self._run(
                tree_transactions.clone, [], top.inode, inodes, place, now_ns, bucket_owner, marks,
            )  # fmt: skip
        except MissingParent:
            raise Refused(Reason.NO_SUCH_KEY, None, "the directory was removed") from None
        except Conflict:
            raise Refused(Reason.EXISTS, None, f"{new_name} exists already") from None
        self._counted_subdirs({new_parent: 1} if top.is_dir else {})
        self._touched(new_parent, now_ns)
        made = await self.get(inodes[0])
        assert made is not None  # just written, by this process
        return made, copied

    async def delete_tree(self, top: Entry, now_ns: int) -> list[str]:
        """Remove the directory `top` and everything below it in one transaction (a
        snapshot that goes); returns the blobs they named."""
        await self._write_all()
        inodes, blobs = await self._run(tree_transactions.delete_tree, top.inode, now_ns)
        for inode in inodes:
            self._forget(inode)
        self._counted_subdirs({top.parent: -1})
        self._touched(top.parent, now_ns)
        return blobs
