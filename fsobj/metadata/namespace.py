"""The namespace in the metadata store: entries (buckets, directories, objects, symlinks)
by inode and by name, read through a bounded cache that this store owns and writes
through, and changed in transactions. `MetadataStore` (store.py) adds buckets' ACLs,
user metadata, access keys and what concerns the store as a whole.

The database (SQLite or PostgreSQL: backend.py) is reached through a `Database`,
which runs one function at a time in the database's thread. A round trip costs about as
much as a whole FUSE request, so:

* entries are served from an in-memory cache that this store owns and writes through (one
  process owns a store, under a lock, so the cache is authoritative);
* every public method makes at most one round trip: multi-statement work runs as one
  function in the database's thread, inside one transaction;
* a new object's row is not written when it is created but with its first commit (or
  whatever changes it first): until then it lives in the cache alone, so creating an
  object costs no round trip, and a writer that dies before closing leaves no row.
  Inode numbers are therefore handed out here, not by the database.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import trio

from fsobj import measures
from fsobj.metadata import transactions
from fsobj.metadata.archive import Archive, archived
from fsobj.metadata.backend import Conflict, Database, MissingParent
from fsobj.metadata.cache import DEFAULT_CAPACITY, NamespaceCache
from fsobj.metadata.entries import Commit, Entry
from fsobj.metadata.transactions import Before
from fsobj.refusals import Reason, Refused

T = TypeVar("T")

# On a shared store, a lookup in a directory of at most this many entries reads them all.
SMALL_DIRECTORY = 2048
# A transaction writing more rows than this, or more commits, is not short
# (Database.run_short).
SHORT_INSERTS = 64
SHORT_BATCH = 8


class NamespaceStore:
    """The entries of the namespace, in the metadata database (see the module)."""

    def __init__(self, db: Database, cache_entries: int = DEFAULT_CAPACITY):
        self._db = db
        self.dialect = db.dialect
        self.object_id_sql = db.dialect.blob_name("object_id")
        self._select = (
            "SELECT inode, coalesce(parent, 0), name, kind, mode, uid, gid, atime_ns,"
            " mtime_ns, ctime_ns,"
            f" {self.object_id_sql}, size, etag, content_type, target, checksums, unsynced,"
            " subdirs, blocks, rdev, file_inode, links, version_id"
            " FROM entries LEFT JOIN blob_checksums USING (object_id)"
        )
        self._key_order = db.dialect.key_order()
        self._cache = NamespaceCache(cache_entries)
        # Entries whose row is not in the database yet (see the module's docstring).
        self._unwritten = self._cache.unwritten
        # How many times a directory moved: what was derived from the tree's shape (a
        # directory's bucket and key length) is current while this stays the same.
        self.directory_moves = 0
        # The range of inode numbers this process hands out [next, end), refilled from
        # the database (set when the store opens).
        self._next_inode = self._inode_end = 0
        self._inode_lock = trio.Lock()
        # Several hosts serve the store (`share`): what is cached is a copy that may be up
        # to `fresh_seconds` old, and opens read their entry anew (close-to-open).
        self.shared = False
        self.fresh_seconds = 0.0
        self._removing: set[int] = set()  # directories being removed (delete_directory)
        self._large: set[int] = set()  # directories too large to read whole (shared store)
        # New objects, not written yet, that take a name from a file that has other names
        # (an S3 PUT onto one of its hard links): the entry of the name they replace.
        self._replacing: dict[int, Entry] = {}

    # -- plumbing ---------------------------------------------------------------------

    def share(self, fresh_seconds: float) -> None:
        """Several hosts serve this store: cached entries are trusted for `fresh_seconds`
        and then read again, a name not cached is looked up, and the database alone says
        which inode numbers are free."""
        self.shared = self._cache.shared = True
        self.fresh_seconds = fresh_seconds

    async def _new_inode(self) -> int:
        """An inode number never used, by this process or any other."""
        while self._next_inode >= self._inode_end:
            async with self._inode_lock:
                if self._next_inode >= self._inode_end:
                    self._next_inode, self._inode_end = await self._run(transactions.inodes)
        inode = self._next_inode
        self._next_inode += 1
        return inode

    async def _run(self, fn: Callable[..., T], *args: Any, short: bool = False) -> T:
        """Run `fn(connection, *args)` in the database thread: one round trip; `short`:
        a short transaction that does not sync (Database.run_short)."""
        tally, start = measures.metadata_call(fn.__name__), time.monotonic()
        try:
            return await (self._db.run_short if short else self._db.run)(fn, *args)
        except Exception as error:
            measures.METADATA_ERRORS.labels(fn.__name__, type(error).__name__).inc()
            raise
        finally:
            measures.timed(tally, time.monotonic() - start)

    def _remember(self, entry: Entry, mark: int) -> Entry:
        """Cache a row read when the count of local changes was `mark`. On one host the
        cache is authoritative: an older row read meanwhile never replaces it. On a
        shared store the row is news from other hosts, unless this process changed the
        entry since the read began (then the cached entry is newer)."""
        cached = self._cache.get(entry.inode)
        if cached is None:
            return self._cache.add(entry)
        stale = self.shared and not self._cache.changed_since(entry.inode, mark)
        if stale and entry.inode not in self._unwritten:
            if cached.is_dir and (cached.parent, cached.name) != (entry.parent, entry.name):
                self.directory_moves += 1  # moved by another host
            self._cache.reread(cached, entry)
        return cached

    def trusted_for(self, entry: Entry) -> float:
        """How much longer what is cached of `entry` may be cached by the kernel on a
        shared store: what is left of its timeout since it was read, and never more than
        the timeout (an entry not written yet is this host's alone only until its row is:
        the kernel keeps it past that)."""
        if not self.shared:
            return math.inf
        return min(self._entry_left(entry), self.fresh_seconds)

    def _entry_left(self, entry: Entry) -> float:
        if not self.shared or entry.inode in self._unwritten:
            return math.inf
        return max(0.0, self.fresh_seconds - self._cache.age(entry.inode))

    def _fresh(self, entry: Entry) -> bool:
        """Whether the cached entry may be served without asking the database."""
        return self._entry_left(entry) > 0

    def absence_trusted_for(self, directory: int) -> float:
        """How long a name found missing in `directory` (just now) may be taken as
        missing: on a shared store, what is left of the timeout of what said so (the
        whole directory read earlier, or else the query just made)."""
        if not self.shared:
            return math.inf
        age = self._cache.completeness_age(directory)
        return self.fresh_seconds - age if age < self.fresh_seconds else self.fresh_seconds

    def _changed(self, entry: Entry, changes: dict[str, Any], whole_file: bool = True) -> None:
        """Apply committed changes to `entry`, and to the cached entry of its inode if that
        is another object (read back after `entry` was evicted); `whole_file`: to those
        of the file's other names (hard links) too."""
        cached = self._cache.get(entry.inode)
        self._cache.changed(entry.inode)
        targets = [entry] if cached is None or cached is entry else [entry, cached]
        for other in self._cache.other_names(entry.inode, entry.file_inode) if whole_file else []:
            targets.append(other)
            self._cache.changed(other.inode)
        for target in targets:
            for name, value in changes.items():
                setattr(target, name, value)

    def hold(self, inode: int) -> None:
        """Keep the inode's entry in memory until `let_go` (an open handle changes it)."""
        self._cache.hold(inode)

    def let_go(self, inode: int) -> None:
        self._cache.let_go(inode)

    def evict(self, inode: int) -> None:
        """The kernel forgot the inode: its entry is the first to leave the cache."""
        self._cache.evict(inode)

    def cached_entries(self) -> int:
        return len(self._cache)

    async def _write(
        self,
        statements: list[tuple[str, tuple]],
        new: Iterable[Entry | None] = (),
        long: bool = False,
    ) -> None:
        """Run `statements` in one transaction, after the inserts of those `new` entries
        whose rows are not written yet; `long`: they may change many rows."""
        await self._writing(new, transactions.write_after, statements, long=long)

    async def _writing(
        self,
        new: Iterable[Entry | None],
        fn: Callable[..., T],
        *args: Any,
        unless_taken: frozenset[int] = frozenset(),
        synced: bool = False,
        committed: dict[int, Commit] | None = None,
        long: bool = False,
    ) -> T:
        """Run `fn(conn, inserts, *args)`, where `inserts` are the statements that write
        those `new` entries whose rows are not written yet; `fn` runs them in its
        transaction, a short one (Database.run_short) unless it syncs or changes many
        rows (`long`, or many inserts). Those in `unless_taken` are written only if
        their name is free (conditional creates). `synced`: `fn` syncs what it wrote.
        `committed`: by inode, first commits written with their rows (insert_entry)."""
        first = self._unwritten_rows(new)
        inserts = [
            statement
            for entry in first
            for statement in transactions.insert_entry(
                entry,
                replace=self.shared or entry.inode in self._replacing,
                metadata=self._cache.user_metadata(entry.inode),
                unless_taken=entry.inode in unless_taken,
                committed=committed.get(entry.inode) if committed else None,
            )
        ]
        try:
            short = not (synced or long) and len(inserts) <= SHORT_INSERTS
            result = await self._run(fn, inserts, *args, short=short)
        except BaseException as error:
            for entry in first:  # not written after all
                self._unwritten[entry.inode] = entry
            if isinstance(error, Conflict) and await self._adopt_directories(first):
                return await self._writing(
                    new, fn, *args, unless_taken=unless_taken, synced=synced,
                    committed=committed, long=long,
                )  # fmt: skip
            raise
        for entry in first:
            replaced = self._replacing.pop(entry.inode, None)
            if replaced is not None:  # its row went in that transaction
                self._forget(replaced.inode)
                self._one_name_less(replaced, entry.ctime_ns)
        return result

    async def _adopt_directories(self, rows: list[Entry]) -> bool:
        """On a shared store, another host may have made a directory that a PUT made
        here too, unwritten, for its key (the two rows conflict): the entries below ours
        move into theirs, and ours goes, so that the PUT is still one transaction. Whether
        any did (`rows` in `_unwritten_rows`' order, ancestors first)."""
        adopted = False
        for entry in rows if self.shared else ():
            if not entry.is_dir or self._unwritten.get(entry.inode) is not entry:
                continue
            found = await self._run(
                transactions.select,
                f"{self._select} WHERE parent = ? AND name = ?",
                (entry.parent, entry.name),
            )
            if not found:
                continue
            theirs = Entry(*found[0])
            if not theirs.is_dir:
                raise Refused(Reason.NOT_DIRECTORY, None, f"{entry.name!r} is an object")
            for below in list(self._unwritten.values()):
                if below.parent == entry.inode:
                    old_name = below.name
                    below.parent = theirs.inode
                    self._cache.renamed(below, entry.inode, old_name)
            self._cache.drop(entry.inode)
            self._counted_subdirs({entry.parent: -1})  # counted when it was made here
            self._remember(theirs, self._cache.changes)
            adopted = True
        return adopted

    def _unwritten_rows(self, new: Iterable[Entry | None]) -> list[Entry]:
        """Those of `new` whose rows are not written yet, each after the unwritten
        directories above it (a PUT's prefix directories go in with its object), taken
        out of `_unwritten`."""
        rows: list[Entry] = []
        for entry in new:
            chain: list[Entry] = []
            while entry is not None and self._unwritten.get(entry.inode) is entry:
                chain.append(self._unwritten.pop(entry.inode))
                entry = self._unwritten.get(entry.parent)
            rows += reversed(chain)
        return rows

    async def _write_all(self) -> None:
        """Write every unwritten row: queries that scan the namespace see them then."""
        if self._unwritten:
            await self._write([], list(self._unwritten.values()))

    def _forget(self, inode: int) -> None:
        """An entry is gone: what is remembered of it goes too."""
        self._cache.drop(inode)

    # -- entries ----------------------------------------------------------------------

    async def get(self, inode: int, current: bool = False) -> Entry | None:
        """The entry of `inode`, or None. `current`: on a shared store, as the database
        has it now (an open reads its object's current version: close-to-open)."""
        entry = self._cache.get(inode)
        if entry is None:  # a file of several names, which the kernel knows by one inode
            entry = next(iter(self._cache.names_of_file(inode)), None)
        if entry is not None:
            left = self._entry_left(entry)  # infinite: this process's own, or one host's
            if left == math.inf or (left > 0 and not current):
                measures.NAMESPACE_HITS.inc()
                return entry
        measures.NAMESPACE_MISSES.inc()
        mark = self._cache.changes
        rows = await self._run(
            transactions.select,
            f"{self._select} WHERE inode = ? OR file_inode = ? ORDER BY inode = ? DESC LIMIT 1",
            (inode, inode, inode),
        )
        if rows:
            return self._remember(Entry(*rows[0]), mark)
        if entry is not None and not self._cache.changed_since(entry.inode, mark):
            self._forget(entry.inode)  # removed by another host
        return None

    async def lookup(self, parent: int, name: str) -> Entry | None:
        entry = self._cache.named(parent, name)
        if entry is not None and self._fresh(entry):
            measures.NAMESPACE_HITS.inc()
            return entry
        measures.NAMESPACE_MISSES.inc()
        if self.shared:
            if entry is None and self._cache.completeness_age(parent) < self.fresh_seconds:
                return None
            if await self._read_directory(parent):
                entry = self._cache.named(parent, name)
                if entry is None or self._fresh(entry):
                    return entry
                self._cache.unname(parent, name)  # not among the children just read
                return None
        if entry is None and not self.shared and self._cache.knows_all_of(parent):
            return None
        mark = self._cache.changes
        rows = await self._run(
            transactions.select,
            f"{self._select} WHERE parent = ? AND name = ?",
            (parent, name),
        )
        if rows:
            return self._remember(Entry(*rows[0]), mark)
        if entry is not None and not self._cache.changed_since(entry.inode, mark):
            self._cache.unname(parent, name)  # renamed or removed by another host
        return None

    async def _read_directory(self, parent: int) -> bool:
        """On a shared store, read all the entries of a small directory at once (one query
        instead of one per name: `ls -l`, `stat` of each file); whether the cache holds
        them all now (not for a large directory)."""
        if parent in self._large:
            return False
        mark = self._cache.changes
        rows = await self._run(
            transactions.select,
            f"{self._select} WHERE parent = ? LIMIT ?",
            (parent, SMALL_DIRECTORY + 1),
        )
        if len(rows) > SMALL_DIRECTORY:
            if len(self._large) > 10_000:
                self._large.clear()  # forgetting costs one query more
            self._large.add(parent)
            return False
        for row in rows:
            self._remember(Entry(*row), mark)
        # Complete unless making room pushed some of them out again (a full cache).
        if any(self._cache.peek(row[0]) is None for row in rows):
            return False
        self._cache.read_all_of(parent)
        return True

    async def insert(
        self,
        entry: Entry,
        bucket_owner: int | None = None,
        deferred: bool = False,
        replacing: Entry | None = None,
    ) -> Entry:
        """Store a new entry, assigning its inode; a bucket also gets its bucket row. The
        parent directory's mtime changes in the same transaction. A `deferred` entry (a new
        object, or a directory that a PUT implies) is written with whatever first changes
        it or an entry below it; a new object `replacing` the entry of its name (a hard
        link: S3 replaces that name alone) takes its name then, in that transaction."""
        inode = await self._new_inode()
        if replacing is not None:
            assert deferred and (replacing.parent, replacing.name) == (entry.parent, entry.name)
            self._replacing[inode] = replacing
        elif self._cache.has_name(entry.parent, entry.name):
            raise Refused(Reason.EXISTS, None, f"{entry.name} exists already")
        self._refuse_if_removing(entry.parent)
        entry.inode = inode
        counts = {entry.parent: 1} if entry.is_dir else {}
        if deferred:
            self._unwritten[entry.inode] = entry
        else:
            statements = transactions.insert_entry(entry)
            if bucket_owner is not None:
                statements.append(
                    (
                        "INSERT INTO buckets (inode, owner_uid, created_ns) VALUES (?, ?, ?)",
                        (entry.inode, bucket_owner, entry.ctime_ns),
                    )
                )
            try:
                await self._run(transactions.write, statements, short=True)
            except MissingParent:
                raise Refused(Reason.NO_SUCH_KEY, None, "the directory was removed") from None
            except Conflict:
                raise Refused(Reason.EXISTS, None, f"{entry.name} exists already") from None
        self._counted_subdirs(counts)  # the deferred row counts itself when written
        self._touched(entry.parent, entry.ctime_ns)
        # On a shared store other hosts make names in it too: never complete here.
        added = self._cache.add(entry, complete=entry.is_dir and not self.shared)
        self._cache.set_user_metadata(entry.inode, {})  # a new name has none: no query
        return added

    async def insert_objects(self, entries: list[Entry]) -> None:
        """Store many new objects, with their blobs committed already, in one transaction:
        for loading a store in bulk (imports, benchmarks); they are not cached."""
        statements = []
        latest: dict[int, int] = {}  # each parent's times change once
        for entry in entries:
            entry.inode = await self._new_inode()
            statements += transactions.insert_entry(entry, touch_parent=False)
            latest[entry.parent] = max(latest.get(entry.parent, 0), entry.ctime_ns)
        statements += [transactions.touch(parent, now_ns) for parent, now_ns in latest.items()]
        await self._run(transactions.write, statements)
        for parent, now_ns in latest.items():
            self._touched(parent, now_ns)
            self._cache.missing_children(parent)

    async def update(self, entry: Entry, **changes: Any) -> None:
        """Change some columns of an entry, in the database and then in the cache. A new
        object whose row is not written yet changes in the cache alone: its row carries
        the change when its first commit writes it (`tar x` sets owner and mode on the
        open file, before that commit)."""
        if entry.inode in self._unwritten:
            for name, value in changes.items():
                setattr(entry, name, value)
            return
        rows = self._rows_of(entry)
        await self._writing([entry], transactions.update_columns, rows, changes)
        self._changed(entry, changes)

    async def commit_many(
        self, batch: list[tuple[Entry, Commit]], synced: bool = False, before: Before | None = None
    ) -> list[str | Refused | OSError | None]:
        """Several commits in one transaction (group commit), applied in order; each may
        fail alone. `synced`: the transaction is durable when this returns (its log is
        synced at commit), after `before()` in the same round trip (a blob's sync). Returns,
        per commit, the blob its row named just before (as the database says: another
        host may have committed meanwhile), or why it failed (transactions.commit_many)."""
        assert before is None or synced  # else the transaction may run on the loop
        # A new object's first commit is written with its row, when nothing in it needs
        # the row looked up first (transactions.commit_many).
        once = collections.Counter(entry.inode for entry, _ in batch)
        first = {
            entry.inode: commit
            for entry, commit in batch
            if self._unwritten.get(entry.inode) is entry
            and once[entry.inode] == 1  # else the later ones replace the first's blob
            and not self.shared
            and entry.inode not in self._replacing
            and transactions.written_whole(commit, self._cache.user_metadata(entry.inode))
        }
        results = await self._writing(
            [entry for entry, _ in batch],
            transactions.commit_many,
            [(self._rows_of(entry), commit) for entry, commit in batch],
            synced,
            frozenset(i for i, (entry, _) in enumerate(batch) if entry.inode in first),
            before,
            unless_taken=frozenset(
                entry.inode for entry, commit in batch if commit.expects and commit.expects.absent
            ),
            synced=synced,
            committed=first,
            long=len(batch) > SHORT_BATCH,
        )
        for (entry, commit), result in zip(batch, results, strict=True):
            if not isinstance(result, Refused | OSError):
                self._changed(entry, commit.attributes())
                if commit.user_metadata is not None:  # all of it, replaced
                    self._user_metadata_changed(entry.inode, entry.file_inode)
                    self._cache.set_user_metadata(entry.inode, dict(commit.user_metadata))
                elif commit.notes:
                    self._noted(entry, dict(commit.notes))
        return results

    async def delete(self, entry: Entry, now_ns: int, archive: Archive | None = None) -> None:
        """Remove an entry (a directory: see `delete_directory`); in a versioned bucket
        its current version is archived and a delete marker made (`archive`)."""
        statements = [transactions.touch(entry.parent, now_ns)]
        if entry.inode not in self._unwritten:
            statements += archived(archive, now_ns, True) if archive else []
            statements += self._unname(entry, now_ns)
        counts = {entry.parent: -1} if entry.is_dir else {}
        statements += transactions.count_subdirs(counts)
        await self._run(transactions.write, statements, short=True)
        self._deleted(entry, counts, now_ns)
        self._one_name_less(entry, now_ns)
        kept = self._replacing.pop(entry.inode, None)
        if kept is not None:  # never written: the name is the file's again
            self._cache.renamed(kept, kept.parent, kept.name)
            self._cache.missing_children(kept.parent)  # should `kept` have left the cache

    async def delete_directory(self, entry: Entry, now_ns: int) -> bool:
        """Remove a directory if it holds nothing; returns whether it did. Whatever else
        changes the namespace meanwhile (the kernel serializes only its own requests, and
        S3's come too), nothing lands in it: new names in it are refused from the check
        on, and the check and the removal are one transaction."""
        if self._unwritten.get(entry.inode) is entry:  # no row yet: none below it either
            if any(below.parent == entry.inode for below in self._unwritten.values()):
                return False
            self._counted_subdirs({entry.parent: -1})  # counted when it was made
            self._forget(entry.inode)
            return True
        counts = {entry.parent: -1}
        statements = [
            ("DELETE FROM entries WHERE inode = ?", (entry.inode,)),
            transactions.touch(entry.parent, now_ns),
            *transactions.count_subdirs(counts),
        ]
        try:
            await self._write_if_empty(entry.inode, statements, [])
        except Refused as refusal:
            if refusal.reason is Reason.NOT_EMPTY:
                return False
            raise
        self._deleted(entry, counts, now_ns)
        return True

    async def _write_if_empty(
        self,
        directory: int,
        statements: list[tuple[str, tuple]],
        new: list[Entry | None],
        long: bool = False,
    ) -> None:
        """Run `statements` (after the rows of `new`) if `directory` holds nothing, else
        refuse (NOT_EMPTY); from the check on, no new name lands in it."""
        self._removing.add(directory)
        try:
            await self._write_all()  # names made in it before the check are in its rows
            await self._writing(new, transactions.write_if_empty, statements, directory, long=long)
        except MissingParent:  # another host made a name in it meanwhile
            raise Refused(Reason.NOT_EMPTY, None, "a name was made in it meanwhile") from None
        finally:
            self._removing.discard(directory)

    def _deleted(self, entry: Entry, counts: dict[int, int], now_ns: int) -> None:
        self._counted_subdirs(counts)
        self._forget(entry.inode)
        self._touched(entry.parent, now_ns)

    def _refuse_if_removing(self, directory: int) -> None:
        if directory in self._removing:
            raise Refused(Reason.VANISHED, None, "the directory is being removed")

    def _rows_of(self, entry: Entry) -> transactions.Rows:
        return transactions.rows_of(entry.inode, entry.file_inode, self.shared)

    def _unname(self, entry: Entry, now_ns: int) -> list[tuple[str, tuple]]:
        """The statements that remove an entry's row; a file's other names (hard links)
        count one name less (which on one host only a linked entry needs)."""
        gone = ("DELETE FROM entries WHERE inode = ?", (entry.inode,))
        if entry.file_inode is None and not self.shared:
            return [gone]
        return [transactions.one_name_less(("inode = ?", (entry.inode,)), now_ns), gone]

    def _one_name_less(self, gone: Entry, now_ns: int) -> None:
        """The cache's side of `transactions.one_name_less`, for the name `gone`."""
        for other in self._cache.other_names(gone.inode, gone.file_inode):
            other.links -= 1
            other.ctime_ns = now_ns
            self._cache.changed(other.inode)

    def _noted(self, entry: Entry, items: dict[str, bytes | None]) -> None:
        """The cache's side of a commit that set `items` of the user metadata (None:
        removed them)."""
        cached = self._cache.user_metadata(entry.inode)
        if cached is not None and any(cached.get(k) != v for k, v in items.items()):
            kept = {k: v for k, v in cached.items() if k not in items}
            kept.update((k, v) for k, v in items.items() if v is not None)
            self._cache.set_user_metadata(entry.inode, kept)
        self._user_metadata_changed(entry.inode, entry.file_inode)

    def _user_metadata_changed(self, inode: int, file_inode: int | None) -> None:
        """What the file's other names (hard links) cache of its user metadata is old."""
        for other in self._cache.other_names(inode, file_inode):
            self._cache.forget_user_metadata(other.inode)

    def _counted_subdirs(self, counts: dict[int, int]) -> None:
        """The cache's side of `transactions.count_subdirs`, once its transaction is committed."""
        for directory, change in counts.items():
            cached = self._cache.get(directory)
            if cached is not None:
                cached.subdirs += change
                self._cache.changed(directory)

    def _touched(self, inode: int, now_ns: int) -> None:
        directory = self._cache.get(inode)
        if directory is not None:
            directory.mtime_ns = directory.ctime_ns = now_ns
            self._cache.changed(inode)


# -- statements built on the loop -----------------------------------------------------
