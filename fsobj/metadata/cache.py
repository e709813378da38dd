"""What the metadata store keeps of the namespace in memory, bounded.

The store writes through this cache (one process owns a store, so a cached entry is the
truth), and every entry in it can be read back from the database, so an entry may go at
any time, least recently used first, except those that exist only here or are shared:

* entries whose row is not written yet (`unwritten`: new objects before their first
  commit);
* entries that something holds (an open handle changes its entry in place, so the entry
  must stay the one object that every request sees).

When the kernel forgets an inode (`forget`, fuse/operations.py), its entry goes to the front
of the line: the first to leave when room is needed, and still here if it is asked for
again before that (reading a file back after the kernel dropped its caches then costs no
query).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fsobj.metadata.store import Entry

# About 600 bytes each with their names and ids: 100,000 entries are some 60 MiB.
DEFAULT_CAPACITY = 100_000


class NamespaceCache:
    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        self.capacity = capacity
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._by_name: dict[tuple[int, str], int] = {}
        # Directories all of whose children are cached (made since the store was opened,
        # and none of their children evicted): a name missing there is missing.
        self._complete: set[int] = set()
        # On a shared store: when each complete directory's children were all read.
        self._complete_at: dict[int, float] = {}
        self._user_metadata: dict[int, dict[str, bytes]] = {}
        self._held: dict[int, int] = {}
        # The cached names of each file that has several (hard links), by its file_inode.
        self._names_of_file: dict[int, set[int]] = {}
        self.unwritten: dict[int, Entry] = {}
        # On a shared store: when each entry was read, and the count of changes made here
        # at each entry's last one (a row read before that change must not undo it).
        self._read_at: dict[int, float] = {}
        self._changed_at: dict[int, int] = {}
        self.changes = 0
        self.shared = False  # else none of that is kept: the cache is authoritative

    def __len__(self) -> int:
        return len(self._entries)

    def has_room(self) -> bool:
        """Whether entries read in passing (a listing's) may join without pushing out
        entries in use."""
        return len(self._entries) < self.capacity * 3 // 4

    def get(self, inode: int) -> Entry | None:
        entry = self._entries.get(inode)
        if entry is not None:
            self._entries.move_to_end(inode)
        return entry

    def peek(self, inode: int) -> Entry | None:
        """The cached entry, without counting this as a use."""
        return self._entries.get(inode)

    def names_of_file(self, file_inode: int) -> list[Entry]:
        """The cached entries of a file's names (hard links)."""
        return [self._entries[inode] for inode in self._names_of_file.get(file_inode, ())]

    def other_names(self, inode: int, file_inode: int | None) -> list[Entry]:
        """The cached entries of the other names of the file that `inode` names."""
        if file_inode is None:
            return []
        return [other for other in self.names_of_file(file_inode) if other.inode != inode]

    def file_named(self, entry: Entry) -> None:
        """`entry` became one of its file's names (its file_inode is set)."""
        if entry.file_inode is not None and entry.inode in self._entries:
            self._names_of_file.setdefault(entry.file_inode, set()).add(entry.inode)

    def named(self, parent: int, name: str) -> Entry | None:
        inode = self._by_name.get((parent, name))
        return None if inode is None else self.get(inode)

    def has_name(self, parent: int, name: str) -> bool:
        return (parent, name) in self._by_name

    def knows_all_of(self, directory: int) -> bool:
        """Whether every child of `directory` is cached: a name not found is missing."""
        return directory in self._complete

    def completeness_age(self, directory: int) -> float:
        """On a shared store: seconds since every child of `directory` was read (infinite
        when they were not)."""
        if directory not in self._complete:
            return float("inf")
        return time.monotonic() - self._complete_at.get(directory, 0.0)

    def read_all_of(self, directory: int) -> None:
        """Every child of `directory` was just read (and cached)."""
        self._complete.add(directory)
        self._complete_at[directory] = time.monotonic()

    def missing_children(self, directory: int) -> None:
        """Children of `directory` were stored without passing here (a bulk load)."""
        self._complete.discard(directory)

    def add(self, entry: Entry, complete: bool = False) -> Entry:
        """Cache an entry read or made; returns the cached one, which wins over an older
        row read meanwhile. `complete`: a new directory, whose children all pass here."""
        cached = self.get(entry.inode)
        if cached is not None:
            return cached
        self._entries[entry.inode] = entry
        self._by_name[(entry.parent, entry.name)] = entry.inode
        self.file_named(entry)
        if self.shared:
            self._read_at[entry.inode] = time.monotonic()
        if complete:
            self._complete.add(entry.inode)
        if len(self._entries) > self.capacity:
            self._shrink()
        return entry

    def renamed(self, entry: Entry, old_parent: int, old_name: str) -> None:
        """`entry` (already changed) had the name `old_name` in `old_parent`."""
        if self._by_name.get((old_parent, old_name)) == entry.inode:
            del self._by_name[(old_parent, old_name)]
        if entry.inode in self._entries:
            self._by_name[(entry.parent, entry.name)] = entry.inode

    def age(self, inode: int) -> float:
        """Seconds since the entry was read (or changed here)."""
        return time.monotonic() - self._read_at.get(inode, 0.0)

    def changed(self, inode: int) -> None:
        """This process changed the entry."""
        if not self.shared:
            return
        self.changes += 1
        self._changed_at[inode] = self.changes
        self._read_at[inode] = time.monotonic()

    def changed_since(self, inode: int, mark: int) -> bool:
        """Whether this process changed the entry after `changes` was `mark`."""
        return self._changed_at.get(inode, 0) > mark

    def reread(self, entry: Entry, found: Entry) -> None:
        """`found` is the entry's row as the database has it now (another host may have
        changed it): the cached entry, which handles share, becomes that."""
        old_parent, old_name = entry.parent, entry.name
        self._unname_file(entry)
        for name in entry.__slots__:
            setattr(entry, name, getattr(found, name))
        self.renamed(entry, old_parent, old_name)
        self.file_named(entry)
        self._read_at[entry.inode] = time.monotonic()

    def unname(self, parent: int, name: str) -> None:
        """The name is not (or no longer) in the directory."""
        inode = self._by_name.pop((parent, name), None)
        if inode is not None:
            self._read_at.pop(inode, None)  # and whatever it names, read again when asked

    def drop(self, inode: int) -> None:
        """The entry is gone from the namespace: on one host, its directory, if all its
        children were cached, still has them all (a name missing there is still missing:
        SQLite looks up its journal before each transaction, after removing the last
        one). On a shared store, a removal found in the database means other hosts
        changed the directory: its names are read again."""
        self.unwritten.pop(inode, None)
        self._held.pop(inode, None)
        self._remove(inode, evicted=self.shared)

    def evict(self, inode: int) -> None:
        """Nobody needs the entry in memory now (the kernel forgot it): it goes first when
        room is needed."""
        if inode in self._entries:
            self._entries.move_to_end(inode, last=False)

    def hold(self, inode: int) -> None:
        self._held[inode] = self._held.get(inode, 0) + 1

    def let_go(self, inode: int) -> None:
        left = self._held.get(inode, 0) - 1
        if left > 0:
            self._held[inode] = left
        else:
            self._held.pop(inode, None)

    def _remove(self, inode: int, evicted: bool = True) -> None:
        entry = self._entries.pop(inode, None)
        if entry is not None:
            self._unname_file(entry)
            if self._by_name.get((entry.parent, entry.name)) == inode:
                del self._by_name[(entry.parent, entry.name)]
            if evicted:  # still a child, no longer cached
                self._complete.discard(entry.parent)
        self._complete.discard(inode)
        self._complete_at.pop(inode, None)
        self._user_metadata.pop(inode, None)
        self._read_at.pop(inode, None)
        self._changed_at.pop(inode, None)

    def _unname_file(self, entry: Entry) -> None:
        file_inode = entry.file_inode
        names = None if file_inode is None else self._names_of_file.get(file_inode)
        if file_inode is not None and names is not None:
            names.discard(entry.inode)
            if not names:
                del self._names_of_file[file_inode]

    def _shrink(self) -> None:
        """Evict the least recently used entries down to capacity, skipping those that
        must stay (they move to the recent end, so each is passed over once)."""
        for _ in range(len(self._entries)):
            if len(self._entries) <= self.capacity:
                return
            inode = next(iter(self._entries))
            if inode in self._held or inode in self.unwritten:
                self._entries.move_to_end(inode)
            else:
                self._remove(inode)

    # -- user metadata, kept while its entry is -------------------------------------------

    def user_metadata(self, inode: int) -> dict[str, bytes] | None:
        return self._user_metadata.get(inode)

    def set_user_metadata(self, inode: int, items: dict[str, bytes]) -> dict[str, bytes]:
        if inode in self._entries:
            self._user_metadata[inode] = items
        return items

    def forget_user_metadata(self, inode: int) -> None:
        self._user_metadata.pop(inode, None)
