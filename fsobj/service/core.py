"""The object service's core: the state every front end shares, and the steps that resolve
a request (inode to entry, entry to bucket, the caller's access to it) and change the
namespace (buckets, names, grants). The front ends hold it: the FUSE handlers and, through
`ObjectService`, the S3 front end. It knows neither: what a front end must hear of a change
made by another (the kernel's caches) it learns as a `Watcher`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
from typing import Any, NoReturn, Protocol

import trio

from fsobj.datastore.cache import BlobCache
from fsobj.datastore.store import DataStore
from fsobj.iam import posix_acl
from fsobj.iam.policy import Acl, Grant, Identity, Permission, Policy
from fsobj.metadata.store import Entry, MetadataStore
from fsobj.refusals import Reason, Refused, Where
from fsobj.service import encryption, gc, names, versioning
from fsobj.service.handles import OpenObjects
from fsobj.service.uploads import ABANDONED_UPLOAD, Uploads
from fsobj.service.version_view import VersionView

log = logging.getLogger("fsobj.service")

PLACES = 50_000  # directories whose bucket and key prefix are remembered


# What a name refused as a key's is, refused as a bucket's.
_BUCKET_NAME_REASON = {
    Reason.BAD_KEY: Reason.BAD_BUCKET_NAME,
    Reason.NAME_TOO_LONG: Reason.BUCKET_NAME_TOO_LONG,
}


class Watcher(Protocol):
    """A front end that keeps copies of what the core holds (the kernel's caches, for
    FUSE), told of each change that another front end or a commit made behind its back."""

    async def name_changed(self, parent: int, name: str) -> None:
        """A name in directory `parent` was made or removed."""

    def attributes_changed(self, inode: int) -> None:
        """An inode's attributes or ACL changed (a commit, a bucket's grants)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Access:
    """What one caller may do on the bucket that holds an entry (bucket None: top level)."""

    who: Identity
    bucket: Entry | None
    acl: Acl | None
    rights: frozenset[Permission]


