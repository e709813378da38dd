"""Directory listings: the FUSE handlers that open and page through directories.

The top level lists the buckets the caller may read (decided at `opendir`, as for a file
descriptor); inside buckets the kernel has checked the directory's mode bits.
"""

from __future__ import annotations

import bisect
import logging
from typing import Any

import pyfuse3

from fsobj.fuse.edge import request
from fsobj.fuse.kernel import FuseFrontEnd
from fsobj.iam.policy import Identity, Permission
from fsobj.refusals import Reason, Refused
from fsobj.service import Entry
from fsobj.service.core import Service

log = logging.getLogger(__name__)

READDIR_PAGE = 1000
# Offsets in a listing: "." is followed by 1, ".." by 2, an entry by its inode plus 2.
DOTS = 2


class Listings(FuseFrontEnd):
    """Directory handlers, part of `operations.Operations`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listings: dict[int, _Listing] = {}
        self._next_listing = 1

    @request
    async def opendir(self, inode: int, ctx: Any) -> int:
        entry = await self.core.entry(inode)
        if not entry.is_dir:
            raise Refused(Reason.NOT_DIRECTORY, (entry, None), "not a directory")
        who = self.core.iam.identify(ctx) if entry.kind == "root" else None
        fh = self._next_listing
        self._next_listing += 1
        self._listings[fh] = _Listing(inode, who)
        return fh

    @request
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self._listings[fh]
        attrs = None
        if start_id < DOTS:
            directory = await self.core.entry(listing.inode)
            parent = await self.core.entry(directory.parent or directory.inode)
            dots = ((b".", directory), (b"..", parent))
            for offset, (name, entry) in enumerate(dots[start_id:], start_id + 1):
                attrs = await self._attributes(entry)
                if not pyfuse3.readdir_reply(token, name, attrs, offset):
                    return
            start_id = DOTS
        after = start_id - DOTS
        while True:
            page = await listing.page_after(self.core, after)
            if not page:
                return
            for listed in page:
                entry = self.core.current(listed)
                visible = True
                if entry.kind == "bucket":  # the top level lists what the caller may read
                    acl = await self.core.grants(entry)
                    visible = listing.who is None or Permission.READ in self.core.iam.rights(
                        listing.who, acl
                    )
                # an entry moved away since the page was read is skipped
                if visible and entry.parent == listing.inode:
                    attrs = self.attributes(entry, attrs)
                    next_id = entry.inode + DOTS
                    if not pyfuse3.readdir_reply(token, entry.name.encode(), attrs, next_id):
                        return
                after = entry.inode

    @request
    async def releasedir(self, fh: int) -> None:
        self._listings.pop(fh, None)

    @request
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        await self.core.make_all_durable()


class _Listing:
    """An open directory: the page of entries last fetched, so that each of the kernel's
    small readdir requests is served from memory and the database sees one query per page."""

    def __init__(self, inode: int, who: Identity | None):
        self.inode = inode
        self.who = who  # at the top level: who opened it, decided as for a descriptor
        self._after = -1  # the start_id the page was fetched after
        self._page: list[Entry] = []
        self._ids: list[int] = []
        self._complete = False  # the page reaches the end of the directory

    async def page_after(self, core: Service, start_id: int) -> list[Entry]:
        if 0 <= self._after <= start_id:
            index = bisect.bisect_right(self._ids, start_id)
            if index < len(self._ids):
                return self._page[index:]
            if self._complete:
                return []
        self._after = start_id
        self._page = await core.children(self.inode, start_id, READDIR_PAGE)
        log.debug("listing %d: read %d entries after %d", self.inode, len(self._page), start_id)
        self._ids = [entry.inode for entry in self._page]
        self._complete = len(self._page) < READDIR_PAGE
        return self._page
