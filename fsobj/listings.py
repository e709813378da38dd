"""Directory listings: the API service's part that opens and pages through directories.

The top level lists the buckets the caller may read; inside a bucket, a caller who may
read the bucket sees every entry. The rights are decided at `opendir`, as for a file
descriptor.
"""

from __future__ import annotations

import bisect
import errno
import logging
from typing import TYPE_CHECKING, Any

import pyfuse3

from .iam import Permission
from .metadata import Entry, MetadataStore
from .refusals import Refused, request

if TYPE_CHECKING:
    from .operations import Access

log = logging.getLogger(__name__)

READDIR_PAGE = 1000


class Listings:
    """Directory handlers, mixed into `operations.Operations`."""

    def __init__(self) -> None:
        super().__init__()
        self._listings: dict[int, _Listing] = {}
        self._next_listing = 1

    @request
    async def opendir(self, inode: int, ctx: Any) -> int:
        entry = await self._entry(inode)
        if not entry.is_dir:
            raise Refused(errno.ENOTDIR, (entry, None), "not a directory")
        if entry.kind == "root":
            access = await self._access(ctx, entry)
        else:
            access = await self._require(ctx, entry, Permission.READ)
        fh = self._next_listing
        self._next_listing += 1
        self._listings[fh] = _Listing(inode, access)
        return fh

    @request
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self._listings[fh]
        attrs = None
        while True:
            page = await listing.page_after(self.meta, start_id)
            if not page:
                return
            for entry in page:
                rights = listing.access.rights
                if entry.kind == "bucket":  # the top level lists what the caller may read
                    rights = self.iam.rights(listing.access.who, await self.meta.acl(entry.inode))
                    visible = Permission.READ in rights
                else:
                    visible = True
                # an entry moved away since the page was read is skipped
                if visible and entry.parent == listing.inode:
                    attrs = self.attributes(entry, rights, attrs)
                    if not pyfuse3.readdir_reply(token, entry.name.encode(), attrs, entry.inode):
                        return
                start_id = entry.inode

    @request
    async def releasedir(self, fh: int) -> None:
        self._listings.pop(fh, None)

    @request
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        await self.objects.durability.make_all_durable(sync_all=True)


class _Listing:
    """An open directory: the page of entries last fetched, so that each of the kernel's
    small readdir requests is served from memory and the database sees one query per page."""

    def __init__(self, inode: int, access: Access):
        self.inode = inode
        self.access = access  # decided at opendir, as for a file descriptor
        self._after = -1  # the start_id the page was fetched after
        self._page: list[Entry] = []
        self._ids: list[int] = []
        self._complete = False  # the page reaches the end of the directory

    async def page_after(self, meta: MetadataStore, start_id: int) -> list[Entry]:
        if 0 <= self._after <= start_id:
            index = bisect.bisect_right(self._ids, start_id)
            if index < len(self._ids):
                return self._page[index:]
            if self._complete:
                return []
        self._after = start_id
        self._page = await meta.children(self.inode, start_id, READDIR_PAGE)
        log.debug("listing %d: read %d entries after %d", self.inode, len(self._page), start_id)
        self._ids = [entry.inode for entry in self._page]
        self._complete = len(self._page) < READDIR_PAGE
        return self._page