class Service:
    def __init__(self, meta: MetadataStore, data: DataStore, iam: Policy):
        # What an inode that is gone answers. On a shared store another host removed or
        # replaced it: STALE (ESTALE) makes the kernel look the path up again and retry.
        self.vanished = Reason.STALE if meta.shared else Reason.VANISHED
        self._meta = meta
        self._data = data
        self.iam = iam
        self.objects = OpenObjects(meta, data)
        self.watchers: list[Watcher] = []  # the FUSE front end's kernel caches, when mounted
        self.objects.committed = self.attributes_changed
        self.objects.new_version = functools.partial(versioning.new_version, self)
        self.objects.sealing = functools.partial(encryption.seal_for, self)
        self.view = VersionView(self)
        self.abandoned_upload = ABANDONED_UPLOAD  # seconds: then gc removes an upload
        self.lifecycle_day = 86_400.0  # seconds in a day of lifecycle rules (lifecycle.py)
        # Each directory's bucket and key prefix length, as of a count of directory moves.
        self._places: dict[int, tuple[int, int, int, float]] = {}

    # -- resolving requests -------------------------------------------------------------

    async def entry(self, inode: int) -> Entry:
        """The entry of an inode that exists (ENOENT, or ESTALE on a shared store, if not)."""
        if self.view.is_view(inode):
            return await self.view.entry(inode)
        entry = await self._meta.get(inode) or self.objects.orphan(inode)
        if entry is None:
            raise Refused(self.vanished, None, f"inode {inode} no longer exists")
        return entry

    async def children(self, directory: int, after: int, limit: int) -> list[Entry]:
        """A page of a directory: up to `limit` entries with inodes above `after`."""
        if self.view.is_view(directory):
            found = await self.view.children(await self.view.entry(directory))
            return [entry for entry in found if entry.inode > after][:limit]
        return await self._meta.children(directory, after, limit)

    def current(self, entry: Entry) -> Entry:
        """The entry as the core holds it now (a page read earlier may be older)."""
        return self._meta.current(entry)

    def forget(self, inode: int) -> None:
        """A front end holds the inode no longer: its entry is the first to leave the
        cache when that needs room."""
        self._meta.evict(inode)

    @property
    def shared(self) -> bool:
        """Whether other hosts serve the same store (then what is read stays true only
        for the metadata timeout)."""
        return self._meta.shared

    def trusted_for(self, entry: Entry) -> float:
        """Seconds for which what was read of `entry` may still be taken as true."""
        return self._meta.trusted_for(entry)

    def absence_trusted_for(self, parent: int) -> float:
        """Seconds for which a name found missing in `parent` may be taken as missing."""
        return self._meta.absence_trusted_for(parent)

    async def path_of(self, entry: Entry) -> str:
        parts = []
        while entry.kind != "root":
            parts.append(entry.name)
            parent = await self._meta.get(entry.parent)
            if parent is None:  # unlinked
                break
            entry = parent
        return "/" + "/".join(reversed(parts))

    async def describe(self, entry: Entry, name: bytes | None) -> str:
        """The path of `entry`, or of `name` inside it, for log lines."""
        path = await self.path_of(entry)
        if name is None:
            return path
        return path.rstrip("/") + "/" + name.decode("utf-8", "backslashreplace")

    async def bucket_of(self, entry: Entry) -> Entry | None:
        directory = entry if entry.is_dir else await self._meta.get(entry.parent)
        if directory is None:  # unlinked
            return None
        bucket, _ = await self._place(directory)
        return await self._meta.get(bucket) if bucket else None

    async def key_bytes(self, directory: Entry) -> int:
        """Bytes of the key prefix that `directory` stands for, with its trailing slash."""
        return (await self._place(directory))[1]

    async def _place(self, directory: Entry) -> tuple[int, int]:
        """(bucket inode or 0, key prefix bytes) of a directory: derived from its parents
        once, then remembered until a directory moves (which may change both for every
        directory below it), so that a request does not walk up the tree."""
        if directory.kind in ("bucket", "root"):
            return (directory.inode if directory.kind == "bucket" else 0), 0
        moves = self._meta.directory_moves
        now = time.monotonic()
        known = self._places.get(directory.inode)
        # On a shared store, other hosts move directories too: derived again once old.
        if known is not None and known[0] == moves and now < known[3]:
            return known[1], known[2]
        bucket, prefix = await self._place(await self.entry(directory.parent))
        prefix += len(directory.name.encode()) + 1
        if len(self._places) >= PLACES:
            self._places.clear()  # forgetting only means deriving again
        until = now + self._meta.fresh_seconds if self._meta.shared else math.inf
        self._places[directory.inode] = (moves, bucket, prefix, until)
        return bucket, prefix

    async def access(self, ctx: Any, entry: Entry) -> Access:
        who = self.iam.identify(ctx)
        bucket = await self.bucket_of(entry)
        acl = await self._meta.acl(bucket.inode) if bucket is not None else None
        return Access(who, bucket, acl, self.iam.rights(who, acl))

    async def require(
        self, ctx: Any, entry: Entry, *needed: Permission, name: bytes | None = None
    ) -> Access:
        """The caller's access to the bucket of `entry`, if it holds any of `needed`;
        otherwise EACCES and one audit line."""
        access = await self.access(ctx, entry)
        if not access.rights.intersection(needed):
            missing = " or ".join(p.value for p in needed)
            self.deny(access.who, access.bucket, (entry, name), missing)
        return access

    @staticmethod
    def deny(
        who: Identity, bucket: Entry | str | None, where: Where | None, missing: str
    ) -> NoReturn:
        """EACCES, with the audit line's reason in the one format both front ends log: who
        lacked what, on which bucket (an entry or its name)."""
        name = bucket if isinstance(bucket, str) else bucket.name if bucket else "-"
        raise Refused(
            Reason.DENIED,
            where,
            f"denied: uid {who.uid} pid {who.pid} lacks {missing} on bucket {name}",
        )

    async def child(self, parent: Entry, name: bytes) -> Entry | None:
        """The entry named `name` in `parent`, or None: how both front ends find a name.
        A name longer than a component may be is refused (NAME_TOO_LONG); one that no key
        can have (not UTF-8) names nothing."""
        try:
            text = names.decode_component(name)
        except Refused as refusal:
            if refusal.reason is Reason.NAME_TOO_LONG:
                raise refusal.at((parent, name)) from None
            return None
        if self.view.is_view(parent.inode):
            return await self.view.child(parent, text)
        if parent.kind == "bucket" and text == names.VERSIONS_VIEW:
            return await self.view.top(parent)
        return await self._meta.lookup(parent.inode, text)

    async def existing(self, parent: Entry, name: bytes) -> Entry:
        """The entry named `name` in `parent`, which must exist (NO_SUCH_KEY otherwise)."""
        entry = await self.child(parent, name)
        if entry is None:
            raise Refused(Reason.NO_SUCH_KEY, (parent, name), "no such entry")
        return entry

    async def new_name(self, parent: Entry, raw: bytes, what: str) -> str:
        """Validate a name about to be created under `parent`; returns it as text. At the
        top level it is a bucket's, which S3's naming rules decide."""
        where = (parent, raw)
        await self.check_writable(parent, where)
        try:
            name = names.decode_component(raw)
            if parent.kind == "bucket" and name == names.VERSIONS_VIEW:
                raise Refused(Reason.BAD_KEY, None, "the name of the versions' view")
            if parent.kind == "root":
                if what != "dir":
                    raise Refused(
                        Reason.NOT_PERMITTED,
                        None,
                        "the top level holds only buckets (mkdir creates one)",
                    )
                names.check_bucket_name(name)
            else:
                names.check_key_length(await self.key_bytes(parent) + len(raw))
        except Refused as refusal:
            if parent.kind == "root":  # a bucket's name
                refusal = Refused(
                    _BUCKET_NAME_REASON.get(refusal.reason, refusal.reason), None, refusal.detail
                )
            raise refusal.at(where) from None
        if await self._meta.lookup(parent.inode, name) is not None:
            raise Refused(Reason.EXISTS, where, "exists already")
        return name

    async def remove_name(self, who: Identity, parent: Entry, raw: bytes, directory: bool) -> None:
        """unlink (`directory` False) or rmdir of the name `raw` in `parent`: a bucket by
        its owner or an administrator, a directory only when empty."""
        entry = await self.existing(parent, raw)
        where = (parent, raw)
        if entry.is_dir != directory:
            if directory:
                raise Refused(Reason.NOT_DIRECTORY, where, "not a directory")
            raise Refused(Reason.IS_DIRECTORY, where, "is a directory (use rmdir)")
        if entry.kind == "bucket":
            await self.delete_bucket(who, entry, await self._meta.acl(entry.inode))
        elif not await self.remove(entry):
            raise Refused(Reason.NOT_EMPTY, where, "directory is not empty")

    async def rename(
        self, entry: Entry, where: Where, new_parent: Entry, raw: bytes, replace: bool
    ) -> None:
        """Move `entry` to the name `raw` in `new_parent`, atomically, moving no data;
        an entry there already is replaced if `replace` and POSIX allows it."""
        new_where = (new_parent, raw)
        await self.check_writable(entry, where)
        await self.check_writable(new_parent, new_where)
        if entry.kind == "bucket" or new_parent.kind == "root":
            raise Refused(
                Reason.NOT_PERMITTED,
                where,
                "buckets cannot be renamed, and objects live inside buckets",
            )
        try:
            new_name = names.decode_component(raw)
            extra = await self._meta.subtree_key_bytes(entry.inode) if entry.is_dir else 0
            names.check_key_length(await self.key_bytes(new_parent) + len(raw) + extra)
        except Refused as refusal:
            raise refusal.at(new_where) from None
        if entry.parent == new_parent.inode and entry.name == new_name:
            return
        replaced = await self._meta.lookup(new_parent.inode, new_name)
        if replace and replaced is not None and replaced.kernel_inode == entry.kernel_inode:
            return  # two names of one file (hard links): rename(2) does nothing
        if entry.is_dir and await self._within(new_parent, entry):
            raise Refused(Reason.INVALID, new_where, "cannot move a directory into itself")
        if replaced is not None:
            if not replace:
                raise Refused(Reason.EXISTS, new_where, "exists already (RENAME_NOREPLACE)")
            if entry.is_dir and not replaced.is_dir:
                raise Refused(
                    Reason.NOT_DIRECTORY, new_where, "cannot replace an object by a directory"
                )
            if replaced.is_dir and not entry.is_dir:
                raise Refused(
                    Reason.IS_DIRECTORY, new_where, "cannot replace a directory by an object"
                )
            if replaced.is_dir and await self._meta.has_children(replaced.inode):
                raise Refused(Reason.NOT_EMPTY, new_where, "directory is not empty")
            # A crash must not trade the replaced object for one whose content was lost.
            await self.objects.durability.make_content_durable(entry)
        archives = await versioning.move_archives(self, entry, new_parent, new_name, replaced)
        now = time.time_ns()
        await self._meta.move(entry, new_parent.inode, new_name, now, replaced, archives)
        if replaced is not None:
            self.objects.unlinked(replaced)

    async def link(self, entry: Entry, new_parent: Entry, raw: bytes) -> Entry:
        """A new name `raw` in `new_parent` for the file of `entry` (a hard link): one
        file, one inode, its content and metadata shared, until the last name goes. Names
        of one bucket only, for files that are not directories."""
        where = (new_parent, raw)
        if entry.is_dir:
            raise Refused(Reason.NOT_PERMITTED, where, "a directory has one name")
        if new_parent.kind == "root":
            raise Refused(Reason.NOT_PERMITTED, where, "the top level holds only buckets")
        bucket, other = await self.bucket_of(entry), await self.bucket_of(new_parent)
        if bucket is None or other is None or bucket.inode != other.inode:
            raise Refused(Reason.OTHER_BUCKET, where, "hard links join names of one bucket")
        name = await self.new_name(new_parent, raw, entry.kind)
        try:
            return await self._meta.link(entry, new_parent.inode, name, time.time_ns())
        except Refused as refusal:
            raise refusal.at(where) from None

    async def check_writable(self, entry: Entry, where: Where | None = None) -> None:
        """Refuse (READ_ONLY) any change below a snapshot, a read-only bucket (its grants
        still change, and `fsobj snapshot rm` removes it), or in the versions' view."""
        if self.view.is_view(entry.inode):
            raise Refused(Reason.READ_ONLY, where or (entry, None), "past versions are read-only")
        bucket = await self.bucket_of(entry)
        if bucket is not None and names.SNAPSHOT_OF in await self._meta.user_metadata(bucket.inode):
            raise Refused(Reason.READ_ONLY, where or (entry, None), "a snapshot is read-only")

    async def _within(self, entry: Entry, directory: Entry) -> bool:
        """Whether `entry` is `directory` or below it."""
        ancestor: Entry | None = entry
        while ancestor is not None and ancestor.kind != "root":
            if ancestor.inode == directory.inode:
                return True
            ancestor = await self._meta.get(ancestor.parent)
        return False

    async def user_metadata(self, entry: Entry) -> dict[str, bytes]:
        """An entry's user metadata (S3's x-amz-meta-*), name to value."""
        return await self._meta.user_metadata(entry.inode)

    async def set_user_metadata(self, entry: Entry, name: str, value: bytes | None) -> None:
        """Set one item of user metadata, within S3's limit for all of them, or remove it
        (`value` None), which must be there."""
        await self.check_writable(entry)
        current = await self._meta.user_metadata(entry.inode)
        if value is None and name not in current:
            raise Refused(Reason.NO_SUCH_ATTRIBUTE, None, f"no metadata {name}")
        if value is not None:
            names.check_user_metadata({**current, name: value})
        await self._meta.set_user_metadata(entry.inode, name, value, entry.file_inode)

    async def set_item(self, entry: Entry, name: str, value: bytes | None) -> None:
        """Set an item that fsobj keeps beside an entry's user metadata (`fsobj.*`: tags,
        lifecycle rules), or remove it (None) if it is there."""
        if value is not None or name in await self._meta.user_metadata(entry.inode):
            await self.set_user_metadata(entry, name, value)

    async def change_attributes(self, entry: Entry, **changes: int | str | None) -> None:
        """Change an entry's attributes (mode, owner, times, content type): the caller
        has checked who may (for FUSE, the kernel)."""
        await self.check_writable(entry)
        await self._meta.update(entry, **changes)

    async def make_entry(
        self,
        parent: Entry,
        name: str,
        kind: str,
        mode: int,
        ctx: Any,
        target: str | None = None,
        rdev: int = 0,
    ) -> Entry:
        """A new directory, symlink (to `target`), FIFO, socket or device node (standing
        for device `rdev`) named `name` (checked already) in `parent`, owned by the
        caller, its mode less the caller's umask."""
        entry = self.entry_for_caller(parent, name, kind, mode, ctx)
        entry.rdev = rdev
        if target is not None:
            entry.target = target
            entry.size = len(target.encode())
        await self._meta.insert(entry)
        return entry

    async def grants(self, bucket: Entry) -> Acl:
        """A bucket's owner and grants."""
        return await self._meta.acl(bucket.inode)

    def cached_bucket_mode(self, bucket: Entry) -> int:
        """The permission bits a bucket's directory shows: its grants' (read already)."""
        return posix_acl.mode_of(self.posix_acl_of(bucket, self._meta.cached_acl(bucket.inode)))

    async def bucket_acl(self, bucket: Entry) -> tuple[posix_acl.AclEntry, ...]:
        """The POSIX ACL of a bucket's directory: its grants, for the kernel to check."""
        return self.posix_acl_of(bucket, await self._meta.acl(bucket.inode))

    def posix_acl_of(self, bucket: Entry, acl: Acl) -> tuple[posix_acl.AclEntry, ...]:
        return posix_acl.from_grants(acl, bucket.gid, self.iam.admins)

    def entry_for_caller(self, parent: Entry, name: str, kind: str, mode: int, ctx: Any) -> Entry:
        if kind != "symlink":  # a symlink's mode is always 0777
            mode = self.masked(mode, ctx)
        return self.new_entry(parent, name, kind, mode, ctx.uid, ctx.gid)

    @staticmethod
    def masked(mode: int, ctx: Any) -> int:
        """The mode a new entry gets: what was asked, less the caller's umask."""
        return mode & 0o7777 & ~ctx.umask

    @staticmethod
    def new_entry(parent: Entry, name: str, kind: str, mode: int, uid: int, gid: int) -> Entry:
        now = time.time_ns()
        return Entry(0, parent.inode, name, kind, mode, uid, gid, now, now, now)

    async def create_bucket(self, root: Entry, name: str, uid: int, gid: int) -> Entry:
        """A new bucket owned by `uid`, private whatever mode was asked (its mode bits are
        its grants'); the name is checked already."""
        entry = self.new_entry(root, name, "bucket", 0o700, uid, gid)
        await self._meta.insert(entry, bucket_owner=uid)
        log.info("created bucket %s for uid %d", name, uid)
        return entry

    async def delete_bucket(self, who: Identity, bucket: Entry, acl: Acl) -> None:
        """Remove an empty bucket: its owner or an administrator (the top level is sticky)."""
        where = (bucket, None)
        if who.uid != acl.owner and not self.iam.is_admin(who):
            self.deny(who, bucket, where, "ownership (only the owner deletes a bucket)")
        if await self._meta.has_versions(bucket.inode) or not await self.remove(bucket):
            raise Refused(Reason.NOT_EMPTY, where, "bucket is not empty")
        log.info("removed bucket %s", bucket.name)

    async def new_object(
        self,
        parent: Entry,
        name: str,
        mode: int,
        uid: int,
        gid: int,
        replacing: Entry | None = None,
    ) -> Entry:
        """A new object named `name` (checked already) in `parent`, without content yet:
        in the cache alone until its first commit writes its row. `replacing`: the entry
        of that name, one of several names of a file (hard links), which the first commit
        takes the name from."""
        await self.check_writable(parent)
        entry = self.new_entry(parent, name, "object", mode, uid, gid)
        await self._meta.insert(entry, deferred=True, replacing=replacing)
        return entry

    async def remove(self, entry: Entry, keep: bool = True) -> bool:
        """Remove an object, or a directory if it is empty (returns whether it was): its
        name goes at once; an object's blob once that is durable and no open file reads
        it. In a versioned bucket its version is kept (unless not `keep`: one removed by
        its version id) and a delete marker takes its place."""
        await self.check_writable(entry)
        if entry.is_dir:
            return await self._meta.delete_directory(entry, time.time_ns())
        archive = await versioning.archive(self, entry) if keep else None
        await self._meta.delete(entry, time.time_ns(), archive)
        self.objects.unlinked(entry)
        return True

    async def name_changed(self, parent: Entry, name: str) -> None:
        """A name in `parent` was made or removed by a front end that is not the kernel
        (S3): the watchers drop what they hold of it, before the request is answered."""
        for watcher in self.watchers:
            await watcher.name_changed(parent.inode, name)

    def attributes_changed(self, inode: int) -> None:
        """Something a watcher may hold of an inode changed behind its back (a commit: size
        and times; a bucket's grants: its mode and ACL): it must ask again."""
        for watcher in self.watchers:
            watcher.attributes_changed(inode)

    async def set_bucket_acl(self, bucket: Entry, entries: tuple[posix_acl.AclEntry, ...]) -> None:
        """Give a bucket's directory a POSIX ACL (setfacl, chmod): its grants change."""
        acl = await self._meta.acl(bucket.inode)
        grants = posix_acl.to_grants(entries, acl, bucket.gid, self.iam.admins)
        await self.set_grants(bucket, grants)

    async def set_grants(self, bucket: Entry, grants: tuple[Grant, ...]) -> None:
        """Replace a bucket's grants; the kernel drops what it holds of the bucket's mode
        and ACL, so the change acts on every user's next request."""
        await self._meta.set_grants(bucket.inode, grants)
        self.attributes_changed(bucket.inode)

    async def change_keys(self, who: Identity, change: str) -> list[tuple[str, str, int, int]]:
        """Apply a change of the S3 access keys as `fsobj key` words it ("create KEYID
        UID SECRET", "rm KEYID", or nothing), then return them all (key id, secret, uid,
        created): for administrators only."""
        if not self.iam.is_admin(who):
            raise Refused(Reason.DENIED, None, "the access keys are for administrators")
        words = change.split()
        if len(words) == 4 and words[0] == "create" and words[2].isdigit():
            await self._meta.add_access_key(words[1], words[3], int(words[2]), time.time_ns())
        elif len(words) == 2 and words[0] == "rm":
            if not await self._meta.remove_access_key(words[1]):
                raise Refused(Reason.NO_SUCH_KEY, None, f"no access key {words[1]}")
        elif words:
            raise Refused(Reason.INVALID, None, "expected 'create KEYID UID SECRET' or 'rm KEYID'")
        return await self._meta.access_keys()

    async def access_key(self, key_id: str) -> tuple[str, int] | None:
        """The secret and uid of an S3 access key, or None if there is none."""
        found = await self._meta.access_keys(key_id)
        return (found[0][1], found[0][2]) if found else None

    @property
    def access_key_changes(self) -> int:
        """A count that grows whenever this host removes or adds an access key."""
        return self._meta.access_key_changes

    @property
    def fresh_seconds(self) -> float:
        """The metadata timeout: how long what was read from a shared store is trusted."""
        return self._meta.fresh_seconds

    async def make_all_durable(self) -> None:
        """Make every change so far durable (fsyncdir, syncfs, the daemon at exit)."""
        await self.objects.durability.make_all_durable()

    def capacity(self) -> os.statvfs_result:
        """The room left where the blobs are, for statfs."""
        return self._data.capacity()

    def stats(self) -> dict[str, int]:
        """What the daemon holds in memory, for `fsobj stats`."""
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
        return {
            "cached_entries": self._meta.cached_entries(),
            "open_handles": self.objects.open_handles(),
            "resident_bytes": resident_pages * os.sysconf("SC_PAGE_SIZE"),
        }

    def blob_cache(self) -> BlobCache | None:
        """The local cache of a store whose blobs live at an S3 service (None: local)."""
        return getattr(self._data, "cache", None)

    async def collect_garbage(self) -> gc.Collection:
        """Remove unnamed blobs, and multipart uploads begun longer ago than
        `abandoned_upload` seconds."""
        uploads = Uploads(self._data.root)
        expired = await trio.to_thread.run_sync(uploads.expire, self.abandoned_upload)
        if expired:
            log.info("garbage collection: removed %d abandoned multipart uploads", expired)
        return await gc.collect(self._meta, self._data, self.objects.busy_blobs)
