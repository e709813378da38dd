"""The S3 HTTP front end: an ASGI application over the object service.

Each request is authenticated (sigv4), routed by method, path (path-style: /BUCKET/KEY)
and sub-resource, and answered by a handler in `buckets` or `objects`. Every refusal is
mapped once, here, to S3's error code and status (errors.py), with one log line naming
operation, path and reason; a bug answers InternalError with its traceback in the log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import unquote

from fsobj import measures
from fsobj.iam.policy import NOBODY, Identity
from fsobj.refusals import Refused
from fsobj.s3 import console, sigv4
from fsobj.s3.errors import S3Error, from_refusal
from fsobj.s3.wire import MAX_XML_BODY, error_document, iam_error_document
from fsobj.service import DamagedBlob
from fsobj.service.objects import ObjectService

log = logging.getLogger("fsobj.s3")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Stream(Protocol):
    """Content sent as it is read; `aclose` is called however the answer ends."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


Body = bytes | Stream

# Query parameters that only qualify a request; any other names a sub-resource.
PLAIN_PARAMETERS = {
    "continuation-token",
    "delimiter",
    "encoding-type",
    "fetch-owner",
    "list-type",
    "marker",
    "max-keys",
    "max-buckets",
    "bucket-region",
    "prefix",
    "start-after",
    "x-id",
    "key-marker",
    "version-id-marker",
    "versionId",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "AWSAccessKeyId",  # a presigned URL of Signature Version 2
    "Expires",
    "Signature",
}


@dataclasses.dataclass
class Request:
    method: str
    path: str  # decoded, for log lines and errors
    bucket: str
    key: str
    params: dict[str, str]
    headers: dict[str, str]
    who: Identity
    body: AsyncIterator[bytes]  # the payload, checked as it streams (sigv4.payload)
    source: str = ""  # the client's address
    # The x-amz-checksum the payload is checked against, its value once it is in.
    checksum: sigv4.Checksum | None = None

    @property
    def subresources(self) -> set[str]:
        return {
            name
            for name in self.params
            if name not in PLAIN_PARAMETERS and not name.startswith("X-Amz-")
        }

    async def discard_body(self) -> None:
        """Read the body (checking it as any) and drop it: a request that has none."""
        async for _ in self.body:
            pass

    async def read_xml_body(self) -> bytes:
        data = bytearray()
        async for piece in self.body:
            data += piece
            if len(data) > MAX_XML_BODY:
                raise S3Error("MalformedXML", "the XML body is too large")
        return bytes(data)


@dataclasses.dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: Body = b""


Handler = Callable[[Request], Awaitable[Response]]


