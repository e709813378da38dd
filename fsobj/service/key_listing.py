"""Listing keys as S3 does: in UTF-8 byte order, with a prefix, a delimiter that folds
keys into common prefixes, and pages that start after a key.

Keys are paths in the namespace tree, so a listing walks it: one directory page at a time
in key order (Dialect.key_order, an index), entering a directory only when its keys may be
listed one by one, so that a bucket is never held in memory and a common prefix costs one
entry, however much lies below it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

from fsobj.iam.policy import Acl, Identity, Policy, R, X
from fsobj.metadata.store import Entry, MetadataStore

IMPLIED = "fsobj.implied"  # user metadata of a directory a PUT made for a key below it

PAGE = 1000  # entries read per query


@dataclasses.dataclass(frozen=True, slots=True)
class Listed:
    """One key of a listing: an object, or an empty directory's marker (ending in `/`)."""

    key: str
    entry: Entry


@dataclasses.dataclass(slots=True)
class Listing:
    keys: list[Listed]
    prefixes: list[str]
    truncated: bool
    last: str  # the last key or prefix returned: where the next page starts


class KeyListing:
    """The keys of one bucket as one caller may list them."""

    def __init__(self, meta: MetadataStore, iam: Policy, who: Identity, acl: Acl):
        self.meta, self.iam, self.who, self.acl = meta, iam, who, acl

    async def page(
        self, bucket: Entry, prefix: str, delimiter: str, after: str, limit: int
    ) -> Listing:
        """Up to `limit` keys and common prefixes in S3's order (UTF-8 bytes), after
        `after`. Read a directory page at a time: a bucket is never held in memory.
        Directories the caller may not read are passed over, as `find` goes on past them."""
        listing = Listing([], [], False, after)
        if limit <= 0:
            return listing
        # Start in the deepest directory that the prefix names whole.
        start = bucket
        base = ""
        for part in prefix.split("/")[:-1]:
            found = await self.meta.lookup(start.inode, part) if part else None
            if found is None or not found.is_dir:
                return listing
            start, base = found, base + part + "/"
        bound, inclusive = (after, False) if after >= prefix else (prefix, True)

        def descend(key: str) -> bool:
            """Whether keys below directory `key` may be listed one by one: not when
            none can match the prefix, nor when they all fall in one common prefix."""
            if not key.startswith(prefix):
                return prefix.startswith(key)
            return not delimiter or delimiter not in key[len(prefix) :]

        async for key, entry in self._walk(start, base, bound, inclusive, descend):
            if not key.startswith(prefix):
                if key > prefix:
                    break
                continue
            rest = key[len(prefix) :]
            cut = rest.find(delimiter) if delimiter else -1
            if cut >= 0:
                common = prefix + rest[: cut + len(delimiter)]
                if common <= after or (listing.prefixes and listing.prefixes[-1] == common):
                    continue
                if len(listing.keys) + len(listing.prefixes) == limit:
                    listing.truncated = True
                    break
                listing.prefixes.append(common)
                listing.last = common
                continue
            if len(listing.keys) + len(listing.prefixes) == limit:
                listing.truncated = True
                break
            listing.keys.append(Listed(key, entry))
            listing.last = key
        return listing

    async def _walk(
        self,
        directory: Entry,
        base: str,
        bound: str,
        inclusive: bool,
        descend: Callable[[str], bool],
        empty_marker: bool = False,
    ) -> AsyncIterator[tuple[str, Entry]]:
        """Every object below `directory` (whose keys begin with `base`) in key order,
        after `bound` (from it, if `inclusive`), entering only the directories that
        `descend` allows. A directory made as such (`mkdir`, a PUT of `dir/`) is a key of
        its own, its marker, as in S3; one that PUTs made for keys below it is a key only
        while it holds nothing (`empty_marker` asks to check), so that it can be deleted."""
        if not self.iam.may(self.who, self.acl, directory, R | X):
            return
        local = bound[len(base) :] if bound.startswith(base) else ""
        slash = local.find("/")
        if bound.startswith(base) and slash >= 0:
            first, first_inclusive = local[: slash + 1], True  # into that directory
        elif bound.startswith(base):
            first, first_inclusive = local, inclusive
        else:
            first, first_inclusive = "", True
        after, include = first, first_inclusive
        while True:
            page = await self.meta.children_in_key_order(
                directory.inode, after, include, PAGE, IMPLIED
            )
            if empty_marker and not page:
                yield base, directory
            empty_marker = False
            for listed, implied in page:
                child = self.meta.current(listed)
                if child.is_dir:
                    key = base + child.name + "/"
                    if not descend(key):
                        if key > bound or (inclusive and key == bound):
                            yield key, child
                        continue
                    within = bound.startswith(key)
                    made = not implied
                    if made and (key > bound or (inclusive and key == bound)):
                        yield key, child
                    async for found in self._walk(
                        child,
                        key,
                        bound if within else key,
                        inclusive and within,
                        descend,
                        empty_marker=not within and not made,
                    ):
                        yield found
                elif child.kind == "object":
                    key = base + child.name
                    if key > bound or (inclusive and key == bound):
                        yield key, child
            if len(page) < PAGE:
                return
            last = page[-1][0]
            after, include = last.name + ("/" if last.is_dir else ""), False
