"""Bucket policies over S3: Get/Put/DeleteBucketPolicy, GetBucketPolicyStatus, and the
weighing of each request by its bucket's policy before its handler runs: the action S3
names it by, its resource, and the condition keys it carries (the rules themselves:
service/bucket_policy.py)."""

from __future__ import annotations

import dataclasses
import pwd

from fsobj.iam.policy import NOBODY
from fsobj.refusals import Refused
from fsobj.s3.app import Request, Response
from fsobj.s3.errors import S3Error
from fsobj.s3.wire import document, parse
from fsobj.service import bucket_policy, ownership, public_access
from fsobj.service.bucket_policy import Asked
from fsobj.service.objects import ObjectService
from fsobj.service.public_access import PublicAccessBlock

XML = {"content-type": "application/xml"}

# S3's action of each request: (method, bucket or object, sub-resource) -> action.
_ACTIONS = {
    ("GET", "object", ""): "GetObject",
    ("GET", "object", "partNumber"): "GetObject",
    ("HEAD", "object", "partNumber"): "GetObject",
    ("HEAD", "object", ""): "GetObject",
    ("PUT", "object", ""): "PutObject",
    ("DELETE", "object", ""): "DeleteObject",
    ("POST", "object", "uploads"): "PutObject",
    ("PUT", "object", "partNumber,uploadId"): "PutObject",
    ("POST", "object", "uploadId"): "PutObject",
    ("DELETE", "object", "uploadId"): "AbortMultipartUpload",
    ("GET", "object", "uploadId"): "ListMultipartUploadParts",
    ("GET", "object", "acl"): "GetObjectAcl",
    ("PUT", "object", "acl"): "PutObjectAcl",
    ("GET", "object", "tagging"): "GetObjectTagging",
    ("PUT", "object", "tagging"): "PutObjectTagging",
    ("DELETE", "object", "tagging"): "DeleteObjectTagging",
    ("GET", "object", "attributes"): "GetObjectAttributes",
    ("GET", "object", "retention"): "GetObjectRetention",
    ("PUT", "object", "retention"): "PutObjectRetention",
    ("GET", "object", "legal-hold"): "GetObjectLegalHold",
    ("PUT", "object", "legal-hold"): "PutObjectLegalHold",
    ("GET", "bucket", ""): "ListBucket",
    ("HEAD", "bucket", ""): "ListBucket",
    ("GET", "bucket", "versions"): "ListBucketVersions",
    ("GET", "bucket", "uploads"): "ListBucketMultipartUploads",
    ("DELETE", "bucket", ""): "DeleteBucket",
    ("GET", "bucket", "acl"): "GetBucketAcl",
    ("PUT", "bucket", "acl"): "PutBucketAcl",
    ("GET", "bucket", "location"): "GetBucketLocation",
    ("GET", "bucket", "encryption"): "GetEncryptionConfiguration",
    ("PUT", "bucket", "encryption"): "PutEncryptionConfiguration",
    ("DELETE", "bucket", "encryption"): "PutEncryptionConfiguration",
    ("GET", "bucket", "cors"): "GetBucketCORS",
    ("PUT", "bucket", "cors"): "PutBucketCORS",
    ("DELETE", "bucket", "cors"): "PutBucketCORS",
    ("GET", "bucket", "lifecycle"): "GetLifecycleConfiguration",
    ("PUT", "bucket", "lifecycle"): "PutLifecycleConfiguration",
    ("DELETE", "bucket", "lifecycle"): "PutLifecycleConfiguration",
    ("GET", "bucket", "versioning"): "GetBucketVersioning",
    ("PUT", "bucket", "versioning"): "PutBucketVersioning",
    ("GET", "bucket", "tagging"): "GetBucketTagging",
    ("PUT", "bucket", "tagging"): "PutBucketTagging",
    ("DELETE", "bucket", "tagging"): "PutBucketTagging",
    ("GET", "bucket", "object-lock"): "GetBucketObjectLockConfiguration",
    ("PUT", "bucket", "object-lock"): "PutBucketObjectLockConfiguration",
    ("GET", "bucket", "policyStatus"): "GetBucketPolicyStatus",
    ("GET", "bucket", "publicAccessBlock"): "GetBucketPublicAccessBlock",
    ("PUT", "bucket", "publicAccessBlock"): "PutBucketPublicAccessBlock",
    ("DELETE", "bucket", "publicAccessBlock"): "PutBucketPublicAccessBlock",
    ("GET", "bucket", "ownershipControls"): "GetBucketOwnershipControls",
    ("PUT", "bucket", "ownershipControls"): "PutBucketOwnershipControls",
    ("DELETE", "bucket", "ownershipControls"): "PutBucketOwnershipControls",
}
_VERSIONED = {"GetObject": "GetObjectVersion", "DeleteObject": "DeleteObjectVersion"}
# Weighed elsewhere (per key: DeleteObjects, POST Object) or never: the policy's own
# operations are the owner's (ACP rights), so no policy can lock its owner out.
_NOT_WEIGHED = {("POST", "bucket", "delete"), ("POST", "bucket", "")} | {
    (method, "bucket", "policy") for method in ("GET", "PUT", "DELETE")
}


