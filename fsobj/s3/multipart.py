"""S3's multipart uploads: create, upload parts, complete, abort, list parts and uploads."""

from __future__ import annotations

import re
import time
from typing import Any

from fsobj.s3.app import Request, Response
from fsobj.s3.encryption import COPY_SOURCE, answer_headers, customer_key, requested_seal
from fsobj.s3.errors import S3Error
from fsobj.s3.objects import (
    copy_conditions,
    copy_source,
    stored_checksum,
    user_metadata,
    write_conditions,
)
from fsobj.s3.sigv4 import Checksum, checksum_of
from fsobj.s3.versions import version_header
from fsobj.s3.wire import document, iso_time, parse, quoted
from fsobj.service import ownership
from fsobj.service.objects import ObjectService, etag_of

XML = {"content-type": "application/xml"}
_COPY_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


class Handlers:
    def __init__(self, service: ObjectService):
        self.service = service

    async def create(self, request: Request) -> Response:
        upload = await self.service.multipart.create_upload(
            request.who,
            request.bucket,
            request.key,
            request.headers.get("content-type"),
            user_metadata(request.headers),
            requested_seal(request.headers),
            _checksum_asked(request.headers),
        )
        body = document(
            "InitiateMultipartUploadResult",
            ("Bucket", request.bucket),
            ("Key", request.key),
            ("UploadId", upload.upload_id),
        )
        headers = XML | answer_headers(upload.metadata)
        if upload.checksum is not None:
            algorithm, kind = upload.checksum.split()
            headers |= {"x-amz-checksum-algorithm": algorithm.upper(), "x-amz-checksum-type": kind}
        return Response(200, headers, body)

    async def upload_part(self, request: Request) -> Response:
        try:
            number = int(request.params["partNumber"])
        except ValueError:
            raise S3Error("InvalidArgument", "partNumber is not a number") from None
        if "x-amz-copy-source" in request.headers:
            return await self._copy_part(request, number)
        etag = await self.service.multipart.upload_part(
            request.who,
            request.bucket,
            request.key,
            request.params["uploadId"],
            number,
            request.body,
            customer_key(request.headers),
            lambda: _part_checksum(request),
        )
        headers = {"etag": quoted(etag)}
        if request.checksum is not None:  # as S3 answers it: the part's, checked
            headers[f"x-amz-checksum-{request.checksum.algorithm}"] = request.checksum.value()
        return Response(200, headers)

    async def _copy_part(self, request: Request, number: int) -> Response:
        await request.discard_body()  # a copy has no body of its own
        source = copy_source(request.headers)
        span = None
        if "x-amz-copy-source-range" in request.headers:
            match = _COPY_RANGE.fullmatch(request.headers["x-amz-copy-source-range"].strip())
            if match is None:
                raise S3Error("InvalidArgument", "x-amz-copy-source-range is bytes=FIRST-LAST")
            span = (int(match.group(1)), int(match.group(2)))
        target = (request.bucket, request.key, request.params["uploadId"], number)
        etag = await self.service.multipart.upload_part_copy(
            request.who,
            target,
            source,
            span,
            copy_conditions(request.headers),
            (customer_key(request.headers, COPY_SOURCE), customer_key(request.headers)),
        )
        body = document(
            "CopyPartResult", ("LastModified", iso_time(time.time_ns())), ("ETag", quoted(etag))
        )
        return Response(200, XML, body)

    async def complete(self, request: Request) -> Response:
        root = parse(await request.read_xml_body())
        chosen = []
        sent: dict[int, str] = {}
        for part in root.iter("Part"):
            try:
                number = int(part.findtext("PartNumber", ""))
            except ValueError:
                raise S3Error("MalformedXML", "a Part without a PartNumber") from None
            chosen.append((number, part.findtext("ETag", "")))
            for algorithm in Checksum.ALGORITHMS:
                value = part.findtext(f"Checksum{algorithm.upper()}")
                if value is not None:
                    sent[number] = value
        # The object's checksum, in the upload's algorithm (the body's is not checked).
        asked = checksum_of(request.headers)
        whole = asked.expected if asked is not None else None
        entry = await self.service.multipart.complete_upload(
            request.who,
            request.bucket,
            request.key,
            request.params["uploadId"],
            chosen,
            write_conditions(request.headers),
            customer_key(request.headers),
            (sent, whole),
        )
        await ownership.settle(self.service, request.bucket, entry, None)
        metadata = await self.service.core.user_metadata(entry)
        sealed = answer_headers(metadata)
        summed: list[Any] = []
        if (kept := stored_checksum(metadata)) is not None:
            algorithm, value, kind = kept
            summed = [(f"Checksum{algorithm.upper()}", value), ("ChecksumType", kind)]
        body = document(
            "CompleteMultipartUploadResult",
            ("Location", f"/{request.bucket}/{request.key}"),
            ("Bucket", request.bucket),
            ("Key", request.key),
            ("ETag", quoted(etag_of(entry))),
            *summed,
        )
        headers = XML | sealed | await version_header(request, self.service, entry)
        return Response(200, headers, body)

    async def abort(self, request: Request) -> Response:
        await self.service.multipart.abort_upload(
            request.who, request.bucket, request.key, request.params["uploadId"]
        )
        return Response(204)

    async def list_parts(self, request: Request) -> Response:
        upload_id = request.params["uploadId"]
        parts = await self.service.multipart.parts(
            request.who, request.bucket, request.key, upload_id
        )
        fields: list[Any] = [
            ("Bucket", request.bucket),
            ("Key", request.key),
            ("UploadId", upload_id),
            ("IsTruncated", False),
        ]
        fields += [
            (
                "Part",
                [
                    ("PartNumber", p.number),
                    ("LastModified", iso_time(p.modified_ns)),
                    ("ETag", quoted(p.etag)),
                    ("Size", p.size),
                    *_part_checksum_fields(p.checksum),
                ],
            )
            for p in parts
        ]
        return Response(200, XML, document("ListPartsResult", *fields))

    async def list_uploads(self, request: Request) -> Response:
        uploads = await self.service.multipart.list_uploads(request.who, request.bucket)
        fields: list[Any] = [("Bucket", request.bucket), ("IsTruncated", False)]
        fields += [
            (
                "Upload",
                [
                    ("Key", u.key),
                    ("UploadId", u.upload_id),
                    ("Initiated", iso_time(u.initiated_ns)),
                ],
            )
            for u in uploads
        ]
        return Response(200, XML, document("ListMultipartUploadsResult", *fields))


def _checksum_asked(headers: dict[str, str]) -> tuple[str, str | None] | None:
    """The checksum a new upload asks its object to keep: algorithm, and type if said."""
    algorithm = headers.get("x-amz-checksum-algorithm")
    if algorithm is None:
        return None
    if algorithm.lower() not in Checksum.ALGORITHMS:
        raise S3Error("InvalidRequest", f"checksum algorithm {algorithm} is not supported")
    kind = headers.get("x-amz-checksum-type")
    if kind is not None and kind.upper() not in ("COMPOSITE", "FULL_OBJECT"):
        raise S3Error("InvalidRequest", "x-amz-checksum-type is COMPOSITE or FULL_OBJECT")
    return algorithm.lower(), kind.upper() if kind else None


def _part_checksum(request: Request) -> str | None:
    """The S3 checksum a part came with, once it is all in (and checked)."""
    if request.checksum is None:
        return None
    return f"{request.checksum.algorithm} {request.checksum.value()}"


def _part_checksum_fields(checksum: str | None) -> list[tuple[str, str]]:
    if checksum is None:
        return []
    algorithm, value = checksum.split()
    return [(f"Checksum{algorithm.upper()}", value)]
