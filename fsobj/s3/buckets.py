"""S3's bucket operations: list, create, delete, head, location, ACL, and key listings."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fsobj.iam.policy import CANNED, NOBODY, Acl, AclError, Grant, Permission, parse_grants
from fsobj.s3.app import Request, Response
from fsobj.s3.bucket_policy import refuse_acl
from fsobj.s3.errors import S3Error
from fsobj.s3.wire import document, iso_time, key_encoder, max_keys, parse, quoted
from fsobj.service import object_lock, ownership, usage, versioning
from fsobj.service.objects import ObjectService, etag_of
from fsobj.service.usage import Usage

XML = {"content-type": "application/xml"}
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def _bucket_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _bucket_after(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, binascii.Error):
        raise S3Error("InvalidArgument", "not a continuation token of ListBuckets") from None


def owner_id(uid: int) -> str:
    """A uid as S3's canonical user id (docs/s3.md): `uid:N`."""
    return f"uid:{uid}"


class Handlers:
    def __init__(self, service: ObjectService):
        self.service = service

    async def list_buckets(self, request: Request) -> Response:
        if request.who.uid == NOBODY:
            raise S3Error("AccessDenied", "anonymous users cannot list buckets")
        params = request.params
        prefix = params.get("prefix", "")
        found = sorted(
            (b for b in await self.service.list_buckets(request.who) if b.name.startswith(prefix)),
            key=lambda b: b.name,
        )
        # Pages (max-buckets, continuation-token), as S3 has had them since 2024.
        after = (
            _bucket_after(params["continuation-token"]) if "continuation-token" in params else ""
        )
        found = [b for b in found if b.name > after]
        most = max_keys(params, "max-buckets", 10_000) or 10_000
        page, more = found[:most], len(found) > most
        body = document(
            "ListAllMyBucketsResult",
            ("Owner", [("ID", owner_id(request.who.uid)), ("DisplayName", request.who.uid)]),
            (
                "Buckets",
                [
                    (
                        "Bucket",
                        [
                            ("Name", b.name),
                            ("CreationDate", iso_time(b.created_ns)),
                            ("BucketRegion", "us-east-1"),
                        ],
                    )
                    for b in page
                ],
            ),
            ("ContinuationToken", _bucket_token(page[-1].name)) if more else None,
            ("Prefix", prefix) if "prefix" in params else None,
        )
        return Response(200, XML, body)

    async def create(self, request: Request) -> Response:
        canned = request.headers.get("x-amz-acl")
        if canned is not None and canned not in CANNED:
            raise S3Error("InvalidArgument", f"canned ACL {canned!r} is not supported")
        await request.read_xml_body()  # a CreateBucketConfiguration: the location is local
        entry = await self.service.create_bucket(request.who, request.bucket)
        if canned:
            await self.service.set_grants(request.who, request.bucket, CANNED[canned])
        rule = request.headers.get("x-amz-object-ownership")
        if rule is not None:
            await ownership.put(self.service, request.who, request.bucket, rule)
        if request.headers.get("x-amz-bucket-object-lock-enabled", "").lower() == "true":
            await versioning.set_state(self.service.core, entry, versioning.ENABLED)
            await object_lock.set_bucket_lock(self.service.core, entry, object_lock.BucketLock())
        return Response(200, {"location": f"/{request.bucket}"})

    async def delete(self, request: Request) -> Response:
        await self.service.delete_bucket(request.who, request.bucket)
        return Response(204)

    async def head(self, request: Request) -> Response:
        entry, _ = await self.service.bucket(request.who, request.bucket, Permission.READ)
        # What the bucket holds, where Ceph's RGW says it (X-RGW-Object-Count, -Bytes-Used):
        # S3 itself has no place for it but CloudWatch.
        held = Usage.total(await usage.of_bucket(self.service.core, entry))
        return Response(
            200,
            {
                "x-amz-bucket-region": "us-east-1",
                "x-fsobj-object-count": str(held.objects),
                "x-fsobj-bytes-used": str(held.bytes),
                "x-fsobj-version-count": str(held.versions),
                "x-fsobj-version-bytes-used": str(held.version_bytes),
            },
        )

    async def location(self, request: Request) -> Response:
        await self.service.bucket(request.who, request.bucket, Permission.READ)
        return Response(200, XML, document("LocationConstraint"))

    # -- ACLs ---------------------------------------------------------------------------

    async def get_acl(self, request: Request) -> Response:
        entry, _ = await self.service.bucket(request.who, request.bucket, Permission.READ_ACP)
        # The grants as set, public ones too (which Block Public Access may be ignoring).
        return Response(200, XML, acl_document(await self.service.core.grants(entry)))

    async def put_acl(self, request: Request) -> Response:
        canned = request.headers.get("x-amz-acl")
        body = await request.read_xml_body()
        await refuse_acl(self.service, request, grants=canned is None)
        if canned is not None:
            if canned not in CANNED:
                raise S3Error("InvalidArgument", f"canned ACL {canned!r} is not supported")
            grants = CANNED[canned]
        elif any(name.startswith("x-amz-grant-") for name in request.headers):
            grants = _header_grants(request.headers)
        elif body:
            grants = _xml_grants(body)
        else:
            raise S3Error("MalformedXML", "no ACL given")
        await self.service.set_grants(request.who, request.bucket, grants)
        return Response(200)

    # -- listing keys ---------------------------------------------------------------------

    async def list_objects(self, request: Request) -> Response:
        params = request.params
        version2 = params.get("list-type") == "2"
        limit = max_keys(params)
        prefix = params.get("prefix", "")
        delimiter = params.get("delimiter", "")
        if version2:
            token = params.get("continuation-token")
            after = _decode_token(token) if token else params.get("start-after", "")
        else:
            after = params.get("marker", "")
        listing = await self.service.list(
            request.who, request.bucket, prefix, delimiter, after, limit
        )
        url = params.get("encoding-type") == "url"
        encode = key_encoder(params)

        owner = not version2 or params.get("fetch-owner") == "true"
        contents = [
            (
                "Contents",
                [
                    ("Key", encode(item.key)),
                    ("LastModified", iso_time(item.entry.mtime_ns)),
                    ("ETag", quoted(etag_of(item.entry))),
                    ("Size", item.entry.size if item.entry.kind == "object" else 0),
                    ("StorageClass", "STANDARD"),
                    ("Owner", [("ID", owner_id(item.entry.uid))]) if owner else None,
                ],
            )
            for item in listing.keys
        ]
        prefixes = [("CommonPrefixes", [("Prefix", encode(p))]) for p in listing.prefixes]
        fields: list[Any] = [
            ("Name", request.bucket),
            ("Prefix", encode(prefix)),
            ("Delimiter", encode(delimiter)) if delimiter else None,
            ("MaxKeys", limit),
            ("EncodingType", "url") if url else None,
            ("IsTruncated", listing.truncated),
        ]
        if version2:
            fields += [
                ("KeyCount", len(listing.keys) + len(listing.prefixes)),
                ("ContinuationToken", params["continuation-token"])
                if "continuation-token" in params
                else None,
                ("StartAfter", encode(params["start-after"])) if "start-after" in params else None,
                ("NextContinuationToken", _token(listing.last)) if listing.truncated else None,
            ]
        else:
            fields += [
                ("Marker", encode(after)),
                ("NextMarker", encode(listing.last)) if listing.truncated and delimiter else None,
            ]
        return Response(200, XML, document("ListBucketResult", *fields, *contents, *prefixes))


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8", "surrogatepass")).decode()


