"""Metadata as extended attributes: the FUSE handlers that read and change metadata.

* `user.NAME`: user metadata (S3's `x-amz-meta-NAME`), at most 2 KiB per object;
* `user.fsobj.id`, `.etag`, `.content-type`, `.bucket`, `.key`: system metadata, read-only
  but for the content type;
* `user.fsobj.acl` on a bucket's directory: its ACL as text (READ_ACP to read,
  WRITE_ACP to change; the kernel also asks r or w on the directory, as for any user.*
  attribute); `fsobj acl` works through it;
* `system.posix_acl_access` on a bucket's directory: its grants as a POSIX ACL, which the
  kernel reads to check access and `getfacl`/`setfacl` use (posix_acl). Other entries
  have none: their mode bits decide.
* `user.fsobj.gc` on the mount's top directory: reading it runs garbage collection now
  and returns its report (administrators only); `fsobj gc MOUNT` works through it.
* `user.fsobj.stats` on the mount's top directory: what the daemon holds in memory, one
  `NAME VALUE` line each (administrators only); `fsobj stats MOUNT` prints it.
* `user.fsobj.usage` on a bucket's directory (to those who may list it), or on the
  mount's top directory (administrators, every bucket): what the bucket holds, a
  `BUCKET UID OBJECTS BYTES VERSIONS VERSION_BYTES` line per owner (the past versions of a
  versioned bucket apart); `fsobj bucket ls -l` and `fsobj du` read it.
* `user.fsobj.tags`: an object's tags (S3's tag set, as the `x-amz-tagging` header
  writes it: `key=value&...`, URL-encoded); settable and removable.
* `user.fsobj.clone` set on a directory: copy the tree, object or bucket named by the
  value (`SOURCE\0NAME`: SOURCE a path from the mount's top, NAME the copy's name in
  that directory) by metadata alone; `fsobj clone` works through it.
* `user.fsobj.snapshot` set on a bucket's directory: `create NAME` takes a snapshot of
  the bucket, the read-only bucket `BUCKET.NAME`; `rm NAME` removes it; a snapshot's
  `user.fsobj.snapshot-of` names its bucket; `fsobj snapshot` works through them.
* `user.fsobj.keys` on the mount's top directory: the S3 access keys, a `KEYID UID
  SECRET` line each; setting it to `create KEYID UID SECRET` or `rm KEYID` changes them
  (administrators only); `fsobj key` works through it.

None of the `user.fsobj.*` names is listed, so copying tools do not try to copy them.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from fsobj import measures
from fsobj.fuse.edge import request
from fsobj.fuse.kernel import FuseFrontEnd
from fsobj.fuse.xattr_names import (
    ACL,
    CLONE,
    CONTENT_TYPE,
    ENCRYPTION,
    GC,
    KEYS,
    LEGAL_HOLD,
    RESTORE,
    RETENTION,
    SNAPSHOT,
    SNAPSHOT_OF,
    STATS,
    SYSTEM_PREFIX,
    TAGS,
    USAGE,
    VERSIONING,
)
from fsobj.iam import posix_acl
from fsobj.iam.policy import AclError, Permission, parse_grants
from fsobj.refusals import Reason, Refused
from fsobj.service import (
    ROOT_INODE,
    Entry,
    copies,
    encryption,
    lifecycle,
    names,
    object_lock,
    usage,
    versioning,
)
from fsobj.service.objects import CONTENT_HEADERS, ObjectService

# The content headers (user metadata `fsobj.HEADER`) show here as `user.fsobj.HEADER`.
STORED_HEADERS = {f"{SYSTEM_PREFIX}{header}" for header in CONTENT_HEADERS}
LOCK_ITEMS = {RETENTION, LEGAL_HOLD}  # object lock: user.fsobj.ITEM is the item fsobj.ITEM
UNKEPT = ("security.", "trusted.")  # namespaces of which nothing is stored


class MetadataAttributes(FuseFrontEnd):
    """Extended-attribute handlers, part of `operations.Operations`."""

    async def _system_metadata(self, entry: Entry, bucket: Entry | None, name: str) -> str | None:
        field = name[len(SYSTEM_PREFIX) :]
        if field in ("bucket", "key"):
            if bucket is None:
                return None
            if field == "bucket":
                return bucket.name
            if bucket is entry:
                return None
            key = (await self.core.path_of(entry))[len(bucket.name) + 2 :]
            return key + "/" if entry.is_dir else key
        if field == "acl" and entry.kind == "bucket":
            return (await self.core.grants(entry)).to_text()
        if name == VERSIONING and entry.kind == "bucket":
            return await versioning.state(self.core, entry)
        if name == ENCRYPTION and entry.kind in ("bucket", "object"):
            return await encryption.described(self.core, entry)
        if name == SNAPSHOT_OF and entry.kind == "bucket":
            origin = (await self.core.user_metadata(entry)).get(names.SNAPSHOT_OF)
            return None if origin is None else origin.decode()
        if entry.kind != "object":
            return None
        if name in STORED_HEADERS or name == TAGS or name in LOCK_ITEMS:
            item = names.TAGS if name == TAGS else name[len("user.") :]
            stored = (await self.core.user_metadata(entry)).get(item)
            return None if stored is None else stored.decode("latin-1")
        if field == "etag":
            await self.core.objects.etags.fill(entry)
        fields = {"id": entry.object_id, "etag": entry.etag, "content-type": entry.content_type}
        if bucket is not None and await versioning.state(self.core, bucket) is not None:
            fields["version-id"] = versioning.version_id_of(entry)
        return fields.get(field)

    def stats(self) -> dict[str, int]:
        return self.core.stats() | {"forgotten_inodes": self.forgotten} | measures.totals()

    @request
    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        entry = await self.core.entry(inode)
        text = name.decode("utf-8", "replace")
        if text == posix_acl.ACCESS and entry.kind == "bucket":
            entries = await self.core.bucket_acl(entry)
            if not posix_acl.is_minimal(entries):
                return posix_acl.encode(entries)
        if text.startswith(UNKEPT):
            # Not "none here" but "none kept at all", as setting one says: `ls -l` then
            # stops asking each file for its security.selinux label (coreutils keeps
            # that answer per filesystem), one request of the two it sends per file.
            raise Refused(Reason.UNKEPT_ATTRIBUTE, (entry, None), f"no {text} is kept")
        if not text.startswith("user."):
            raise Refused(Reason.NO_SUCH_ATTRIBUTE, (entry, None), f"no metadata {text}")
        if text == USAGE and entry.kind == "bucket":
            await self.core.require(ctx, entry, Permission.READ)
            return usage_lines({entry.name: await usage.of_bucket(self.core, entry)})
        if text in (GC, STATS, KEYS, USAGE) and entry.kind == "root":
            if not self.core.iam.is_admin(self.core.iam.identify(ctx)):
                raise Refused(Reason.DENIED, (entry, None), f"{text} is for administrators")
            if text == KEYS:
                keys = await self.core.change_keys(self.core.iam.identify(ctx), "")
                return "".join(f"{k} {uid} {secret}\n" for k, secret, uid, _ in keys).encode()
            if text == STATS:
                return "".join(f"{k} {v}\n" for k, v in self.stats().items()).encode()
            if text == USAGE:
                return usage_lines(await usage.of_store(self.core))
            await lifecycle.apply(ObjectService(self.core), self.core.lifecycle_day)
            return str(await self.core.collect_garbage()).encode()
        if text == ACL:
            await self.core.require(ctx, entry, Permission.READ_ACP)
        if text.startswith(SYSTEM_PREFIX):
            value = await self._system_metadata(entry, await self.core.bucket_of(entry), text)
            if value is None:
                raise Refused(Reason.NO_SUCH_ATTRIBUTE, (entry, None), f"no metadata {text}")
            return value.encode()
        found = (await self.core.user_metadata(entry)).get(text[len("user.") :])
        if found is None:
            raise Refused(Reason.NO_SUCH_ATTRIBUTE, (entry, None), f"no metadata {text}")
        return found

    @request
    async def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        entry = await self.core.entry(inode)
        names = [
            b"user." + key.encode()
            for key in await self.core.user_metadata(entry)
            if not key.startswith("fsobj.")
        ]
        if entry.kind == "bucket":
            entries = await self.core.bucket_acl(entry)
            if not posix_acl.is_minimal(entries):
                names.append(posix_acl.ACCESS.encode())
        return names

    async def _metadata_target(self, inode: int, name: bytes, ctx: Any) -> tuple[Entry, str]:
        """The entry and metadata name that a setxattr/removexattr changes, once allowed."""
        entry = await self.core.entry(inode)
        where = (entry, None)
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(Reason.INVALID, where, "metadata names must be UTF-8") from None
        if text in (posix_acl.ACCESS, posix_acl.DEFAULT):
            return entry, text
        if not text.startswith("user."):
            raise Refused(Reason.NOT_SUPPORTED, where, f"{text}: only user.* metadata is stored")
        if text == ACL:
            if entry.kind != "bucket":
                raise Refused(Reason.NOT_PERMITTED, where, "only buckets have an ACL")
            await self.core.require(ctx, entry, Permission.WRITE_ACP)
            return entry, text
        if (text == KEYS and entry.kind == "root") or (text == CLONE and entry.is_dir):
            return entry, text
        if text == SNAPSHOT and entry.kind == "bucket":
            return entry, text
        if text in (VERSIONING, ENCRYPTION) and entry.kind == "bucket":
            await self.core.require(ctx, entry, Permission.WRITE_ACP)
            return entry, text
        if text == RESTORE and entry.is_dir:
            return entry, text
        changeable = text in (CONTENT_TYPE, TAGS) or text in STORED_HEADERS | LOCK_ITEMS
        if text.startswith(SYSTEM_PREFIX) and not changeable:
            raise Refused(Reason.NOT_PERMITTED, where, f"{text} is read-only system metadata")
        if changeable and entry.kind != "object":
            raise Refused(Reason.NOT_PERMITTED, where, f"only objects have {text}")
        return entry, text

    @request
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        entry, text = await self._metadata_target(inode, name, ctx)
        where = (entry, None)
        if text in (posix_acl.ACCESS, posix_acl.DEFAULT):
            await self._set_posix_acl(entry, text, value)
            return
        if text == KEYS and entry.kind == "root":
            change = value.decode("ascii", "replace")
            try:
                await self.core.change_keys(self.core.iam.identify(ctx), change)
            except Refused as refusal:
                raise refusal.at(where) from None
            return
        if text == CLONE:
            await self._clone(entry, value, ctx)
            return
        if text == SNAPSHOT:
            await self._snapshot(entry, value, ctx)
            return
        if text in (VERSIONING, ENCRYPTION):  # a bucket's setting, given as a word
            setting = versioning.set_state if text == VERSIONING else encryption.set_default
            try:
                await setting(self.core, entry, value.decode("ascii", "replace"))
            except Refused as refusal:
                raise refusal.at(where) from None
            return
        if text == RESTORE:  # NAME, a NUL byte, and the version's id
            name, _, version = value.partition(b"\0")
            who = self.core.iam.identify(ctx)
            try:
                await versioning.restore(self.core, entry, name, version.decode(), who)
            except Refused as refusal:
                raise refusal.at((entry, name)) from None
            text = name.decode("utf-8", "replace")
            trio.lowlevel.spawn_system_task(self.kernel.name_changed, entry.inode, text)
            return
        if text in LOCK_ITEMS:
            await self._set_lock_item(entry, text, value, ctx)
            return
        if text == TAGS:
            try:
                tags = names.tag_set(names.parse_tags(value))
                await self.core.set_user_metadata(entry, names.TAGS, tags)
            except Refused as refusal:
                raise refusal.at(where) from None
            return
        if text == ACL:
            try:
                grants = parse_grants(value.decode("utf-8"))
            except (UnicodeDecodeError, AclError) as bad:
                raise Refused(Reason.INVALID, where, f"bad ACL: {bad}") from None
            await self.core.set_grants(entry, grants)
            return
        if text == CONTENT_TYPE:
            try:
                content_type = value.decode("ascii")
            except UnicodeDecodeError:
                raise Refused(Reason.INVALID, where, "content types are ASCII") from None
            await self.core.change_attributes(
                entry, content_type=content_type, ctime_ns=time.time_ns()
            )
            return
        try:
            await self.core.set_user_metadata(entry, text[len("user.") :], value)
        except Refused as refusal:
            raise refusal.at(where) from None

    @request
    async def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        entry, text = await self._metadata_target(inode, name, ctx)
        if text == posix_acl.ACCESS and entry.kind == "bucket":
            # What setfacl -b leaves: the directory's mode bits alone.
            await self.core.set_bucket_acl(
                entry, posix_acl.minimal(await self.core.bucket_acl(entry))
            )
            return
        if text in (posix_acl.ACCESS, posix_acl.DEFAULT):
            return  # none is stored: removing it leaves what there is
        if text == ACL:
            await self.core.set_grants(entry, ())
            return
        if text == CONTENT_TYPE:
            await self.core.change_attributes(entry, content_type=None)
            return
        if text in LOCK_ITEMS:
            await self._set_lock_item(entry, text, None, ctx)
            return
        item = names.TAGS if text == TAGS else text[len("user.") :]
        try:
            await self.core.set_user_metadata(entry, item, None)
        except Refused as refusal:
            raise refusal.at((entry, None)) from None

    async def _set_lock_item(self, entry: Entry, text: str, value: bytes | None, ctx: Any) -> None:
        who = self.core.iam.identify(ctx)
        try:
            await object_lock.set_lock_item(self.core, entry, text[len("user.") :], value, who)
        except Refused as refusal:
            raise refusal.at((entry, None)) from None

    async def _clone(self, parent: Entry, value: bytes, ctx: Any) -> None:
        """`fsobj clone`: the value names the source (a path from the mount's top) and the
        copy's name in `parent`, joined by a NUL byte."""
        source_path, _, name = value.partition(b"\0")
        source = await self.core.entry(ROOT_INODE)
        for part in (p for p in source_path.split(b"/") if p):
            source = await self.core.existing(source, part)
        who = self.core.iam.identify(ctx)
        await copies.clone(self.core, who, source, parent, name)
        # The kernel may remember that the name was missing; it holds the directory's lock
        # until this request is answered, so the name is dropped after that.
        text = name.decode("utf-8", "replace")
        trio.lowlevel.spawn_system_task(self.kernel.name_changed, parent.inode, text)

    async def _snapshot(self, bucket: Entry, value: bytes, ctx: Any) -> None:
        """`fsobj snapshot create|rm`: `create NAME` or `rm NAME`; the snapshot is the
        bucket `BUCKET.NAME`."""
        action, _, name = value.decode("utf-8", "replace").partition(" ")
        root = await self.core.entry(ROOT_INODE)
        snapshot_name = f"{bucket.name}.{name}"
        who = self.core.iam.identify(ctx)
        if action == "create":
            await copies.clone(self.core, who, bucket, root, snapshot_name.encode(), True)
        elif action == "rm":
            snapshot = await self.core.existing(root, snapshot_name.encode())
            origin = (await self.core.user_metadata(snapshot)).get(names.SNAPSHOT_OF)
            if origin != bucket.name.encode():
                raise Refused(Reason.NO_SUCH_KEY, (bucket, None), f"no snapshot {name}")
            await copies.remove_snapshot(self.core, who, snapshot)
        else:
            raise Refused(Reason.INVALID, (bucket, None), "create NAME or rm NAME")
        trio.lowlevel.spawn_system_task(self.kernel.name_changed, ROOT_INODE, snapshot_name)

    async def _set_posix_acl(self, entry: Entry, text: str, value: bytes) -> None:
        """setfacl: a bucket's access ACL becomes its grants; anywhere else, only an ACL
        that says no more than mode bits is accepted, and sets them (the kernel leaves
        that to the filesystem: `cp -a` copies modes this way)."""
        where = (entry, None)
        try:
            entries = posix_acl.decode(value)
        except ValueError as bad:
            raise Refused(Reason.INVALID, where, str(bad)) from None
        if entry.kind == "bucket" and text == posix_acl.ACCESS:
            await self.core.set_bucket_acl(entry, entries)
            return
        if not posix_acl.is_minimal(entries) or text == posix_acl.DEFAULT:
            raise Refused(
                Reason.NOT_SUPPORTED,
                where,
                "POSIX ACLs are stored for buckets only (their grants); inside, mode bits",
            )
        mode = entry.mode & ~0o777 | posix_acl.mode_of(entries)
        await self.core.change_attributes(entry, mode=mode, ctime_ns=time.time_ns())


def usage_lines(by_bucket: dict[str, list[usage.Usage]]) -> bytes:
    return "".join(
        f"{name} {row.uid} {row.objects} {row.bytes} {row.versions} {row.version_bytes}\n"
        for name, rows in by_bucket.items()
        for row in rows
    ).encode()
