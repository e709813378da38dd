"""POST Object: an upload from an HTML form (what `generate_presigned_post` prepares), a
`multipart/form-data` body whose fields come before the file. The form carries a policy
(base64 JSON: an expiration and conditions on the fields and the size) signed with an
access key; the upload acts as that key's user, or anonymously without one, and is then
an ordinary PUT. The file streams through: it is never held whole in memory."""

from __future__ import annotations

import base64
import binascii
import calendar
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from fsobj.iam.policy import NOBODY, Identity
from fsobj.s3 import sigv4
from fsobj.s3.app import Request, Response
from fsobj.s3.bucket_policy import weigh_as
from fsobj.s3.encryption import answer_headers, requested_seal
from fsobj.s3.errors import S3Error
from fsobj.s3.object_acl import CANNED_MODES
from fsobj.s3.objects import user_metadata
from fsobj.s3.versions import version_header
from fsobj.s3.wire import document, quoted
from fsobj.service import ownership
from fsobj.service.objects import ObjectService, etag_of

MAX_FIELD = 20 * 1024  # bytes of a field other than the file
# Fields that no condition needs to name (AWS's list).
UNCONDITIONED = {"policy", "x-amz-signature", "signature", "awsaccesskeyid", "file"}


class _Form:
    """A `multipart/form-data` body read as it arrives: its fields, then the file."""

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes):
        self._body = body
        self._delimiter = b"\r\n--" + boundary
        self._buffer = b"\r\n"  # the body opens with the first delimiter, without CRLF
        self.file_name = ""

    async def _more(self) -> None:
        piece = await anext(self._body, None)
        if piece is None:
            raise S3Error("MalformedPOSTRequest", "the form ends too early")
        self._buffer += piece

    async def _through(self, marker: bytes, most: int) -> bytes:
        while (found := self._buffer.find(marker)) < 0:
            if len(self._buffer) > most:
                raise S3Error("MalformedPOSTRequest", "a form field is too large")
            await self._more()
        taken, self._buffer = self._buffer[:found], self._buffer[found + len(marker) :]
        return taken

    async def fields(self) -> dict[str, str]:
        """The fields before the file (names in lowercase); the file's part is next."""
        await self._through(self._delimiter, MAX_FIELD)
        fields: dict[str, str] = {}
        while True:
            head = (await self._through(b"\r\n\r\n", MAX_FIELD)).decode("utf-8", "replace")
            disposition = next(
                (
                    line
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-disposition")
                ),
                "",
            )
            params = _disposition(disposition)
            name = params.get("name", "").lower()
            if name == "file":
                self.file_name = params.get("filename", "")
                return fields
            value = await self._through(self._delimiter, MAX_FIELD)
            fields[name] = value.decode("utf-8", "replace")

    async def file(self) -> AsyncIterator[bytes]:
        """The file's content, up to the delimiter that ends it (what follows is ignored,
        as S3 ignores fields after the file)."""
        keep = len(self._delimiter)
        while True:
            found = self._buffer.find(self._delimiter)
            if found >= 0:
                if found:
                    yield self._buffer[:found]
                return
            if len(self._buffer) > keep:
                piece, self._buffer = self._buffer[:-keep], self._buffer[-keep:]
                yield piece
            await self._more()


def _disposition(header: str) -> dict[str, str]:
    params = {}
    for item in header.split(";")[1:]:
        name, _, value = item.strip().partition("=")
        params[name.lower()] = value.strip().strip('"')
    return params


