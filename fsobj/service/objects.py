"""The object service: buckets and objects by name and key, for front ends that speak in
those terms (the S3 HTTP API), over the same store, rules and open objects as the mount.

A request carries an `Identity`. What the kernel decides for the mount (the bucket's
grants as its directory's permissions, mode bits inside) is decided here by the same
policy (`Policy.may`), so a user may do over S3 exactly what they may do on the mount.
Keys are paths in the namespace tree: `a/b/c` is object `c` in directory `b` in `a`; a
PUT makes the directories a key needs, and a key ending in `/` is a directory (a marker).
Uploads are received whole into staging and then committed like a file closed on the
mount (`OpenObjects.replace`), durably before the answer; a GET reads the version that
was current when it began, as a reader on the mount does.
"""

from __future__ import annotations

import contextlib
import logging
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from fsobj import measures
from fsobj.datastore.sealing import Seal
from fsobj.datastore.staging import Staging
from fsobj.datastore.store import check_object_size
from fsobj.iam.policy import Acl, Grant, Identity, Permission, R, W, X
from fsobj.metadata.entries import Expected
from fsobj.metadata.schema import ROOT_INODE
from fsobj.metadata.store import Bucket, Entry
from fsobj.refusals import Reason, Refused
from fsobj.service import encryption, names, object_versions, public_access
from fsobj.service.commits import guess_content_type
from fsobj.service.key_listing import IMPLIED, KeyListing, Listing
from fsobj.service.multipart import MultipartUploads
from fsobj.service.reader import EMPTY_ETAG, Reader
from fsobj.service.working_copy import MEMORY_STAGING

if TYPE_CHECKING:
    from fsobj.service.core import Service

log = logging.getLogger("fsobj.objects")

# Headers an S3 client sets with the content and gets back with it; kept as user metadata
# named `fsobj.HEADER` (on the mount: `user.fsobj.HEADER`, never listed).
CONTENT_HEADERS = ("content-encoding", "content-disposition", "cache-control", "content-language")
RECEIVE_PIECE = 1 << 20  # bytes of a body gathered for each write in a thread
_RECEIVED = measures.WRITTEN_BYTES.labels("s3")


def etag_of(entry: Entry) -> str:
    """An object's ETag; a directory marker's is that of no content. An object committed
    without its etag is given it first (`etags.fill`) by what looked it up."""
    return entry.etag or EMPTY_ETAG


RETRIES_WHILE_REMOVED = 100  # a directory's removal is one transaction: 10 ms apart


