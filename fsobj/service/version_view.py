"""The versions of a versioned bucket's keys on the mount: a read-only tree at
`BUCKET/.fsobj-versions/`, which listings of the bucket never show. Below it each key's
path is a directory holding one file per version of that key, named by its version id
(the current one too; delete markers have no content and no file), with the version's
size and modification time; `ls`, `cat`, `cp` and `diff` read them as any file.

The name `.fsobj-versions` is reserved at the top of every bucket, on the mount and over
S3 (`names.VERSIONS_VIEW`), so the view cannot be confused with a real key. Its entries
are none of the namespace's: they take inode numbers from `FIRST_INODE` up, which the
store never hands out, and are made as they are looked up, for as long as the daemon runs.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from fsobj.metadata.archive import NULL, PastVersion
from fsobj.metadata.entries import Entry
from fsobj.refusals import Reason, Refused
from fsobj.service import names, versioning

if TYPE_CHECKING:
    from fsobj.service.core import Service

FIRST_INODE = 1 << 60
ALL = 1 << 30  # past versions read at once for one directory of the view


@dataclasses.dataclass(frozen=True, slots=True)
class _Node:
    bucket: int
    path: str  # the key, or the key prefix, below the view's top ("" for the top)
    version: str | None = None  # a version's file: its id


class VersionView:
    def __init__(self, core: Service):
        self.core = core
        self._inodes: dict[_Node, int] = {}
        self._nodes: dict[int, _Node] = {}

    @staticmethod
    def is_view(inode: int) -> bool:
        return inode >= FIRST_INODE

    def _inode(self, node: _Node) -> int:
        inode = self._inodes.get(node)
        if inode is None:
            inode = self._inodes[node] = FIRST_INODE + len(self._inodes)
            self._nodes[inode] = node
        return inode

    async def entry(self, inode: int) -> Entry:
        node = self._nodes.get(inode)
        if node is None:
            raise Refused(Reason.VANISHED, None, f"inode {inode} is no longer in the view")
        found = await self._entry(node)
        if found is None:
            raise Refused(Reason.VANISHED, None, f"version {node.version} is gone")
        return found

    async def top(self, bucket: Entry) -> Entry | None:
        """The view's top in `bucket`, if versioning was ever on there."""
        if await versioning.state(self.core, bucket) is None:
            return None
        return await self._entry(_Node(bucket.inode, ""))

    async def _entry(self, node: _Node) -> Entry | None:
        bucket = await self.core.entry(node.bucket)
        if node.version is None:
            parent = (
                bucket.inode if not node.path else self._inode(_Node(node.bucket, _up(node.path)))
            )
            name = node.path.rpartition("/")[2] or names.VERSIONS_VIEW
            return Entry(
                self._inode(node), parent, name, "dir", 0o555, bucket.uid, bucket.gid,
                bucket.atime_ns, bucket.mtime_ns, bucket.ctime_ns,
            )  # fmt: skip
        for version in await self._versions(bucket, node.path):
            if version.version_id == node.version:
                return self._file(node, version)
        return None

    def _file(self, node: _Node, version: Entry) -> Entry:
        """The file of a version, at `node`."""
        return dataclasses.replace(
            version,
            inode=self._inode(node),
            parent=self._inode(_Node(node.bucket, node.path)),
            name=node.version or NULL,
            file_inode=None,
            links=1,
        )

    async def child(self, parent: Entry, name: str) -> Entry | None:
        node = self._nodes[parent.inode]
        if node.version is not None:
            return None
        below = f"{node.path}/{name}" if node.path else name
        bucket = await self.core.entry(node.bucket)
        if node.path and any(v.version_id == name for v in await self._versions(bucket, node.path)):
            return await self._entry(_Node(node.bucket, node.path, name))
        if await self._has_versions(bucket, below):
            return await self._entry(_Node(node.bucket, below))
        return None

    async def children(self, directory: Entry) -> list[Entry]:
        """Everything in a directory of the view: the versions of its key, and the next
        names of the keys below it that have versions."""
        node = self._nodes[directory.inode]
        bucket = await self.core.entry(node.bucket)
        found: list[Entry] = []
        if node.path:
            for version in await self._versions(bucket, node.path):
                found.append(self._file(_Node(node.bucket, node.path, version.version_id), version))
        prefix = f"{node.path}/" if node.path else ""
        below = {v.key[len(prefix) :].partition("/")[0] for v in await self._past(bucket, prefix)}
        for name in sorted(below - {""}):
            entry = await self._entry(_Node(node.bucket, prefix + name))
            if entry is not None:
                found.append(entry)
        return found

    async def _versions(self, bucket: Entry, key: str) -> list[Entry]:
        """The versions of `key` that have content, as entries, the current one first.
        They may be read as the object now may (its mode bits, without write), or where
        it is gone only by their owner: a past version is no easier to read than its
        object."""
        found = []
        current = await versioning.current_object(self.core, bucket, key)
        mode = 0o400 if current is None else current.mode & 0o444
        if current is not None:
            version_id = versioning.version_id_of(current)
            found.append(dataclasses.replace(current, version_id=version_id, mode=mode))
        past = await self.core._meta.past_versions(bucket.inode, "", "", ALL, key=key)
        found += [
            dataclasses.replace(versioning.entry_of(bucket, v), mode=mode)
            for v in past
            if not v.is_marker
        ]
        return found

    async def _past(self, bucket: Entry, prefix: str) -> list[PastVersion]:
        return await self.core._meta.past_versions(bucket.inode, prefix, "", ALL)

    async def _has_versions(self, bucket: Entry, path: str) -> bool:
        if await self.core._meta.past_versions(bucket.inode, "", "", 1, key=path):
            return True
        return bool(await self.core._meta.past_versions(bucket.inode, f"{path}/", "", 1))


def _up(path: str) -> str:
    return path.rpartition("/")[0]