def context_of(request: Request) -> dict[str, str]:
    """The condition keys a request carries, in lowercase."""
    context = {
        "aws:sourceip": request.source,
        "aws:securetransport": "false",  # fsobj serves plain HTTP (TLS goes in front)
        "aws:useragent": request.headers.get("user-agent", ""),
    }
    if "referer" in request.headers:
        context["aws:referer"] = request.headers["referer"]
    if request.who.uid != NOBODY:
        try:
            context["aws:username"] = pwd.getpwuid(request.who.uid).pw_name
        except KeyError:
            context["aws:username"] = str(request.who.uid)
    for name in ("prefix", "delimiter", "max-keys"):
        if name in request.params:
            context[f"s3:{name}"] = request.params[name]
    return context


def asked(request: Request, action: str, key: str | None) -> Asked:
    resource = f"arn:aws:s3:::{request.bucket}" + ("" if key is None else f"/{key}")
    return Asked(f"s3:{action}", resource, request.who, context_of(request))


async def weigh_as(
    service: ObjectService, request: Request, action: str, key: str | None
) -> Request:
    """The request as its bucket's policy lets it act for `action` on `key`."""
    try:
        who = await bucket_policy.weigh(service, request.bucket, asked(request, action, key))
    except Refused as refusal:
        raise S3Error("AccessDenied", refusal.detail) from None
    return request if who is request.who else dataclasses.replace(request, who=who)


_BLOCK_FIELDS = {
    "BlockPublicAcls": "block_public_acls",
    "IgnorePublicAcls": "ignore_public_acls",
    "BlockPublicPolicy": "block_public_policy",
    "RestrictPublicBuckets": "restrict_public_buckets",
}


class Handlers:
    def __init__(self, service: ObjectService):
        self.service = service

    async def weigh(self, request: Request) -> Request:
        """The request as its bucket's policy lets it act (service/bucket_policy.weigh)."""
        if not request.bucket:
            return request
        target = "object" if request.key else "bucket"
        sub = ",".join(sorted(request.subresources))
        if (request.method, target, sub) in _NOT_WEIGHED:
            return request
        action = _ACTIONS.get((request.method, target, sub), f"{request.method}:{sub}")
        if "versionId" in request.params:
            action = _VERSIONED.get(action, action)
        return await weigh_as(self.service, request, action, request.key or None)

    async def get(self, request: Request) -> Response:
        text = await bucket_policy.policy_of(self.service, request.who, request.bucket)
        if text is None:
            raise S3Error("NoSuchBucketPolicy", "the bucket has no policy")
        return Response(200, {"content-type": "application/json"}, text)

    async def put(self, request: Request) -> Response:
        text = await request.read_xml_body()  # JSON, as small as XML bodies are
        try:
            await bucket_policy.set_policy(self.service, request.who, request.bucket, text)
        except Refused as refusal:
            if refusal.reason.name != "INVALID":
                raise
            raise S3Error("MalformedPolicy", refusal.detail) from None
        return Response(204)

    async def delete(self, request: Request) -> Response:
        await bucket_policy.set_policy(self.service, request.who, request.bucket, None)
        return Response(204)

    async def status(self, request: Request) -> Response:
        text = await bucket_policy.policy_of(self.service, request.who, request.bucket)
        if text is None:
            raise S3Error("NoSuchBucketPolicy", "the bucket has no policy")
        public = bucket_policy.is_public(bucket_policy.parse(text, request.bucket))
        return Response(200, XML, document("PolicyStatus", ("IsPublic", public)))

    async def get_public_access_block(self, request: Request) -> Response:
        block = await public_access.get(self.service, request.who, request.bucket)
        if block is None:
            raise S3Error("NoSuchPublicAccessBlockConfiguration", "the bucket has none")
        fields = [(tag, getattr(block, name)) for tag, name in _BLOCK_FIELDS.items()]
        return Response(200, XML, document("PublicAccessBlockConfiguration", *fields))

    async def put_public_access_block(self, request: Request) -> Response:
        root = parse(await request.read_xml_body())
        block = PublicAccessBlock(
            **{
                name: root.findtext(tag, "false").strip().lower() == "true"
                for tag, name in _BLOCK_FIELDS.items()
            }
        )
        await public_access.put(self.service, request.who, request.bucket, block)
        return Response(200)

    async def delete_public_access_block(self, request: Request) -> Response:
        await public_access.put(self.service, request.who, request.bucket, None)
        return Response(204)

    async def get_ownership(self, request: Request) -> Response:
        rule = await ownership.get(self.service, request.who, request.bucket)
        if rule is None:
            raise S3Error("OwnershipControlsNotFoundError", "the bucket has no ownership controls")
        fields = [("Rule", [("ObjectOwnership", rule)])]
        return Response(200, XML, document("OwnershipControls", *fields))

    async def put_ownership(self, request: Request) -> Response:
        rule = parse(await request.read_xml_body()).findtext("Rule/ObjectOwnership", "")
        await ownership.put(self.service, request.who, request.bucket, rule)
        return Response(200)

    async def delete_ownership(self, request: Request) -> Response:
        await ownership.put(self.service, request.who, request.bucket, None)
        return Response(204)


async def refuse_acl(service: ObjectService, request: Request, grants: bool = False) -> None:
    """AccessControlListNotSupported for an ACL where the bucket's owner enforces
    ownership (a canned `private` or `bucket-owner-full-control` aside, as in S3)."""
    canned = request.headers.get("x-amz-acl")
    if (grants or canned not in ownership.HARMLESS_ACLS) and await ownership.acls_off(
        service, request.bucket
    ):
        raise S3Error("AccessControlListNotSupported", "the bucket does not allow ACLs")
