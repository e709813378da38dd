"""The S3 front end's edge: every refusal becomes S3's error code, HTTP status and XML.

`Refused` (the service's one refusal type) maps through its errno and subject; errors of
the protocol itself (signatures, malformed requests) are `S3Error` with their code.
"""

from __future__ import annotations

import errno

from fsobj.refusals import Refused

STATUS = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "BadDigest": 400,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "KeyTooLongError": 400,
    "MalformedXML": 400,
    "MetadataTooLarge": 400,
    "MethodNotAllowed": 405,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NotImplemented": 501,
    "PreconditionFailed": 412,
    "RequestTimeTooSkewed": 403,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


MULTIPART = {"part": "InvalidPart", "order": "InvalidPartOrder", "part-size": "EntityTooSmall"}


class S3Error(Exception):
    """An S3 error answer: its code (which gives the HTTP status) and message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = STATUS[code]


def from_refusal(refusal: Refused) -> S3Error:
    """The S3 error that a refusal of the object service is."""
    number, subject = refusal.errno, refusal.subject
    if subject == "bucket-name":
        code = "InvalidBucketName"
    elif number == errno.ENOENT:
        code = {"bucket": "NoSuchBucket", "upload": "NoSuchUpload"}.get(subject, "NoSuchKey")
    elif number == errno.EEXIST:
        code = "BucketAlreadyOwnedByYou" if subject == "owned-bucket" else "BucketAlreadyExists"
    elif number in (errno.EACCES, errno.EPERM):
        code = "AccessDenied"
    elif number == errno.ENOTEMPTY:
        code = "BucketNotEmpty"
    elif number == errno.ENAMETOOLONG:
        code = "KeyTooLongError"
    elif number == errno.E2BIG:
        code = "MetadataTooLarge"
    elif number == errno.EFBIG:
        code = "EntityTooLarge"
    elif number == errno.ENOSPC:
        code = "ServiceUnavailable"
    elif number == errno.EINVAL and subject in MULTIPART:
        code = MULTIPART[subject]
    else:  # names that cannot be keys; a key that is a directory, or below an object
        code = "InvalidArgument" if subject in ("key-name", "argument") else "InvalidRequest"
    return S3Error(code, refusal.reason)
