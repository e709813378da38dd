"""Lifecycle configuration over S3: Get/Put/DeleteBucketLifecycleConfiguration (the rules
themselves: service/lifecycle.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from fsobj.s3.app import Request, Response
from fsobj.s3.errors import S3Error
from fsobj.s3.wire import document, parse
from fsobj.service import lifecycle
from fsobj.service.lifecycle import Rule
from fsobj.service.objects import ObjectService

XML = {"content-type": "application/xml"}


def _int(node: ET.Element, path: str) -> int | None:
    text = node.findtext(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise S3Error("MalformedXML", f"{path} is not a number") from None


def rule_of(node: ET.Element) -> Rule:
    status = node.findtext("Status", "")
    if status not in ("Enabled", "Disabled"):
        raise S3Error("MalformedXML", "a rule's Status is Enabled or Disabled")
    found = node.find("Filter")
    scope = found if found is not None else node  # the Prefix of a rule without Filter
    both = scope.find("And")
    if both is not None:
        scope = both
    marker = node.findtext("Expiration/ExpiredObjectDeleteMarker")
    return Rule(
        id=node.findtext("ID", ""),
        enabled=status == "Enabled",
        prefix=scope.findtext("Prefix", ""),
        tags=[(t.findtext("Key", ""), t.findtext("Value", "")) for t in scope.iter("Tag")],
        size_greater_than=_int(scope, "ObjectSizeGreaterThan"),
        size_less_than=_int(scope, "ObjectSizeLessThan"),
        expiration_days=_int(node, "Expiration/Days"),
        expiration_date=node.findtext("Expiration/Date"),
        expired_object_delete_marker=None if marker is None else marker.lower() == "true",
        noncurrent_days=_int(node, "NoncurrentVersionExpiration/NoncurrentDays"),
        newer_noncurrent_versions=_int(node, "NoncurrentVersionExpiration/NewerNoncurrentVersions"),
        abort_upload_days=_int(node, "AbortIncompleteMultipartUpload/DaysAfterInitiation"),
    )


def rule_document(rule: Rule) -> tuple[str, list[Any]]:
    conditions: list[Any] = [("Prefix", rule.prefix)] if rule.prefix else []
    conditions += [("Tag", [("Key", k), ("Value", v)]) for k, v in rule.tags]
    for name, value in (("ObjectSizeGreaterThan", rule.size_greater_than),
                        ("ObjectSizeLessThan", rule.size_less_than)):  # fmt: skip
        if value is not None:
            conditions.append((name, str(value)))
    if len(conditions) > 1:
        conditions = [("And", conditions)]
    parts: list[Any] = [("ID", rule.id)] if rule.id else []
    parts += [("Filter", conditions), ("Status", "Enabled" if rule.enabled else "Disabled")]
    expiration: list[Any] = []
    if rule.expiration_days is not None:
        expiration.append(("Days", str(rule.expiration_days)))
    if rule.expiration_date is not None:
        expiration.append(("Date", rule.expiration_date))
    if rule.expired_object_delete_marker is not None:
        expiration.append(
            ("ExpiredObjectDeleteMarker", str(rule.expired_object_delete_marker).lower())
        )
    if expiration:
        parts.append(("Expiration", expiration))
    if rule.noncurrent_days is not None:
        noncurrent: list[Any] = [("NoncurrentDays", str(rule.noncurrent_days))]
        if rule.newer_noncurrent_versions is not None:
            noncurrent.append(("NewerNoncurrentVersions", str(rule.newer_noncurrent_versions)))
        parts.append(("NoncurrentVersionExpiration", noncurrent))
    if rule.abort_upload_days is not None:
        days = [("DaysAfterInitiation", str(rule.abort_upload_days))]
        parts.append(("AbortIncompleteMultipartUpload", days))
    return ("Rule", parts)


class Handlers:
    def __init__(self, service: ObjectService):
        self.service = service

    async def get(self, request: Request) -> Response:
        rules = await lifecycle.rules_of(self.service, request.who, request.bucket)
        if rules is None:
            raise S3Error("NoSuchLifecycleConfiguration", "the bucket has no lifecycle rules")
        body = document("LifecycleConfiguration", *[rule_document(rule) for rule in rules])
        return Response(200, XML, body)

    async def put(self, request: Request) -> Response:
        root = parse(await request.read_xml_body())
        rules = [rule_of(node) for node in root.iter("Rule")]
        await lifecycle.set_rules(self.service, request.who, request.bucket, rules)
        return Response(200)

    async def delete(self, request: Request) -> Response:
        await lifecycle.set_rules(self.service, request.who, request.bucket, None)
        return Response(204)