def _expires(text: str) -> float:
    try:
        return calendar.timegm(time.strptime(text.split(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        raise S3Error("InvalidPolicyDocument", "the policy's expiration is no date") from None


def _size_range(policy: dict[str, Any], fields: dict[str, str], bucket: str) -> tuple[int, int]:
    """Check every condition of the policy against the form; returns the size range it
    allows the file."""
    low, high = 0, 5 << 30
    named = {"bucket"}
    values = fields | {"bucket": bucket}
    for condition in policy.get("conditions", []):
        if isinstance(condition, dict) and len(condition) == 1:
            ((field, expected),) = condition.items()
            op, field = "eq", field.lower()
        elif isinstance(condition, list) and len(condition) == 3:
            op, field, expected = condition
            if op == "content-length-range":
                low, high = int(field), int(expected)
                continue
            field = str(field).lower().removeprefix("$")
        else:
            raise S3Error("InvalidPolicyDocument", f"a condition S3 would not take: {condition}")
        named.add(field)
        value = values.get(field, "")
        holds = value == expected if op == "eq" else value.startswith(str(expected))
        if op not in ("eq", "starts-with") or not holds:
            raise S3Error("AccessDenied", f"Invalid according to Policy: condition on {field!r}")
    loose = [f for f in fields if f not in named and f not in UNCONDITIONED]
    loose = [f for f in loose if not f.startswith("x-ignore-")]
    if loose:
        raise S3Error("AccessDenied", f"Invalid according to Policy: no condition on {loose[0]!r}")
    return low, high


async def _sized(content: AsyncIterator[bytes], low: int, high: int) -> AsyncIterator[bytes]:
    received = 0
    async for piece in content:
        received += len(piece)
        if received > high:
            raise S3Error("EntityTooLarge", "the file is larger than the policy allows")
        yield piece
    if received < low:
        raise S3Error("EntityTooSmall", "the file is smaller than the policy allows")


class Handlers:
    def __init__(self, service: ObjectService):
        self.service = service

    async def _signer(self, fields: dict[str, str]) -> Identity:
        """Who signed the form's policy (checked): with Signature Version 4, or 2 (what
        boto3 makes by default); the anonymous user without a signature."""
        policy = fields.get("policy", "").encode()
        if "x-amz-signature" in fields:
            parts = fields.get("x-amz-credential", "").split("/")
            if fields.get("x-amz-algorithm") != sigv4.ALGORITHM or len(parts) != 5:
                raise S3Error("InvalidArgument", "the form's credential or algorithm is malformed")
            secret, uid = await self._secret(parts[0])
            key = sigv4.signing_key(secret, parts[1], parts[2], parts[3])
            expected = hmac.new(key, policy, hashlib.sha256).hexdigest()
            signature = fields["x-amz-signature"]
        elif "signature" in fields:
            secret, uid = await self._secret(fields.get("awsaccesskeyid", ""))
            digest = hmac.new(secret.encode(), policy, hashlib.sha1).digest()
            expected, signature = base64.b64encode(digest).decode(), fields["signature"]
        else:
            if "policy" in fields:
                raise S3Error("InvalidArgument", "the form's policy is not signed")
            return Identity(NOBODY, NOBODY, 0)
        if not hmac.compare_digest(expected, signature):
            raise S3Error("SignatureDoesNotMatch", "the policy's signature does not match")
        return self.service.iam.identity_of_uid(uid)

    async def _secret(self, key_id: str) -> tuple[str, int]:
        known = await self.service.core.access_key(key_id)
        if known is None:
            raise S3Error("InvalidAccessKeyId", "no such access key")
        return known

    async def upload(self, request: Request) -> Response:
        kind, _, params = request.headers.get("content-type", "").partition(";")
        if kind.strip().lower() != "multipart/form-data":
            raise S3Error("PreconditionFailed", "a POST to a bucket is a multipart/form-data form")
        boundary = _disposition(";" + params).get("boundary", "")
        if not boundary:
            raise S3Error("MalformedPOSTRequest", "the form has no boundary")
        form = _Form(request.body, boundary.encode("latin-1"))
        fields = await form.fields()
        who = await self._signer(fields)
        low, high = 0, 5 << 30
        if "policy" in fields:
            try:
                policy = json.loads(base64.b64decode(fields["policy"], validate=True))
            except (ValueError, binascii.Error):
                raise S3Error("InvalidPolicyDocument", "the policy is no base64 JSON") from None
            if _expires(policy.get("expiration", "")) < time.time():
                raise S3Error("AccessDenied", "Invalid according to Policy: Policy expired.")
            low, high = _size_range(policy, fields, request.bucket)
        key = fields.get("key", "").replace("${filename}", form.file_name)
        if not key:
            raise S3Error("InvalidArgument", "the form names no key")
        weighed = await weigh_as(
            self.service, dataclasses.replace(request, who=who), "PutObject", key
        )
        who = weighed.who
        canned = fields.get("acl")
        if canned not in ownership.HARMLESS_ACLS and await ownership.acls_off(
            self.service, request.bucket
        ):
            raise S3Error("AccessControlListNotSupported", "the bucket does not allow ACLs")
        headers = {name: value for name, value in fields.items() if name.startswith("x-amz-meta-")}
        headers |= {h: fields[h] for h in ("content-disposition", "cache-control") if h in fields}
        entry = await self.service.put(
            who,
            request.bucket,
            key,
            _sized(form.file(), low, high),
            fields.get("content-type"),
            user_metadata(headers),
            seal=requested_seal(fields),  # a form's x-amz-server-side-encryption* fields
        )
        await ownership.settle(self.service, request.bucket, entry, canned)
        if canned is not None and canned != "bucket-owner-full-control":
            # A canned ACL on an object is its mode (object_acl.py).
            if canned not in CANNED_MODES:
                raise S3Error("InvalidArgument", f"canned ACL {canned!r} is not supported")
            await self.service.set_object_mode(who, request.bucket, key, CANNED_MODES[canned])
        etag = quoted(etag_of(entry))
        location = f"/{request.bucket}/{quote(key)}"
        answer = {"etag": etag, "location": location}
        answer |= await version_header(request, self.service, entry)
        answer |= answer_headers(await self.service.core.user_metadata(entry))
        redirect = fields.get("success_action_redirect") or fields.get("redirect")
        if redirect:
            joiner = "&" if "?" in redirect else "?"
            query = f"bucket={quote(request.bucket)}&key={quote(key)}&etag={quote(etag)}"
            return Response(303, answer | {"location": f"{redirect}{joiner}{query}"})
        status = fields.get("success_action_status", "204")
        if status == "201":
            body = document(
                "PostResponse",
                ("Location", location),
                ("Bucket", request.bucket),
                ("Key", key),
                ("ETag", etag),
            )
            return Response(201, answer | {"content-type": "application/xml"}, body)
        return Response(200 if status == "200" else 204, answer)