def _decode_token(token: str) -> str:
    try:
        raw = base64.b64decode(token.encode(), altchars=b"-_", validate=True)
        return raw.decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error("InvalidArgument", "the continuation token is not valid") from None


def acl_document(acl: Acl) -> bytes:
    grants: list[Any] = [
        ("Grant", [_grantee_xml(f"uid:{acl.owner}"), ("Permission", "FULL_CONTROL")])
    ]
    grants += [
        ("Grant", [_grantee_xml(g.grantee), ("Permission", g.permission.value)]) for g in acl.grants
    ]
    return document(
        "AccessControlPolicy",
        ("Owner", [("ID", owner_id(acl.owner))]),
        ("AccessControlList", grants),
    )


def _grantee_xml(grantee: str) -> tuple[str, list]:
    # Grantees go without xsi:type: S3 clients read ID and URI alone.
    if grantee == "everyone":
        return ("Grantee", [("URI", ALL_USERS)])
    if grantee == "authenticated":
        return ("Grantee", [("URI", AUTHENTICATED_USERS)])
    return ("Grantee", [("ID", grantee)])


def _grantee_of(text: str) -> str:
    """A grantee as S3 names it (`id="uid:N"`, `uri="..."`, or a bare id or URI)."""
    text = text.strip()
    kind, _, value = text.partition("=")
    value = value.strip().strip('"') if value else kind
    if value == ALL_USERS:
        return "everyone"
    if value == AUTHENTICATED_USERS:
        return "authenticated"
    return value


def _checked(pairs: list[tuple[str, str]]) -> tuple[Grant, ...]:
    text = "".join(f"{grantee} {permission}\n" for grantee, permission in pairs)
    try:
        return parse_grants(text)
    except AclError as bad:
        raise S3Error("InvalidArgument", f"bad grant: {bad}") from None


def _header_grants(headers: dict[str, str]) -> tuple[Grant, ...]:
    pairs = []
    for permission in ("read", "write", "read-acp", "write-acp", "full-control"):
        for grantee in headers.get(f"x-amz-grant-{permission}", "").split(","):
            if grantee.strip():
                pairs.append((_grantee_of(grantee), permission.replace("-", "_").upper()))
    return _checked(pairs)


def _xml_grants(body: bytes) -> tuple[Grant, ...]:
    root = parse(body)
    pairs = []
    for grant in root.iter("Grant"):
        grantee = grant.find("Grantee")
        permission = grant.findtext("Permission", "")
        if grantee is None:
            raise S3Error("MalformedXML", "a Grant without a Grantee")
        name = grantee.findtext("ID") or grantee.findtext("URI") or ""
        if grantee.findtext("EmailAddress"):
            raise S3Error("NotImplemented", "grantees by e-mail address are not supported")
        pairs.append((_grantee_of(name), permission))
    # The owner's FULL_CONTROL is implied (docs/s3.md); it is not a grant to store.
    owner = root.findtext("Owner/ID")
    return tuple(g for g in _checked(pairs) if g.grantee != owner)