class S3App:
    """ASGI application: S3 over `service`, with the access keys of its store."""

    def __init__(self, service: ObjectService):
        # built on Request, Response
        from fsobj.s3 import (
            access_keys,
            bucket_policy,
            buckets,
            cors,
            encryption,
            lifecycle,
            multipart,
            object_acl,
            object_lock,
            objects,
            post_object,
            tagging,
            versions,
        )

        self.service = service
        self.core = core = service.core
        self._secrets: dict[str, tuple[str, int]] = {}  # key id -> (secret, uid)
        self._key_changes = core.access_key_changes
        self._secrets_read = time.monotonic()
        on_bucket, on_object = buckets.Handlers(service), objects.Handlers(service)
        on_upload, on_acl = multipart.Handlers(service), object_acl.Handlers(service)
        on_tags, on_rules = tagging.Handlers(service), lifecycle.Handlers(service)
        on_versions, on_lock = versions.Handlers(service), object_lock.Handlers(service)
        on_keys = access_keys.Handlers(service)
        on_encryption = encryption.Handlers(service)
        self._cors = on_cors = cors.Handlers(service)
        on_form = post_object.Handlers(service)
        self._policy = on_policy = bucket_policy.Handlers(service)
        # (method, sub-resources) -> handler, for the service, a bucket and an object
        self._routes: dict[str, dict[tuple[str, frozenset[str]], Handler]] = {
            "service": {
                ("GET", frozenset()): on_bucket.list_buckets,
                ("POST", frozenset()): on_keys.act,  # IAM's query API
            },
            "bucket": {
                ("GET", frozenset()): on_bucket.list_objects,
                ("GET", frozenset({"location"})): on_bucket.location,
                ("GET", frozenset({"acl"})): on_bucket.get_acl,
                ("GET", frozenset({"cors"})): on_cors.get,
                ("PUT", frozenset({"cors"})): on_cors.put,
                ("DELETE", frozenset({"cors"})): on_cors.delete,
                ("GET", frozenset({"encryption"})): on_encryption.get,
                ("PUT", frozenset({"encryption"})): on_encryption.put,
                ("DELETE", frozenset({"encryption"})): on_encryption.delete,
                ("GET", frozenset({"policy"})): on_policy.get,
                ("PUT", frozenset({"policy"})): on_policy.put,
                ("DELETE", frozenset({"policy"})): on_policy.delete,
                ("GET", frozenset({"policyStatus"})): on_policy.status,
                ("GET", frozenset({"publicAccessBlock"})): on_policy.get_public_access_block,
                ("PUT", frozenset({"publicAccessBlock"})): on_policy.put_public_access_block,
                ("DELETE", frozenset({"publicAccessBlock"})): on_policy.delete_public_access_block,
                ("GET", frozenset({"ownershipControls"})): on_policy.get_ownership,
                ("PUT", frozenset({"ownershipControls"})): on_policy.put_ownership,
                ("DELETE", frozenset({"ownershipControls"})): on_policy.delete_ownership,
                ("PUT", frozenset()): on_bucket.create,
                ("PUT", frozenset({"acl"})): on_bucket.put_acl,
                ("DELETE", frozenset()): on_bucket.delete,
                ("HEAD", frozenset()): on_bucket.head,
                ("POST", frozenset({"delete"})): on_object.delete_many,
                ("POST", frozenset()): on_form.upload,  # POST Object, from a form
                ("GET", frozenset({"uploads"})): on_upload.list_uploads,
                ("GET", frozenset({"tagging"})): on_tags.get_bucket,
                ("PUT", frozenset({"tagging"})): on_tags.put_bucket,
                ("DELETE", frozenset({"tagging"})): on_tags.delete_bucket,
                ("GET", frozenset({"lifecycle"})): on_rules.get,
                ("PUT", frozenset({"lifecycle"})): on_rules.put,
                ("DELETE", frozenset({"lifecycle"})): on_rules.delete,
                ("GET", frozenset({"versioning"})): on_versions.get,
                ("PUT", frozenset({"versioning"})): on_versions.put,
                ("GET", frozenset({"versions"})): on_versions.list,
                ("GET", frozenset({"object-lock"})): on_lock.get_configuration,
                ("PUT", frozenset({"object-lock"})): on_lock.put_configuration,
            },
            "object": {
                ("GET", frozenset()): on_object.get,
                ("HEAD", frozenset()): on_object.get,
                ("GET", frozenset({"partNumber"})): on_object.get,  # one part of it
                ("HEAD", frozenset({"partNumber"})): on_object.get,
                ("GET", frozenset({"attributes"})): on_object.attributes,
                ("PUT", frozenset()): on_object.put,
                ("DELETE", frozenset()): on_object.delete,
                ("POST", frozenset({"uploads"})): on_upload.create,
                ("PUT", frozenset({"partNumber", "uploadId"})): on_upload.upload_part,
                ("POST", frozenset({"uploadId"})): on_upload.complete,
                ("DELETE", frozenset({"uploadId"})): on_upload.abort,
                ("GET", frozenset({"uploadId"})): on_upload.list_parts,
                ("GET", frozenset({"acl"})): on_acl.get,
                ("PUT", frozenset({"acl"})): on_acl.put,
                ("GET", frozenset({"tagging"})): on_tags.get,
                ("PUT", frozenset({"tagging"})): on_tags.put,
                ("DELETE", frozenset({"tagging"})): on_tags.delete,
                ("GET", frozenset({"retention"})): on_lock.get_retention,
                ("PUT", frozenset({"retention"})): on_lock.put_retention,
                ("GET", frozenset({"legal-hold"})): on_lock.get_legal_hold,
                ("PUT", frozenset({"legal-hold"})): on_lock.put_legal_hold,
            },
        }

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        request_id = uuid.uuid4().hex[:16].upper()
        method = scope["method"]
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = unquote(raw_path.decode("latin-1"), errors="surrogateescape")
        if method in ("GET", "HEAD") and (page := console.page(path)) is not None:
            await _send(send, Response(*page), request_id, head=method == "HEAD")
            return
        response: Response
        incoming = _Incoming(receive)
        start, operation = time.monotonic(), method
        headers = _headers(scope)
        try:
            if method == "OPTIONS":  # a browser's CORS preflight: unsigned
                response = await self._cors.preflight(path, headers)
            else:
                request = await self._request(scope, incoming, method, raw_path, path, headers)
                operation = _operation(request)
                handler = self._route(request)
                response = await handler(await self._policy.weigh(request))
        except S3Error as error:
            response = self._error(method, path, error, request_id)
        except Refused as refusal:
            response = self._error(method, path, from_refusal(refusal), request_id)
        except DamagedBlob as damage:
            log.error("%s %s failed: %s", method, path, damage)
            response = self._error(method, path, S3Error("InternalError", str(damage)), request_id)
        except OSError as failure:
            log.warning("%s %s failed: %s", method, path, failure)
            unavailable = S3Error("ServiceUnavailable", failure.strerror or str(failure))
            response = self._error(method, path, unavailable, request_id)
        except Exception:
            log.exception("%s %s failed unexpectedly", method, path)
            bug = S3Error("InternalError", "an internal error; the server's log has it")
            response = self._error(method, path, bug, request_id)
        bucket = path.lstrip("/").partition("/")[0]
        if "origin" in headers and bucket and method != "OPTIONS":
            with contextlib.suppress(Refused, OSError):  # the answer goes out regardless
                response.headers |= await self._cors.exposed(bucket, headers["origin"], method)
        measures.S3_SECONDS.labels(operation).observe(time.monotonic() - start)
        measures.S3_REQUESTS.labels(operation, str(response.status)).inc()
        if response.status >= 300:
            # A client answered before it sent its whole body reads the answer only once
            # it has: the rest is read and dropped (S3 does the same).
            await incoming.drain()
        await _send(send, response, request_id, head=method == "HEAD")

    def _error(self, method: str, path: str, error: S3Error, request_id: str) -> Response:
        if error.status < 500:
            log.info("%s %s refused (%s): %s", method, path, error.code, error.message)
        if method == "POST" and path == "/":
            body = iam_error_document(error, request_id)
        else:
            body = error_document(error, path, request_id)
        return Response(error.status, {"content-type": "application/xml", **error.headers}, body)

    async def _request(
        self,
        scope: dict[str, Any],
        incoming: _Incoming,
        method: str,
        raw_path: bytes,
        path: str,
        headers: dict[str, str],
    ) -> Request:
        query = sigv4.parse_query(scope.get("query_string", b""))
        await self._know_key(query, headers)
        arriving = incoming.body()
        if "x-amz-content-sha256" not in headers and "/iam/aws4_request" in headers.get(
            "authorization", ""
        ):
            # IAM's calls (access_keys.py) sign their form's hash without a header for it.
            form = bytearray()
            async for piece in arriving:
                form += piece
                if len(form) > MAX_XML_BODY:
                    raise S3Error("InvalidRequest", "the form is too large")
            headers["x-amz-content-sha256"] = hashlib.sha256(form).hexdigest()
            arriving = _replay(bytes(form))
        wire = sigv4.Wire(method, raw_path, query, headers)
        signed = sigv4.authenticate(wire, self._secret)
        if signed.key_id is None:
            who = Identity(NOBODY, NOBODY, 0)  # anonymous: `everyone` and no more
        else:
            who = self.service.iam.identity_of_uid(self._secrets[signed.key_id][1])
        bucket, _, key = path.lstrip("/").partition("/")
        # A completion's x-amz-checksum is the object's, not its XML body's.
        completing = method == "POST" and "uploadId" in dict(query)
        checksum = None if completing else sigv4.checksum_of(headers)
        body = sigv4.payload(signed, headers, arriving, checksum)
        source = (scope.get("client") or ("", 0))[0]
        return Request(method, path, bucket, key, dict(query), headers, who, body, source, checksum)

    async def _know_key(self, query: list[tuple[str, str]], headers: dict[str, str]) -> None:
        """Look up the access key a request names, unless known; forget every key known
        once one is removed (it must not act one request longer), and on a shared store,
        where other hosts remove keys, once they are older than its cache's timeout."""
        now = time.monotonic()
        core = self.core
        stale = core.shared and now - self._secrets_read >= core.fresh_seconds
        if stale or self._key_changes != core.access_key_changes:
            self._secrets, self._key_changes = {}, core.access_key_changes
            self._secrets_read = now
        params = dict(query)
        credential = params.get("X-Amz-Credential", "") or params.get("AWSAccessKeyId", "")
        if not credential:
            credential = headers.get("authorization", "").partition("Credential=")[2]
        key_id = credential.split("/", 1)[0]
        if key_id and key_id not in self._secrets:
            known = await core.access_key(key_id)
            if known is not None:
                if len(self._secrets) > 10_000:
                    self._secrets.clear()
                self._secrets[key_id] = known

    def _secret(self, key_id: str) -> str | None:
        known = self._secrets.get(key_id)
        return known[0] if known else None

    def _route(self, request: Request) -> Handler:
        if not request.bucket:
            routes = self._routes["service"]
        elif not request.key:
            routes = self._routes["bucket"]
        else:
            routes = self._routes["object"]
        method, sub = request.method, request.subresources
        handler = routes.get((method, frozenset(sub)))
        if handler is None:
            what = ", ".join(sorted(sub)) or "this request"
            raise S3Error("NotImplemented", f"{method} {what} is not implemented")
        return handler


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    """A request's headers, names in lowercase, repeated ones joined by commas."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    return headers


def _operation(request: Request) -> str:
    """A request's operation as metrics name it: the method, what it acts on and its
    sub-resources ("GET object", "PUT bucket?versioning")."""
    target = "object" if request.key else "bucket" if request.bucket else "service"
    sub = ",".join(sorted(request.subresources))
    return f"{request.method} {target}" + (f"?{sub}" if sub else "")


async def _replay(body: bytes) -> AsyncIterator[bytes]:
    yield body


class _Incoming:
    """A request's body as it arrives, and whether all of it has."""

    def __init__(self, receive: Receive):
        self._receive = receive
        self.ended = False

    async def body(self) -> AsyncIterator[bytes]:
        while not self.ended:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.ended = True
                raise S3Error("IncompleteBody", "the client went away before the body ended")
            self.ended = not message.get("more_body")
            if message.get("body"):
                yield message["body"]

    async def drain(self) -> None:
        with contextlib.suppress(S3Error):  # gone meanwhile: nothing to answer
            async for _ in self.body():
                pass


async def _send(send: Send, response: Response, request_id: str, head: bool) -> None:
    headers = {"x-amz-request-id": request_id, **response.headers}
    body = response.body
    if isinstance(body, bytes):
        headers.setdefault("content-length", str(len(body)))
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        }
    )
    if isinstance(body, bytes):
        await send({"type": "http.response.body", "body": b"" if head else body})
        return
    try:
        if not head:
            async for piece in body:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
    finally:
        await body.aclose()
    await send({"type": "http.response.body", "body": b""})
