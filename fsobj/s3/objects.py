"""S3's object operations: PutObject, GetObject and HeadObject (ranges, conditions,
response overrides), DeleteObject and DeleteObjects."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from fsobj.refusals import Refused
from fsobj.s3.app import Request, Response
from fsobj.s3.bucket_policy import weigh_as
from fsobj.s3.encryption import COPY_SOURCE, answer_headers, customer_key, requested_seal
from fsobj.s3.errors import S3Error, from_refusal
from fsobj.s3.object_lock import BYPASS, check_lock_items, lock_headers, lock_items
from fsobj.s3.versions import version_header
from fsobj.s3.wire import (
    document,
    header_value,
    http_time,
    iso_time,
    parse,
    parse_http_time,
    quoted,
    stored_value,
)
from fsobj.service import (
    Entry,
    Expected,
    PastVersion,
    encryption,
    names,
    object_versions,
    ownership,
)
from fsobj.service.objects import (
    CONTENT_HEADERS,
    ObjectService,
    Reader,
    etag_of,
)
from fsobj.service.uploads import MAX_PARTS

META = "x-amz-meta-"
MAX_DELETE_KEYS = 1000
WHOLE_BODY = 256 * 1024  # content up to this size is read, then sent in one message
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_MARKER = {"x-amz-delete-marker": "true"}


class Handlers:
    def __init__(self, service: ObjectService):
        self.service = service

    async def put(self, request: Request) -> Response:
        if "x-amz-copy-source" in request.headers:
            return await self._copy(request)
        metadata = user_metadata(request.headers) | lock_items(request.headers)
        await check_lock_items(self.service, request, metadata)
        entry = await self.service.put(
            request.who,
            request.bucket,
            request.key,
            _noting_checksum(request, metadata),
            request.headers.get("content-type"),
            metadata,
            write_conditions(request.headers),
            requested_seal(request.headers),
        )
        sealed = answer_headers(await self.service.core.user_metadata(entry))
        await ownership.settle(
            self.service, request.bucket, entry, request.headers.get("x-amz-acl")
        )
        version = await version_header(request, self.service, entry)
        sums = checksum_headers(metadata)  # the checksum it came with, as S3 answers it
        return Response(200, {"etag": quoted(etag_of(entry)), **version, **sums, **sealed})

    async def _copy(self, request: Request) -> Response:
        source_bucket, source_key, source_version = copy_source(request.headers)
        directive = request.headers.get("x-amz-metadata-directive", "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise S3Error("InvalidArgument", "x-amz-metadata-directive is COPY or REPLACE")
        tagging = request.headers.get("x-amz-tagging-directive", "COPY").upper()
        if tagging not in ("COPY", "REPLACE"):
            raise S3Error("InvalidArgument", "x-amz-tagging-directive is COPY or REPLACE")
        replace = None
        if directive == "REPLACE":
            replace = (request.headers.get("content-type"), user_metadata(request.headers))
        if directive != tagging:  # the tags come from where the metadata does not
            source, stored = await self.service.copy_source(
                request.who, source_bucket, source_key, source_version
            )
            if replace is None:  # the source's metadata, the request's tags
                kept = {name: value for name, value in stored.items() if name != names.TAGS}
                replace = (source.content_type, kept | tags_header(request.headers))
            else:  # the request's metadata, the source's tags
                replace[1].pop(names.TAGS, None)
                if names.TAGS in stored:
                    replace[1][names.TAGS] = stored[names.TAGS]
        check = copy_conditions(request.headers)
        await request.discard_body()  # a copy has no body of its own
        entry = await self.service.copy(
            request.who,
            (source_bucket, source_key, source_version),
            request.bucket,
            request.key,
            check,
            replace,
            write_conditions(request.headers),
            (requested_seal(request.headers), customer_key(request.headers, COPY_SOURCE)),
        )
        await ownership.settle(
            self.service, request.bucket, entry, request.headers.get("x-amz-acl")
        )
        body = document(
            "CopyObjectResult",
            ("LastModified", iso_time(entry.mtime_ns)),
            ("ETag", quoted(etag_of(entry))),
        )
        headers = {"content-type": "application/xml"}
        headers |= answer_headers(await self.service.core.user_metadata(entry))
        headers |= await version_header(request, self.service, entry)
        if source_version:
            headers["x-amz-copy-source-version-id"] = source_version
        return Response(200, headers, body)

    async def get(self, request: Request) -> Response:
        """GetObject, and HeadObject (the same answer without its body, and no reader)."""
        head = request.method == "HEAD"
        version = request.params.get("versionId")
        reader: Reader | None = None
        key = customer_key(request.headers)
        if version is not None:
            entry, metadata = await self.service.copy_source(
                request.who, request.bucket, request.key, version
            )
            if not head:
                reader = await object_versions.open_version(
                    self.service, entry, request.who.uid, key
                )
            version_id = {"x-amz-version-id": version}
        else:
            try:
                if head:
                    entry = await self.service.head(request.who, request.bucket, request.key)
                else:
                    reader = await self.service.open_reader(
                        request.who, request.bucket, request.key, customer_key=key
                    )
                    entry = reader.entry
            except Refused as refusal:
                raise await self._hidden(request, refusal) from None
            metadata = await self.service.core.user_metadata(entry)
            version_id = await version_header(request, self.service, entry)
        try:
            if entry.kind == "object":
                encryption.check_key(metadata, key)
            response = await self._answer(request, entry, reader, metadata)
            response.headers |= version_id
        except BaseException:
            if reader is not None:
                await reader.close()
            raise
        if reader is not None and not isinstance(response.body, _Stream):
            await reader.close()  # an answer without content: 304
        return response

    async def attributes(self, request: Request) -> Response:
        """GetObjectAttributes: what `x-amz-object-attributes` names, of the current
        version or of `versionId`'s."""
        wanted = {a.strip() for a in request.headers.get("x-amz-object-attributes", "").split(",")}
        if not wanted - {""}:
            raise S3Error("InvalidArgument", "x-amz-object-attributes names no attribute")
        version = request.params.get("versionId")
        try:
            entry, metadata = await self.service.copy_source(
                request.who, request.bucket, request.key, version
            )
        except Refused as refusal:
            raise await self._hidden(request, refusal) from None
        if entry.kind != "object":
            raise S3Error("NoSuchKey", "a directory has no attributes")
        etag = etag_of(entry)
        parts = etag.rpartition("-")[2] if "-" in etag else None
        kept = stored_checksum(metadata) if "Checksum" in wanted else None
        checksum = None
        if kept is not None:
            algorithm, value, kind = kept
            fields = [(f"Checksum{algorithm.upper()}", value), ("ChecksumType", kind)]
            checksum = ("Checksum", fields)
        body = document(
            "GetObjectAttributesResponse",
            ("ETag", etag) if "ETag" in wanted else None,
            checksum,
            _object_parts(request, metadata) if parts and "ObjectParts" in wanted else None,
            ("StorageClass", "STANDARD") if "StorageClass" in wanted else None,
            ("ObjectSize", entry.size) if "ObjectSize" in wanted else None,
        )
        headers = {"content-type": "application/xml", "last-modified": http_time(entry.mtime_ns)}
        if version is not None:
            headers["x-amz-version-id"] = version
        else:
            headers |= await version_header(request, self.service, entry)
        return Response(200, headers, body)

    async def _hidden(self, request: Request, refusal: Refused) -> S3Error:
        """The error for a key that is not there; where a delete marker hides it, with
        the marker's headers, as S3 answers."""
        error = from_refusal(refusal)
        if error.code == "NoSuchKey":
            bucket, _ = await self.service.bucket(request.who, request.bucket)
            marker = await object_versions.hiding_marker(self.service, bucket, request.key)
            if marker is not None:
                error.headers = {"x-amz-version-id": marker} | _MARKER
        return error

    async def _answer(
        self, request: Request, entry: Entry, reader: Reader | None, metadata: dict[str, bytes]
    ) -> Response:
        size = entry.size if entry.kind == "object" else 0
        # Again: the mount may have committed a new version since the lookup filled it.
        await self.service.objects.etags.fill(entry)
        etag = etag_of(entry)
        headers = {
            "etag": quoted(etag),
            "last-modified": http_time(entry.mtime_ns),
            "accept-ranges": "bytes",
            "content-type": entry.content_type or "application/octet-stream",
        }
        for name, stored in metadata.items():
            if name == names.TAGS:
                headers["x-amz-tagging-count"] = str(len(names.parse_tags(stored)))
            elif not name.startswith("fsobj."):
                headers[META + name] = header_value(stored)
            elif name[len("fsobj.") :] in CONTENT_HEADERS:
                headers[name[len("fsobj.") :]] = header_value(stored)
        headers |= lock_headers(metadata) | answer_headers(metadata)
        status = _preconditions(request.headers, etag, entry.mtime_ns / 1e9)
        if status is not None:
            if status == 412:
                raise S3Error("PreconditionFailed", "a precondition does not hold")
            return Response(304, {k: headers[k] for k in ("etag", "last-modified")})
        for name, value in request.params.items():
            if name.startswith("response-"):
                headers[name[len("response-") :]] = value
        start, end, status = 0, size, 200
        part = _part(request.params.get("partNumber"), size, metadata)
        if part is not None:
            if "range" in request.headers:
                raise S3Error("InvalidRequest", "a GET names a range or a part, not both")
            start, end, count = part
            if count is not None:
                headers["x-amz-mp-parts-count"] = str(count)
            if end > start:
                status = 206
                headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
        elif "range" in request.headers:
            chosen = _range(request.headers["range"], size)
            if chosen is not None:
                start, end = chosen
                status = 206
                headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
        if status == 200 and request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            headers |= checksum_headers(metadata)
        headers["content-length"] = str(end - start)
        if reader is None:
            return Response(status, headers)
        if end - start <= WHOLE_BODY:  # one message: for small objects, half the work
            return Response(status, headers, b"".join([p async for p in reader.chunks(start, end)]))
        return Response(status, headers, _Stream(reader, start, end))

    async def delete(self, request: Request) -> Response:
        headers = request.headers
        condition = (
            headers.get("if-match"),
            headers.get("x-amz-if-match-last-modified-time"),
            headers.get("x-amz-if-match-size"),
        )
        said = await self._delete(request, request.key, request.params.get("versionId"), condition)
        return Response(204, said)

    async def _delete(
        self,
        request: Request,
        key: str,
        version: str | None,
        condition: tuple[str | None, str | None, str | None] = (None, None, None),
    ) -> dict[str, str]:
        """Remove a key (in a versioned bucket: a delete marker hides it) or one version
        of it, if what it holds matches `condition` (ETag, last-modified time, size: S3's
        If-Match, x-amz-if-match-last-modified-time and -size); what S3 says of it:
        whether a delete marker was made or removed, its id."""
        service, who = self.service, request.who
        if any(value is not None for value in condition):
            await self._check_delete(request, key, version, condition)
        if version is not None:
            bypass = request.headers.get(BYPASS, "").lower() == "true"
            marker = await object_versions.delete_version(
                service, who, request.bucket, key, version, bypass
            )
            return {"x-amz-version-id": version} | (_MARKER if marker else {})
        made = await object_versions.delete_key(service, who, request.bucket, key)
        return {} if made is None else {"x-amz-version-id": made} | _MARKER

    async def _check_delete(
        self,
        request: Request,
        key: str,
        version: str | None,
        condition: tuple[str | None, str | None, str | None],
    ) -> None:
        """PreconditionFailed unless the object (or version) holds what `condition` says.
        Checked before the removal, not in its transaction: a change that lands between
        the two is removed too (docs/s3.md)."""
        if version is not None:
            found = await object_versions.find(
                self.service, request.who, request.bucket, key, version, False
            )
            held: Entry | PastVersion | None = found.current or found.past
            assert held is not None
        else:
            held = await self.service.head(request.who, request.bucket, key)
        etag, modified_ns, size = held.etag or "", held.mtime_ns, held.size
        match, modified, expected_size = condition
        if match is not None and _preconditions({"if-match": match}, etag, 0) == 412:
            raise S3Error("PreconditionFailed", "the object's ETag is another (If-Match)")
        if modified is not None and parse_http_time(modified) != int(modified_ns // 1e9):
            raise S3Error("PreconditionFailed", "the object was modified at another time")
        if expected_size is not None and expected_size.strip() != str(size):
            raise S3Error("PreconditionFailed", "the object's size is another")

    async def delete_many(self, request: Request) -> Response:
        root = parse(await request.read_xml_body())
        keys = [
            (
                node.findtext("Key", ""),
                node.findtext("VersionId"),
                (node.findtext("ETag"), node.findtext("LastModifiedTime"), node.findtext("Size")),
            )
            for node in root.iter("Object")
        ]
        if len(keys) > MAX_DELETE_KEYS:
            raise S3Error("MalformedXML", f"at most {MAX_DELETE_KEYS} keys per request")
        quiet = root.findtext("Quiet", "false").strip().lower() == "true"
        results: list[Any] = []
        for key, version, condition in keys:
            named = [("Key", key), ("VersionId", version) if version else None]
            try:
                action = "DeleteObject" if version is None else "DeleteObjectVersion"
                weighed = await weigh_as(self.service, request, action, key)
                said = await self._delete(weighed, key, version, condition)
            except (Refused, S3Error) as failure:
                error = from_refusal(failure) if isinstance(failure, Refused) else failure
                results.append(
                    ("Error", [*named, ("Code", error.code), ("Message", error.message)])
                )
                continue
            if not quiet:
                if said.get("x-amz-delete-marker"):
                    named += [("DeleteMarker", "true")]
                    if not version:
                        named += [("DeleteMarkerVersionId", said["x-amz-version-id"])]
                results.append(("Deleted", named))
        return Response(
            200, {"content-type": "application/xml"}, document("DeleteResult", *results)
        )


def user_metadata(headers: dict[str, str]) -> dict[str, bytes]:
    """A request's `x-amz-meta-*` headers: the object's user metadata, as the mount's
    `user.*` attributes hold it (the bytes as sent); and the content headers S3 keeps
    with an object (`user.fsobj.HEADER` on the mount)."""
    metadata = {
        name[len(META) :]: stored_value(value)
        for name, value in headers.items()
        if name.startswith(META)
    }
    if any(name.startswith("fsobj.") for name in metadata):
        # What fsobj keeps beside the metadata (retention, sealing, parts...) is its own.
        raise S3Error("InvalidArgument", "x-amz-meta-fsobj.* names are fsobj's own")
    names.check_user_metadata(metadata)
    for header in CONTENT_HEADERS:
        value = headers.get(header, "")
        if header == "content-encoding":  # how the body travelled, not what it is
            value = ",".join(v for v in value.split(",") if v.strip() not in ("aws-chunked", ""))
        if value:
            metadata[f"fsobj.{header}"] = stored_value(value)
    return metadata | tags_header(headers)


def tags_header(headers: dict[str, str]) -> dict[str, bytes]:
    """The tags that a request's `x-amz-tagging` header gives, as user metadata."""
    header = headers.get("x-amz-tagging")
    if header is None:
        return {}
    return {names.TAGS: names.tag_set(names.parse_tags(header.encode("latin-1")))}


def copy_source(headers: dict[str, str]) -> tuple[str, str, str | None]:
    """The bucket, key and version (None: the current one) that `x-amz-copy-source`
    names (BUCKET/KEY, with `?versionId=ID`)."""
    path, _, query = headers["x-amz-copy-source"].partition("?")
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    if not key:
        raise S3Error("InvalidArgument", "x-amz-copy-source is not BUCKET/KEY")
    version = dict(parse_qsl(query)).get("versionId") if query else None
    return bucket, key, version


def copy_conditions(headers: dict[str, str]) -> Callable[[Entry], None]:
    """What refuses a copy once its source is seen: `x-amz-copy-source-if-*`."""
    conditions = {
        name[len("x-amz-copy-source-") :]: value
        for name, value in headers.items()
        if name.startswith("x-amz-copy-source-if-")
    }

    def check(entry: Entry) -> None:
        if _preconditions(conditions, etag_of(entry), entry.mtime_ns / 1e9):
            raise S3Error("PreconditionFailed", "a copy-source condition does not hold")

    return check


class _Stream:
    """A GET's content: the reader's pinned version, from `start` to `end`; `aclose` lets
    the version go (the sender calls it however the answer ends)."""

    def __init__(self, reader: Reader, start: int, end: int):
        self.reader, self.start, self.end = reader, start, end

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.reader.chunks(self.start, self.end)

    async def aclose(self) -> None:
        await self.reader.close()


def _range(header: str, size: int) -> tuple[int, int] | None:
    """[start, end) of a `bytes=` range; None to send the whole object (a form S3 ignores,
    several ranges); InvalidRange when it starts past the end."""
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        count = int(last)
        if count == 0:
            raise S3Error("InvalidRange", "the range is not satisfiable")
        return max(size - count, 0), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise S3Error("InvalidRange", "the range is not satisfiable")
    return start, end


def _object_parts(request: Request, metadata: dict[str, bytes]) -> tuple[str, list]:
    """GetObjectAttributes' ObjectParts: how many, and a page of their sizes."""
    kept = metadata.get(names.PARTS, b"")
    sizes = [int(n) for n in kept.decode().split(",")] if kept else []
    try:
        most = int(request.headers.get("x-amz-max-parts", "1000"))
        after = int(request.headers.get("x-amz-part-number-marker", "0"))
    except ValueError:
        message = "x-amz-max-parts and x-amz-part-number-marker are numbers"
        raise S3Error("InvalidArgument", message) from None
    page = list(enumerate(sizes, 1))[after : after + most]
    fields: list = [("PartsCount", len(sizes)), ("PartNumberMarker", after), ("MaxParts", most)]
    fields.append(("IsTruncated", "true" if after + most < len(sizes) else "false"))
    if page and after + most < len(sizes):
        fields.append(("NextPartNumberMarker", page[-1][0]))
    fields += [("Part", [("PartNumber", n), ("Size", size)]) for n, size in page]
    return ("ObjectParts", fields)


def _part(
    asked: str | None, size: int, metadata: dict[str, bytes]
) -> tuple[int, int, int | None] | None:
    """The span of the part `asked` (GET and HEAD by partNumber), and how many parts the
    object has (None: it was not uploaded in parts, and its one part is all of it)."""
    if asked is None:
        return None
    try:
        number = int(asked)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PARTS:
        raise S3Error("InvalidArgument", f"partNumber is a number from 1 to {MAX_PARTS}")
    kept = metadata.get(names.PARTS)
    sizes = [int(n) for n in kept.decode().split(",")] if kept else [size]
    if number > len(sizes):
        raise S3Error("InvalidPartNumber", "the requested part number is not satisfiable")
    start = sum(sizes[: number - 1])
    return start, start + sizes[number - 1], len(sizes) if kept else None


def _preconditions(headers: dict[str, str], etag: str, modified: float) -> int | None:
    """304 or 412 when a condition fails, as S3 weighs them (RFC 7232 section 6)."""

    def matches(value: str) -> bool:
        tags = [t.strip().strip('"') for t in value.split(",")]
        return "*" in tags or etag in tags

    match = headers.get("if-match")
    if match is not None and not matches(match):
        return 412
    since = parse_http_time(headers.get("if-unmodified-since", ""))
    if match is None and since is not None and int(modified) > since:
        return 412
    none_match = headers.get("if-none-match")
    if none_match is not None and matches(none_match):
        return 304
    modified_since = parse_http_time(headers.get("if-modified-since", ""))
    if none_match is None and modified_since is not None and int(modified) <= modified_since:
        return 304
    return None


def write_conditions(headers: dict[str, str]) -> Expected | None:
    """What a write needs its key to hold when it lands (S3's conditional writes):
    `If-None-Match: *`, no object; `If-Match: ETAG`, that object."""
    none_match, match = headers.get("if-none-match"), headers.get("if-match")
    if none_match is not None:
        if none_match.strip() != "*":
            raise S3Error("NotImplemented", "If-None-Match on a write takes * alone")
        return Expected(absent=True)
    if match is not None:
        return Expected(etag=match.strip().strip('"'))
    return None


async def _noting_checksum(request: Request, metadata: dict[str, bytes]) -> AsyncIterator[bytes]:
    """The request's body; once it is all in (and checked), the checksum it came with
    joins `metadata`, which the commit that follows records with the content."""
    async for piece in request.body:
        yield piece
    if request.checksum is not None:
        value = request.checksum.value()
        metadata[names.CHECKSUM] = f"{request.checksum.algorithm} {value} FULL_OBJECT".encode()


def stored_checksum(metadata: dict[str, bytes]) -> tuple[str, str, str] | None:
    """The S3 checksum kept with an object's content: algorithm, value, type."""
    kept = metadata.get(names.CHECKSUM)
    if kept is None:
        return None
    algorithm, value, kind = kept.decode().split()
    return algorithm, value, kind


def checksum_headers(metadata: dict[str, bytes]) -> dict[str, str]:
    """What GET and HEAD answer of it with `x-amz-checksum-mode: ENABLED`."""
    kept = stored_checksum(metadata)
    if kept is None:
        return {}
    algorithm, value, kind = kept
    return {f"x-amz-checksum-{algorithm}": value, "x-amz-checksum-type": kind}
