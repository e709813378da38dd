"""Multipart uploads over the object service (S3's CreateMultipartUpload, UploadPart,
UploadPartCopy, ListParts, CompleteMultipartUpload, AbortMultipartUpload): parts are kept
on disk (uploads.py) until the upload completes, and then committed as one upload is.
Part of `ObjectService`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import trio

from fsobj.datastore.sealing import Seal
from fsobj.datastore.staging import Staging
from fsobj.iam.policy import Identity, Permission, X
from fsobj.metadata.entries import Expected
from fsobj.metadata.store import Entry
from fsobj.refusals import Reason, Refused
from fsobj.service import checksums, encryption, names
from fsobj.service.uploads import MAX_PARTS, MIN_PART, Part, Upload, Uploads, multipart_etag

if TYPE_CHECKING:
    from fsobj.service.objects import ObjectService


class MultipartUploads:
    """The multipart uploads of an `ObjectService` (its `multipart`)."""

    def __init__(self, service: ObjectService):
        self.service = service
        self.uploads = Uploads(service.core._data.root)

    async def create_upload(
        self,
        who: Identity,
        bucket: str,
        key: str,
        content_type: str | None,
        metadata: dict[str, bytes],
        seal: Seal | None = None,
        checksum: tuple[str, str | None] | None = None,
    ) -> Upload:
        """A new upload; `seal`: how its object is to be sealed (None: as the bucket
        says), kept as its metadata says it (a client's key itself is never kept: it comes
        again with each part and the completion); `checksum`: the S3 checksum algorithm
        the object is to keep, and its type (None: the algorithm's default)."""
        kept = None
        if checksum is not None:
            algorithm, kind = checksum
            allowed = checksums.types_of(algorithm)
            if kind is not None and kind not in allowed:
                raise Refused(Reason.INVALID, None, f"{algorithm} checksums are {allowed[0]}")
            kept = f"{algorithm} {kind or allowed[0]}"
        bucket_entry, acl = await self.service.bucket(who, bucket)
        seal = seal or await encryption.bucket_default(self.service.core, bucket_entry)
        metadata = {k: v for k, v in metadata.items() if k != names.ENCRYPTION}
        if (note := encryption.note(seal)) is not None:
            metadata[names.ENCRYPTION] = note
        names.key_parts(key)
        if key.endswith("/"):
            raise Refused(Reason.BAD_KEY, None, "a directory marker has no parts")
        self.service._require(who, acl, bucket_entry, X, bucket)
        return await trio.to_thread.run_sync(
            self.uploads.create, bucket, key, who.uid, content_type, metadata, kept
        )

    async def upload(
        self,
        who: Identity,
        bucket: str,
        key: str,
        upload_id: str,
        completed: bool = False,
    ) -> Upload:
        """An upload in progress (or, if `completed`, one completed already), which only
        its initiator (or an administrator) touches."""
        await self.service.bucket(who, bucket)
        upload = await trio.to_thread.run_sync(self.uploads.get, upload_id)
        if upload is None or upload.bucket != bucket or upload.key != key:
            raise Refused(Reason.NO_SUCH_UPLOAD, None, f"no upload {upload_id}")
        if upload.completed_etag is not None and not completed:
            raise Refused(Reason.NO_SUCH_UPLOAD, None, f"upload {upload_id} is completed")
        if who.uid != upload.uid and not self.service.iam.is_admin(who):
            self.service.core.deny(who, bucket, None, f"ownership of upload {upload_id}")
        return upload

    async def upload_part(
        self,
        who: Identity,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: AsyncIterator[bytes],
        customer_key: bytes | None = None,
        checksum: Callable[[], str | None] = lambda: None,
    ) -> str:
        """Receive part `number` to disk; returns its ETag (its MD5). An upload sealed
        with a client's key takes that key with each part. `checksum`, once the body is
        in: the S3 checksum it came with ("ALGORITHM VALUE"), which the part keeps."""
        if not 1 <= number <= MAX_PARTS:
            raise Refused(Reason.BAD_ARGUMENT, None, f"part numbers are 1 to {MAX_PARTS}")
        upload = await self.upload(who, bucket, key, upload_id)
        encryption.check_key(upload.metadata, customer_key)
        path = self.uploads.part_file(upload_id)
        staged = await self.service._receive(body, path)
        try:
            if staged.memory is not None:
                await trio.to_thread.run_sync(staged.spill, path)
            etag, sums = staged.digests()
            assert etag is not None  # received with its MD5 (`_receive`)
            staged.close()
            await trio.to_thread.run_sync(
                self.uploads.keep_part, upload_id, number, path, (etag, sums), checksum()
            )
        except BaseException:
            self.service._discard(staged)
            raise
        return etag

    async def upload_part_copy(
        self,
        who: Identity,
        target: tuple[str, str, str, int],
        source: tuple[str, str, str | None],
        span: tuple[int, int | None] | None,
        check: Callable[[Entry], None],
        keys: tuple[bytes | None, bytes | None] = (None, None),
    ) -> str:
        """A part copied from (a range of) an object: `target` is (bucket, key, upload id,
        part number), `source` (bucket, key, version or None), `span` the first and last
        byte or None; `keys`, the client's keys of the source and of the upload, where
        they are sealed with one."""
        reader = await self.service.open_reader(who, *source, customer_key=keys[0])
        try:
            check(reader.entry)
            first, last = span or (0, None)
            end = reader.size if last is None else last + 1
            if span is not None and not first < end <= reader.size:
                raise Refused(Reason.BAD_RANGE, None, "the copy range is outside the source")
            return await self.upload_part(who, *target, reader.chunks(first, end), keys[1])
        finally:
            await reader.close()

    async def parts(self, who: Identity, bucket: str, key: str, upload_id: str) -> list[Part]:
        await self.upload(who, bucket, key, upload_id)
        return await trio.to_thread.run_sync(self.uploads.parts, upload_id)

    async def complete_upload(
        self,
        who: Identity,
        bucket: str,
        key: str,
        upload_id: str,
        chosen: list[tuple[int, str]],
        expects: Expected | None = None,
        customer_key: bytes | None = None,
        sent: tuple[dict[int, str], str | None] = ({}, None),
    ) -> Entry:
        """Commit the chosen parts, in order, as the object's new version (durable before
        this returns), if the key then holds what `expects` says; the upload is gone once
        it is. Completed again (a retry whose answer was lost), it answers the object it
        made while the key still holds it. `sent`: the checksums the client gave of the
        parts (by number) and of the object, in the upload's algorithm, which must match."""
        upload = await self.upload(who, bucket, key, upload_id, completed=True)
        if upload.completed_etag is not None:
            entry = await self.service.head(who, bucket, key)
            if entry.etag != upload.completed_etag:
                raise Refused(Reason.NO_SUCH_UPLOAD, None, f"upload {upload_id} is completed")
            return entry
        encryption.check_key(upload.metadata, customer_key)
        sealed = encryption.of_object(upload.metadata)
        seal = None if sealed is None else Seal(customer_key)
        stored = {p.number: p for p in await trio.to_thread.run_sync(self.uploads.parts, upload_id)}
        numbers = [number for number, _ in chosen]
        if not numbers or numbers != sorted(set(numbers)):
            raise Refused(Reason.PART_ORDER, None, "parts must be listed in ascending order")
        for index, (number, etag) in enumerate(chosen):
            part = stored.get(number)
            if part is None or part.etag != etag.strip('"'):
                raise Refused(Reason.INVALID_PART, None, f"part {number} was not uploaded")
            if index < len(chosen) - 1 and part.size < MIN_PART:
                raise Refused(Reason.PART_TOO_SMALL, None, f"part {number} is under 5 MiB")
        staged = await trio.to_thread.run_sync(
            self.uploads.assemble, upload_id, numbers, self.service._data.staging_path()
        )
        staged.etag = multipart_etag([stored[n].etag for n in numbers])
        metadata = upload.metadata | {
            names.PARTS: ",".join(str(stored[n].size) for n in numbers).encode()
        }
        bucket_entry, acl = await self.service.bucket(who, bucket)
        try:
            if upload.checksum is not None:
                metadata[names.CHECKSUM] = await self._checksum(upload, numbers, staged, sent)
            entry = await self.service._commit(
                who,
                bucket_entry,
                acl,
                names.key_parts(key),
                staged,
                upload.content_type,
                metadata,
                expects,
                seal,
            )
        except BaseException:
            self.service._discard(staged)
            raise
        assert entry.etag is not None
        await trio.to_thread.run_sync(self.uploads.completed, upload_id, entry.etag)
        return entry

    async def _checksum(
        self,
        upload: Upload,
        numbers: list[int],
        staged: Staging,
        sent: tuple[dict[int, str], str | None],
    ) -> bytes:
        """The S3 checksum the object keeps ("ALGORITHM VALUE TYPE"): of its parts'
        checksums (composite) or of its content (full object)."""
        assert upload.checksum is not None
        algorithm, kind = upload.checksum.split()
        parts = [
            await trio.to_thread.run_sync(
                self.uploads.part_checksum, upload.upload_id, n, algorithm
            )
            for n in numbers
        ]
        for number, value in zip(numbers, parts, strict=True):
            given = sent[0].get(number)
            if given is not None and given != value:
                raise Refused(Reason.INVALID_PART, None, f"part {number} has another checksum")
        if kind == checksums.COMPOSITE:
            value = checksums.composite(algorithm, parts)
        else:
            assert staged.path is not None
            value = await trio.to_thread.run_sync(checksums.of_file, staged.path, algorithm)
        if sent[1] is not None and sent[1] != value:
            raise Refused(Reason.BAD_DIGEST, None, f"the object's {algorithm} checksum differs")
        return f"{algorithm} {value} {kind}".encode()

    async def abort_upload(self, who: Identity, bucket: str, key: str, upload_id: str) -> None:
        await self.upload(who, bucket, key, upload_id)
        await trio.to_thread.run_sync(self.uploads.remove, upload_id)

    async def list_uploads(self, who: Identity, bucket: str) -> list[Upload]:
        await self.service.bucket(who, bucket, Permission.READ)
        return [u for u in await trio.to_thread.run_sync(self.uploads.all) if u.bucket == bucket]
