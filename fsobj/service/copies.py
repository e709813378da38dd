"""Copies of whole trees by metadata alone: instant clones of a directory tree, an object
or a bucket, and snapshots (read-only bucket clones) and their removal. Blobs are
shared, never copied (metadata/trees.py makes each copy in one transaction)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from fsobj.iam.policy import Identity, Permission
from fsobj.metadata.entries import Entry
from fsobj.refusals import Reason, Refused
from fsobj.service import names

if TYPE_CHECKING:
    from fsobj.service.core import Service

log = logging.getLogger("fsobj.service")


async def clone(
    core: Service,
    who: Identity,
    source: Entry,
    parent: Entry,
    raw: bytes,
    snapshot: bool = False,
) -> int:
    """Copy `source`, a directory tree, an object or a whole bucket, to the new name
    `raw` in `parent` by metadata alone: every blob shared, no data copied, the copy
    independent from then on (a bucket's copy is a new bucket of `who`'s, with the
    same grants). `who` must own `source` or administer the store, and be allowed to
    read its bucket; the kernel has checked that it may write in `parent`. A copy
    is writable (a copy of a snapshot too: how one is restored), unless it is a
    `snapshot` of a bucket: read-only. Returns how many entries were copied."""
    where = (parent, raw)
    if source.kind == "root":
        raise Refused(Reason.NOT_PERMITTED, where, "the store's top level is no tree to copy")
    if (source.kind == "bucket") != (parent.kind == "root"):
        raise Refused(
            Reason.NOT_PERMITTED, where, "a bucket copies to a bucket, anything else inside one"
        )
    if who.uid != source.uid and not core.iam.is_admin(who):
        raise Refused(Reason.DENIED, where, "only the owner of what is copied copies it")
    bucket = await core.bucket_of(source)
    acl = await core._meta.acl(bucket.inode) if bucket is not None else None
    if Permission.READ not in core.iam.rights(who, acl):
        core.deny(who, bucket, where, "READ")
    if source.is_dir and await core._within(parent, source):
        raise Refused(Reason.INVALID, where, "cannot copy a directory into itself")
    name = await core.new_name(parent, raw, "dir" if source.is_dir else source.kind)
    if source.is_dir and parent.kind != "root":
        try:
            extra = await core._meta.subtree_key_bytes(source.inode)
            names.check_key_length(await core.key_bytes(parent) + len(raw) + extra)
        except Refused as refusal:
            raise refusal.at(where) from None
    owner = who.uid if source.kind == "bucket" else None
    marks = {names.SNAPSHOT_OF: source.name.encode() if snapshot else None}
    place, now = (parent.inode, name), time.time_ns()
    try:
        _, copied = await core._meta.clone(source, place, now, owner, marks)
    except Refused as refusal:
        raise refusal.at(where) from None
    log.info("cloned %s to %s: %d entries", await core.path_of(source), name, copied)
    return copied


async def remove_snapshot(core: Service, who: Identity, snapshot: Entry) -> int:
    """Remove a snapshot (a bucket `clone(..., snapshot=True)` made) and everything in
    it, in one transaction: its owner or an administrator. Its blobs go once no
    object names them. Returns how many blobs it named."""
    where = (snapshot, None)
    if names.SNAPSHOT_OF not in await core._meta.user_metadata(snapshot.inode):
        raise Refused(Reason.NOT_PERMITTED, where, f"{snapshot.name} is no snapshot")
    acl = await core._meta.acl(snapshot.inode)
    if who.uid != acl.owner and not core.iam.is_admin(who):
        raise Refused(Reason.DENIED, where, "only a snapshot's owner removes it")
    blobs = await core._meta.delete_tree(snapshot, time.time_ns())
    for blob in blobs:
        core.objects.retire(blob)  # removed once durable, if no object names it
    log.info("removed snapshot %s (%d blobs named)", snapshot.name, len(blobs))
    return len(blobs)
