"""Object lock over S3: Get/PutObjectLockConfiguration, Get/PutObjectRetention and
Get/PutObjectLegalHold (with `versionId`), the `x-amz-object-lock-*` headers of PUT and of
GET and HEAD, and CreateBucket's `x-amz-bucket-object-lock-enabled`. The rules are the
object service's (service/object_lock.py)."""

from __future__ import annotations

from typing import Any

from fsobj.iam.policy import Permission
from fsobj.s3.app import Request, Response
from fsobj.s3.errors import S3Error
from fsobj.s3.wire import document, parse
from fsobj.service import object_lock, object_versions, versioning
from fsobj.service.names import LEGAL_HOLD, RETENTION
from fsobj.service.object_lock import BucketLock, Retention
from fsobj.service.objects import ObjectService

XML = {"content-type": "application/xml"}
BYPASS = "x-amz-bypass-governance-retention"


def lock_items(headers: dict[str, str]) -> dict[str, bytes]:
    """The retention and legal hold a PUT's `x-amz-object-lock-*` headers give."""
    items: dict[str, bytes] = {}
    mode = headers.get("x-amz-object-lock-mode")
    until = headers.get("x-amz-object-lock-retain-until-date")
    if (mode is None) != (until is None):
        raise S3Error("InvalidArgument", "a retention needs both its mode and its date")
    if mode is not None and until is not None:
        items[RETENTION] = Retention.parse(f"{mode} {until}").text().encode()
    hold = headers.get("x-amz-object-lock-legal-hold")
    if hold is not None:
        if hold not in ("ON", "OFF"):
            raise S3Error("InvalidArgument", "a legal hold is ON or OFF")
        if hold == "ON":
            items[LEGAL_HOLD] = b"ON"
    return items


def lock_headers(metadata: dict[str, bytes]) -> dict[str, str]:
    """What GET and HEAD say of a version's object lock."""
    headers = {}
    retention = object_lock.retention_of(metadata)
    if retention is not None:
        headers["x-amz-object-lock-mode"] = retention.mode
        headers["x-amz-object-lock-retain-until-date"] = retention.until()
    if LEGAL_HOLD in metadata:
        headers["x-amz-object-lock-legal-hold"] = "ON"
    return headers


async def check_lock_items(
    service: ObjectService, request: Request, items: dict[str, bytes]
) -> None:
    """Object lock headers are for buckets with object lock (InvalidRequest otherwise)."""
    if RETENTION in items or LEGAL_HOLD in items:
        bucket, _ = await service.bucket(request.who, request.bucket)
        if await object_lock.bucket_lock(service.core, bucket) is None:
            raise S3Error("InvalidRequest", "the bucket has no object lock")


class Handlers:
    def __init__(self, service: ObjectService):
        self.service = service

    async def get_configuration(self, request: Request) -> Response:
        bucket, _ = await self.service.bucket(request.who, request.bucket, Permission.READ_ACP)
        lock = await object_lock.bucket_lock(self.service.core, bucket)
        if lock is None:
            raise S3Error("ObjectLockConfigurationNotFoundError", "the bucket has no object lock")
        fields: list[Any] = [("ObjectLockEnabled", "Enabled")]
        if lock.mode is not None:
            period = ("Days", lock.days) if lock.days is not None else ("Years", lock.years)
            fields.append(("Rule", [("DefaultRetention", [("Mode", lock.mode), period])]))
        return Response(200, XML, document("ObjectLockConfiguration", *fields))

    async def put_configuration(self, request: Request) -> Response:
        root = parse(await request.read_xml_body())
        if root.findtext("ObjectLockEnabled") != "Enabled":
            raise S3Error("MalformedXML", "ObjectLockEnabled is Enabled")
        default = root.find("Rule/DefaultRetention")
        lock = BucketLock()
        if default is not None:
            days, years = default.findtext("Days"), default.findtext("Years")
            try:
                lock = BucketLock(
                    default.findtext("Mode"),
                    int(days) if days is not None else None,
                    int(years) if years is not None else None,
                )
            except ValueError:
                raise S3Error("MalformedXML", "a retention period is a number") from None
        bucket, _ = await self.service.bucket(request.who, request.bucket, Permission.WRITE_ACP)
        await object_lock.set_bucket_lock(self.service.core, bucket, lock)
        return Response(200)

    async def get_retention(self, request: Request) -> Response:
        items = await self._items(request)
        retention = object_lock.retention_of(items)
        if retention is None:
            raise S3Error("NoSuchObjectLockConfiguration", "the version has no retention")
        body = document(
            "Retention", ("Mode", retention.mode), ("RetainUntilDate", retention.until())
        )
        return Response(200, XML, body)

    async def put_retention(self, request: Request) -> Response:
        root = parse(await request.read_xml_body())
        mode, until = root.findtext("Mode"), root.findtext("RetainUntilDate")
        new = None if mode is None and until is None else Retention.parse(f"{mode} {until}")
        bypass = request.headers.get(BYPASS, "").lower() == "true"
        who = request.who

        def check(items: dict[str, bytes], owner: int) -> None:
            object_lock.check_retention_change(items, new, who, owner, bypass)

        await self._set(request, RETENTION, check, None if new is None else new.text().encode())
        return Response(200)

    async def get_legal_hold(self, request: Request) -> Response:
        items = await self._items(request)
        status = "ON" if object_lock.legal_hold_of(items) else "OFF"
        return Response(200, XML, document("LegalHold", ("Status", status)))

    async def put_legal_hold(self, request: Request) -> Response:
        status = parse(await request.read_xml_body()).findtext("Status")
        if status not in ("ON", "OFF"):
            raise S3Error("MalformedXML", "a legal hold's Status is ON or OFF")
        value = b"ON" if status == "ON" else None
        await self._set(request, LEGAL_HOLD, lambda items, owner: None, value)
        return Response(200)

    async def _set(self, request: Request, item: str, check: Any, value: bytes | None) -> None:
        bucket, _ = await self.service.bucket(request.who, request.bucket)
        if await object_lock.bucket_lock(self.service.core, bucket) is None:
            raise S3Error("InvalidRequest", "the bucket has no object lock")
        named = (request.bucket, request.key, request.params.get("versionId"))
        service, who = self.service, request.who
        await object_versions.set_version_item(service, who, named, item, check, value)

    async def _items(self, request: Request) -> dict[str, bytes]:
        version = request.params.get("versionId")
        if version is None:
            entry = await self.service.head(request.who, request.bucket, request.key)
            version = versioning.version_id_of(entry)
        _, metadata = await self.service.copy_source(
            request.who, request.bucket, request.key, version
        )
        return metadata
