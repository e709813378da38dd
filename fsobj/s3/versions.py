"""S3 versioning over HTTP: Get/PutBucketVersioning, ListObjectVersions, and the
`x-amz-version-id` and `x-amz-delete-marker` headers of the object operations (which
take `versionId`: objects.py). The object service keeps the versions
(service/object_versions.py)."""

from __future__ import annotations

from typing import Any

from fsobj.s3.app import Request, Response
from fsobj.s3.buckets import owner_id
from fsobj.s3.errors import S3Error
from fsobj.s3.wire import document, iso_time, key_encoder, max_keys, parse, quoted
from fsobj.service import Entry, versioning
from fsobj.service.object_versions import (
    Version,
    get_versioning,
    list_versions,
    set_versioning,
)
from fsobj.service.objects import ObjectService, etag_of

XML = {"content-type": "application/xml"}


async def version_header(request: Request, service: ObjectService, entry: Entry) -> dict:
    """`x-amz-version-id` of an object's current version, where its bucket has versioning."""
    bucket, _ = await service.bucket(request.who, request.bucket)
    if await versioning.state(service.core, bucket) is None:
        return {}
    return {"x-amz-version-id": versioning.version_id_of(entry)}


class Handlers:
    def __init__(self, service: ObjectService):
        self.service = service

    async def get(self, request: Request) -> Response:
        state = await get_versioning(self.service, request.who, request.bucket)
        fields = [("Status", state)] if state else []
        return Response(200, XML, document("VersioningConfiguration", *fields))

    async def put(self, request: Request) -> Response:
        root = parse(await request.read_xml_body())
        state = root.findtext("Status")
        if state is None and root.findtext("MfaDelete") is None:
            raise S3Error("MalformedXML", "a versioning configuration has a Status")
        if state not in ("Enabled", "Suspended"):
            raise S3Error("MalformedXML", "the versioning Status is Enabled or Suspended")
        if root.findtext("MfaDelete", "Disabled") != "Disabled":
            raise S3Error("NotImplemented", "MFA delete is not supported")
        await set_versioning(self.service, request.who, request.bucket, state)
        return Response(200)

    async def list(self, request: Request) -> Response:
        """ListObjectVersions."""
        params = request.params
        limit = max_keys(params)
        prefix, delimiter = params.get("prefix", ""), params.get("delimiter", "")
        key_marker = params.get("key-marker", "")
        version_marker = params.get("version-id-marker", "")
        if version_marker and not key_marker:
            raise S3Error("InvalidArgument", "a version-id-marker needs a key-marker")
        listing = await list_versions(
            self.service,
            request.who,
            request.bucket,
            prefix,
            delimiter,
            key_marker,
            version_marker,
            limit,
        )
        url = params.get("encoding-type") == "url"
        encode = key_encoder(params)

        fields: list[Any] = [
            ("Name", request.bucket),
            ("Prefix", encode(prefix)),
            ("KeyMarker", encode(key_marker)),
            ("VersionIdMarker", version_marker),
            ("Delimiter", encode(delimiter)) if delimiter else None,
            ("MaxKeys", limit),
            ("EncodingType", "url") if url else None,
            ("IsTruncated", listing.truncated),
        ]
        if listing.truncated:
            fields += [
                ("NextKeyMarker", encode(listing.next_key)),
                ("NextVersionIdMarker", listing.next_version) if listing.next_version else None,
            ]
        fields += [_version_document(version, encode) for version in listing.versions]
        fields += [("CommonPrefixes", [("Prefix", encode(p))]) for p in listing.prefixes]
        return Response(200, XML, document("ListVersionsResult", *fields))


def _version_document(version: Version, encode: Any) -> tuple[str, list[Any]]:
    owner = ("Owner", [("ID", owner_id(_uid(version)))])
    if version.past is not None and version.past.is_marker:
        return (
            "DeleteMarker",
            [
                ("Key", encode(version.key)),
                ("VersionId", version.version_id),
                ("IsLatest", version.latest),
                ("LastModified", iso_time(version.past.mtime_ns)),
                owner,
            ],
        )
    if version.entry is not None:
        mtime, size, etag = version.entry.mtime_ns, version.entry.size, etag_of(version.entry)
    else:
        assert version.past is not None
        mtime, size, etag = version.past.mtime_ns, version.past.size, version.past.etag or ""
    return (
        "Version",
        [
            ("Key", encode(version.key)),
            ("VersionId", version.version_id),
            ("IsLatest", version.latest),
            ("LastModified", iso_time(mtime)),
            ("ETag", quoted(etag)),
            ("Size", size),
            ("StorageClass", "STANDARD"),
            owner,
        ],
    )


def _uid(version: Version) -> int:
    if version.entry is not None:
        return version.entry.uid
    assert version.past is not None
    return version.past.uid