class ObjectService:
    """Bucket and object requests by name, for the S3 front end."""

    def __init__(self, core: Service):
        self.core = core
        self._meta = core._meta
        self._data = core._data
        self.objects = core.objects
        self.iam = core.iam
        self.multipart = MultipartUploads(self)

    # -- buckets --------------------------------------------------------------------------

    async def list_buckets(self, who: Identity) -> list[Bucket]:
        """The buckets `who` may list, as the mount's top level shows them."""
        found = []
        for bucket in await self._meta.buckets():
            if Permission.READ in self.iam.rights(who, await self._meta.acl(bucket.inode)):
                found.append(bucket)
        return found

    async def create_bucket(self, who: Identity, name: str) -> Entry:
        root = await self.core.entry(ROOT_INODE)
        try:
            await self.core.new_name(root, name.encode(), "dir")
        except Refused as refusal:
            if refusal.reason is not Reason.EXISTS:
                raise
            # S3 says whose it is.
            existing = await self._meta.lookup(ROOT_INODE, name)
            owner = existing and (await self._meta.acl(existing.inode)).owner
            reason = Reason.BUCKET_OWNED if owner == who.uid else Reason.BUCKET_EXISTS
            raise Refused(reason, refusal.where, refusal.detail) from None
        entry = await self.core.create_bucket(root, name, who.uid, who.gid)
        await self.core.name_changed(root, name)
        return entry

    async def bucket(self, who: Identity, name: str, *needed: Permission) -> tuple[Entry, Acl]:
        """A bucket and its ACL, if it exists and `who` holds one of `needed` on it."""
        entry = await self._meta.lookup(ROOT_INODE, name) if name else None
        if entry is None or entry.kind != "bucket":
            raise Refused(Reason.NO_SUCH_BUCKET, None, f"no bucket {name!r}")
        # As S3 requests weigh it: Block Public Access may ignore its public grants.
        acl = await public_access.seen_acl(self, entry, await self._meta.acl(entry.inode))
        if needed and not self.iam.rights(who, acl).intersection(needed):
            self.core.deny(who, entry, (entry, None), " or ".join(p.value for p in needed))
        return entry, acl

    async def delete_bucket(self, who: Identity, name: str) -> None:
        entry, acl = await self.bucket(who, name)
        await self.core.delete_bucket(who, entry, acl)
        await self.core.name_changed(await self.core.entry(ROOT_INODE), name)

    async def set_grants(self, who: Identity, name: str, grants: tuple[Grant, ...]) -> None:
        entry, _ = await self.bucket(who, name, Permission.WRITE_ACP)
        await public_access.check_grants(self, entry, grants)
        await self.core.set_grants(entry, grants)

    # -- objects --------------------------------------------------------------------------

    async def head(self, who: Identity, bucket: str, key: str) -> Entry:
        """The object (or directory marker) at `key`, which `who` may read."""
        entry, acl = await self._existing(who, bucket, key)
        self._require(who, acl, entry, R, bucket)
        await self.objects.etags.fill(entry)
        return entry

    async def object_permissions(self, who: Identity, bucket: str, key: str) -> Entry:
        """An object whose owner and mode bits (its ACL in S3's terms) `who` may read: as
        `stat` on the mount, anyone who may reach it."""
        entry, _ = await self._existing(who, bucket, key)
        return entry

    async def set_object_mode(self, who: Identity, bucket: str, key: str, mode: int) -> None:
        """Change an object's permission bits, as `chmod` on the mount: its owner or root."""
        entry, _ = await self._existing(who, bucket, key)
        if who.uid not in (0, entry.uid):
            raise Refused(Reason.NOT_PERMITTED, None, f"only the owner of {key!r} changes its mode")
        await public_access.check_mode(self, (await self.bucket(who, bucket))[0], mode)
        await self.core.change_attributes(entry, mode=mode, ctime_ns=time.time_ns())
        self.core.attributes_changed(entry.kernel_inode)

    async def open_reader(
        self,
        who: Identity,
        bucket: str,
        key: str,
        version: str | None = None,
        customer_key: bytes | None = None,
    ) -> Reader:
        """A reader of the version of `key` that is current now (or of `version`); it
        keeps reading that version whatever happens to the key meanwhile, until closed.
        `customer_key`: the client's key of an object sealed with one (SSE-C)."""
        if version is not None:
            entry, _ = await self.copy_source(who, bucket, key, version)
            return await object_versions.open_version(self, entry, who.uid, customer_key)
        entry = await self.head(who, bucket, key)
        if entry.kind != "object":
            return Reader(self.objects, entry, None)
        handle = await self.objects.open(entry, False, False, uid=who.uid, key=customer_key)
        return Reader(self.objects, entry, handle.fh)

    async def put(
        self,
        who: Identity,
        bucket: str,
        key: str,
        body: AsyncIterator[bytes],
        content_type: str | None = None,
        metadata: dict[str, bytes] | None = None,
        expects: Expected | None = None,
        seal: Seal | None = None,
    ) -> Entry:
        """Store `body` under `key`: received whole into staging first, then committed as
        the object's new version, durable before this returns, if the key then holds what
        `expects` says, sealed as `seal` says (None: as the bucket says). A key ending in
        `/` makes a directory (its body must be empty)."""
        bucket_entry, acl = await self.bucket(who, bucket)
        parts = names.key_parts(key)
        if key.endswith("/"):
            async for chunk in body:
                if chunk:
                    raise Refused(Reason.INVALID, None, "a directory marker has no content")
            directory = await self._directories(who, bucket_entry, acl, parts, make=True)
            if IMPLIED in await self._meta.user_metadata(directory.inode):  # a marker now
                await self._meta.set_user_metadata(directory.inode, IMPLIED, None)
            return directory
        # Refused before the body is read when the bucket is out of reach; the rest is
        # decided once it is in (the directories may change meanwhile).
        self._require(who, acl, bucket_entry, X, bucket)
        staged = await self._receive(body)
        try:
            return await self._commit(
                who, bucket_entry, acl, parts, staged, content_type, metadata, expects, seal
            )
        except BaseException:
            self._discard(staged)
            raise

    async def _commit(
        self,
        who: Identity,
        bucket: Entry,
        acl: Acl,
        parts: list[str],
        staged: Staging,
        content_type: str | None,
        metadata: dict[str, bytes] | None,
        expects: Expected | None = None,
        seal: Seal | None = None,
    ) -> Entry:
        entry, replaced = await self._target(who, bucket, acl, parts)
        entry.content_type = content_type or guess_content_type(entry.name)
        return await self._land(
            who,
            acl,
            (entry, replaced),
            lambda: self.objects.replace(entry, staged, who.uid, metadata or {}, expects, seal),
            expects,
        )

    async def _land(
        self,
        who: Identity,
        acl: Acl,
        target: tuple[Entry, int | None],
        commit: Callable[[], Awaitable[None]],
        expects: Expected | None,
    ) -> Entry:
        """Run `commit`, the new version of the object `_target` found (or made); if it
        fails, an object made for it goes, with the directories made for it."""
        entry, replaced = target
        try:
            if expects and expects.etag is not None:
                if entry.object_id is None:
                    raise Refused(Reason.NO_SUCH_KEY, None, "no object to match (If-Match)")
                await self.objects.etags.fill(entry)  # what the commit compares
            await commit()
            if replaced is not None:
                self.core.attributes_changed(replaced)  # one name less
        except BaseException:
            if entry.object_id is None:  # made for this upload: it goes with it, and so
                with trio.CancelScope(shield=True):  # do the directories made for it
                    await self.core.remove(entry)
                    # Only tidying: the failure being raised is the one to report.
                    with contextlib.suppress(OSError, Refused):
                        await self._prune(who, acl, await self.core.entry(entry.parent))
            raise
        return entry

    async def copy_source(
        self, who: Identity, bucket: str, key: str, version: str | None
    ) -> tuple[Entry, dict[str, bytes]]:
        """The object at `key` (or its `version`) that `who` may read, and its metadata."""
        if version is not None:
            return await object_versions.source(self, who, bucket, key, version)
        entry = await self.head(who, bucket, key)
        return entry, await self.core.user_metadata(entry)

    async def copy(
        self,
        who: Identity,
        source_named: tuple[str, str, str | None],
        bucket: str,
        key: str,
        check: Callable[[Entry], None],
        replace: tuple[str | None, dict[str, bytes]] | None = None,
        expects: Expected | None = None,
        sealing: tuple[Seal | None, bytes | None] = (None, None),
    ) -> Entry:
        """Copy an object (bucket, key, version or None): the copy shares its blob, unless
        it is to be sealed otherwise. `check` may refuse after seeing the source (S3's
        copy-source conditions); `replace` gives the copy its own content type and
        metadata, else it keeps the source's; the copy lands if the key then holds what
        `expects` says. `sealing`: how the copy is sealed (None: as its bucket says),
        and the client's key of a source sealed with one."""
        source_bucket, source_key, version = source_named
        source, stored = await self.copy_source(who, source_bucket, source_key, version)
        if source.kind != "object" or source.object_id is None:
            raise Refused(Reason.NO_SUCH_KEY, None, f"no object {source_key!r} to copy")
        encryption.check_key(stored, sealing[1])
        check(source)
        if replace is None:
            content_type, metadata = source.content_type, stored
        else:
            content_type, metadata = replace
        bucket_entry, acl = await self.bucket(who, bucket)
        parts = names.key_parts(key)
        if key.endswith("/"):
            raise Refused(Reason.BAD_KEY, None, "a directory marker is not a copy")
        if (bucket, key, version) == (source_bucket, source_key, None) and replace is None:
            raise Refused(Reason.INVALID, None, "a copy onto itself must replace its metadata")
        seal = sealing[0] or await encryption.bucket_default(self.core, bucket_entry)
        entry, replaced = await self._target(who, bucket_entry, acl, parts)
        entry.content_type = content_type
        if encryption.note(seal) == stored.get(names.ENCRYPTION):  # sealed alike: shared
            metadata = {k: v for k, v in metadata.items() if k not in names.BLOB_NOTES}
            metadata |= {k: v for k, v in stored.items() if k in names.BLOB_NOTES}
            return await self._land(
                who,
                acl,
                (entry, replaced),
                lambda: self.objects.share(entry, source, metadata, expects=expects),
                expects,
            )
        metadata = {k: v for k, v in metadata.items() if k not in names.BLOB_NOTES}
        staged = await self._staged_copy(source, who.uid, sealing[1])
        try:
            return await self._land(
                who,
                acl,
                (entry, replaced),
                lambda: self.objects.replace(entry, staged, who.uid, metadata, expects, seal),
                expects,
            )
        except BaseException:
            self._discard(staged)
            raise

    async def _staged_copy(self, source: Entry, uid: int, key: bytes | None) -> Staging:
        """A copy of `source`'s content in staging, for a copy sealed otherwise."""
        reader = await object_versions.open_version(self, source, uid, key)
        try:
            assert reader.fh is not None
            return await self._data.stage(self.objects.get(reader.fh).blob)
        finally:
            await reader.close()

    async def _target(
        self, who: Identity, bucket: Entry, acl: Acl, parts: list[str]
    ) -> tuple[Entry, int | None]:
        """The object a new version goes to: the existing one at the key, which `who` must
        be allowed to write, or a new one (made, as the directories it needs); and the
        inode of the file whose name a new one takes, if that file has other names."""
        for _ in range(RETRIES_WHILE_REMOVED):
            try:
                return await self._target_now(who, bucket, acl, parts)
            except Refused as refusal:
                # A failed PUT beside this one is removing a directory it made, which
                # this key needs: once that ends, the directory is made again (or kept).
                if refusal.reason is not Reason.VANISHED:
                    raise
                await trio.sleep(0.01)
        return await self._target_now(who, bucket, acl, parts)

    async def _target_now(
        self, who: Identity, bucket: Entry, acl: Acl, parts: list[str]
    ) -> tuple[Entry, int | None]:
        key = "/".join(parts)
        parent = await self._directories(who, bucket, acl, parts[:-1], make=True)
        entry = await self.core.child(parent, names.raw(parts[-1]))
        if entry is None:
            self._require(who, acl, parent, W | X, bucket.name)
            try:
                entry = await self.core.new_object(parent, parts[-1], 0o644, who.uid, who.gid)
            except Refused as refusal:  # a PUT beside this one made it meanwhile
                if refusal.reason is not Reason.EXISTS:
                    raise
                return await self._target_now(who, bucket, acl, parts)
            await self.core.name_changed(parent, entry.name)
        elif entry.kind != "object":
            raise Refused(Reason.IS_DIRECTORY, None, f"{key!r} is a directory or not an object")
        elif entry.links > 1:
            # One name of a file that has several (hard links): a new object takes that
            # name alone, as an editor's atomic save does; the file keeps its other names.
            self._require(who, acl, parent, W | X, bucket.name)
            name, replaced = entry.name, entry.kernel_inode
            entry = await self.core.new_object(parent, name, 0o644, who.uid, who.gid, entry)
            await self.core.name_changed(parent, name)
            return entry, replaced
        else:
            self._require(who, acl, entry, W, bucket.name)  # as an open with O_TRUNC asks
        return entry, None

    async def _receive(self, body: AsyncIterator[bytes], path: Path | None = None) -> Staging:
        """The whole body, staged: in memory while small, then in a staging file (or at
        `path`), its digests computed as it arrives; pieces are gathered to a MiB for each
        write in a thread."""
        staged = await self._data.stage(None)
        pending = bytearray()
        try:
            async for chunk in body:
                check_object_size(staged.size + len(pending) + len(chunk))
                _RECEIVED.inc(len(chunk))
                small = staged.memory is not None and staged.size + len(chunk) <= MEMORY_STAGING
                if small and not pending:
                    staged.write(staged.size, chunk)
                    continue
                pending += chunk
                if len(pending) >= RECEIVE_PIECE:
                    await self._write_received(staged, pending, path)
                    pending = bytearray()
            if pending:
                await self._write_received(staged, pending, path)
        except BaseException:
            self._discard(staged)
            raise
        return staged

    async def _write_received(self, staged: Staging, data: bytearray, path: Path | None) -> None:
        def write() -> None:
            if staged.memory is not None:
                staged.spill(path or self._data.staging_path())
            staged.write(staged.size, bytes(data))

        await trio.to_thread.run_sync(write)

    @staticmethod
    def _discard(staged: Staging) -> None:
        staged.close()
        if staged.path is not None:
            staged.path.unlink(missing_ok=True)

    async def delete(self, who: Identity, bucket: str, key: str) -> None:
        """Remove the object (or empty directory) at `key`. A key that does not exist is
        no error, as in S3. The marker of a directory that still holds keys goes, and the
        directory stays for them as the prefix does in S3, until the last one goes."""
        bucket_entry, acl = await self.bucket(who, bucket)
        parts = names.key_parts(key)
        try:
            parent = await self._directories(who, bucket_entry, acl, parts[:-1], make=False)
        except Refused as refusal:
            if refusal.reason in (Reason.NO_SUCH_KEY, Reason.NOT_DIRECTORY):
                return
            raise
        entry = await self.core.child(parent, names.raw(parts[-1]))
        if entry is None or entry.is_dir != key.endswith("/"):
            return
        self._require(who, acl, parent, W | X, bucket)
        if parent.mode & stat.S_ISVTX and who.uid not in (0, entry.uid, parent.uid):
            self.core.deny(who, bucket, None, f"ownership of {key!r} in a sticky directory")
        if not await self.core.remove(entry):
            # The marker goes, the prefix stays while keys below it do, as in S3 (and
            # goes with the last one, which may have gone meanwhile).
            await self._meta.set_user_metadata(entry.inode, IMPLIED, b"")
            await self._prune(who, acl, entry)
            return
        await self.core.name_changed(parent, entry.name)
        await self._prune(who, acl, parent)

    async def _prune(self, who: Identity, acl: Acl, directory: Entry) -> None:
        """Remove the directories that PUTs made for keys below them and that hold nothing
        now: in S3 a prefix goes with its last key (DeleteBucket must find the bucket
        empty after `aws s3 rm --recursive`). Directories made as such (`mkdir`, a PUT of
        `dir/`) stay, as markers do in S3. Another request may prune the same
        directories at the same time (the DELETE of a marker beside that of the last key
        below it): what it removed first is pruned already."""
        try:
            while directory.kind == "dir":
                parent = await self.core.entry(directory.parent)
                if (
                    IMPLIED not in await self._meta.user_metadata(directory.inode)
                    or not self.iam.may(who, acl, parent, W | X)
                    or not await self.core.remove(directory)
                ):
                    return
                await self.core.name_changed(parent, directory.name)
                directory = parent
        except Refused as refusal:
            if refusal.reason is not self.core.vanished:
                raise

    # -- listing ------------------------------------------------------------------------

    async def list(
        self,
        who: Identity,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        limit: int = 1000,
    ) -> Listing:
        """Up to `limit` keys and common prefixes in S3's order after `after` (key_listing)."""
        bucket_entry, acl = await self.bucket(who, bucket, Permission.READ)
        listing = await KeyListing(self._meta, self.iam, who, acl).page(
            bucket_entry, prefix, delimiter, after, limit
        )
        for listed in listing.keys:
            await self.objects.etags.fill(listed.entry)
        return listing

    # -- resolving keys -------------------------------------------------------------------

    def _require(self, who: Identity, acl: Acl, entry: Entry, want: int, bucket: str) -> None:
        if not self.iam.may(who, acl, entry, want):
            bits = "".join(c for c, bit in (("r", R), ("w", W), ("x", X)) if want & bit)
            self.core.deny(who, bucket, None, f"{bits} on {entry.name!r}")

    async def _directories(
        self, who: Identity, bucket: Entry, acl: Acl, parts: Iterable[str], make: bool
    ) -> Entry:
        """The directory that `parts` name below the bucket, searchable all the way from
        the bucket; with `make`, missing directories are made (the caller must be allowed
        to)."""
        if make:  # what makes them writes below the bucket
            await self.core.check_writable(bucket)
        directory = bucket
        self._require(who, acl, bucket, X, bucket.name)
        for part in parts:
            found = await self.core.child(directory, names.raw(part))
            if found is None and make:
                self._require(who, acl, directory, W, bucket.name)
                found = await self._implied_directory(who, directory, part)
            if found is None:
                raise Refused(Reason.NO_SUCH_KEY, None, f"no directory {part!r}")
            if not found.is_dir:
                raise Refused(Reason.NOT_DIRECTORY, None, f"{part!r} is an object")
            self._require(who, acl, found, X, bucket.name)
            directory = found
        return directory

    async def _implied_directory(self, who: Identity, parent: Entry, name: str) -> Entry | None:
        """A directory made for a key below it, which goes again with the last key below
        it; or the entry that a request running beside this one made meanwhile. Its row
        goes in with the transaction that commits the key below it, so that a PUT is one
        step: a crash leaves all of it or none. (On a store that several hosts serve,
        another host may make the same directory meanwhile: the metadata store then puts
        the key in theirs.)"""
        made = self.core.new_entry(parent, name, "dir", 0o755, who.uid, who.gid)
        try:
            await self._meta.insert(made, deferred=True)
        except Refused as refusal:
            if refusal.reason is not Reason.EXISTS:
                raise
            return await self._meta.lookup(parent.inode, name)
        await self._meta.set_user_metadata(made.inode, IMPLIED, b"")
        await self.core.name_changed(parent, name)
        return made

    async def _existing(self, who: Identity, bucket: str, key: str) -> tuple[Entry, Acl]:
        bucket_entry, acl = await self.bucket(who, bucket)
        parts = names.key_parts(key)
        try:
            parent = await self._directories(who, bucket_entry, acl, parts[:-1], make=False)
        except Refused as refusal:
            if refusal.reason is not Reason.NOT_DIRECTORY:
                raise
            # A key below an object is a key that does not exist, as in S3.
            raise Refused(Reason.NO_SUCH_KEY, None, f"no key {key!r}") from None
        entry = await self.core.child(parent, names.raw(parts[-1]))
        # Symlinks, FIFOs, sockets and device nodes have no content: they are not keys.
        if entry is None or entry.is_dir != key.endswith("/") or entry.kind not in KEY_KINDS:
            raise Refused(Reason.NO_SUCH_KEY, None, f"no key {key!r}")
        return entry, acl


KEY_KINDS = ("object", "dir")
