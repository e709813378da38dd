"""The S3 front end's edge: every refusal becomes S3's error code, HTTP status and XML.

`Refused` (the service's one refusal type) maps through its reason (`CODE`); errors of the
protocol itself (signatures, malformed requests) are `S3Error` with their code.
"""

from __future__ import annotations

from fsobj.refusals import Reason, Refused

STATUS = {
    "AccessDenied": 403,
    "AccessForbidden": 403,  # a CORS preflight refused
    "AccessControlListNotSupported": 400,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "BadDigest": 400,
    "BadRequest": 400,  # not HTTP/1.1 at all (unparsable.py)
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
    "InvalidBucketState": 409,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPolicyDocument": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "InvalidTag": 400,
    "KeyTooLongError": 400,
    "MalformedXML": 400,
    "MalformedPolicy": 400,
    "MalformedPOSTRequest": 400,
    "MetadataTooLarge": 400,
    "MethodNotAllowed": 405,
    "NoSuchBucket": 404,
    "NoSuchBucketPolicy": 404,
    "NoSuchCORSConfiguration": 404,
    "NoSuchPublicAccessBlockConfiguration": 404,
    "OwnershipControlsNotFoundError": 404,
    "NoSuchEntity": 404,  # IAM's (access_keys.py)
    "NoSuchKey": 404,
    "NoSuchLifecycleConfiguration": 404,
    "NoSuchTagSet": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "NoSuchObjectLockConfiguration": 404,
    "ObjectLockConfigurationNotFoundError": 404,
    "NotImplemented": 501,
    "InvalidEncryptionAlgorithmError": 400,
    "InvalidPartNumber": 416,
    "RequestHeaderSectionTooLarge": 431,
    "ServerSideEncryptionConfigurationNotFoundError": 404,
    "PreconditionFailed": 412,
    "RequestTimeTooSkewed": 403,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


# The S3 front end's one table: the error code of each reason a request is refused.
CODE = {
    Reason.NO_SUCH_KEY: "NoSuchKey",
    Reason.NO_SUCH_BUCKET: "NoSuchBucket",
    Reason.NO_SUCH_UPLOAD: "NoSuchUpload",
    Reason.NO_SUCH_ATTRIBUTE: "InvalidArgument",
    Reason.VANISHED: "NoSuchKey",
    Reason.STALE: "NoSuchKey",
    Reason.EXISTS: "InvalidRequest",
    Reason.BUCKET_EXISTS: "BucketAlreadyExists",
    Reason.BUCKET_OWNED: "BucketAlreadyOwnedByYou",
    Reason.DENIED: "AccessDenied",
    Reason.NOT_PERMITTED: "AccessDenied",
    Reason.NOT_EMPTY: "BucketNotEmpty",
    Reason.NAME_TOO_LONG: "KeyTooLongError",
    Reason.BUCKET_NAME_TOO_LONG: "InvalidBucketName",
    Reason.METADATA_TOO_LARGE: "MetadataTooLarge",
    Reason.TOO_LARGE: "EntityTooLarge",
    Reason.BAD_BUCKET_NAME: "InvalidBucketName",
    Reason.BAD_KEY: "InvalidArgument",
    Reason.BAD_ARGUMENT: "InvalidArgument",
    Reason.INVALID: "InvalidRequest",
    Reason.INVALID_PART: "InvalidPart",
    Reason.PART_ORDER: "InvalidPartOrder",
    Reason.PART_TOO_SMALL: "EntityTooSmall",
    Reason.IS_DIRECTORY: "InvalidRequest",  # a key that is a directory, or below an object
    Reason.NOT_DIRECTORY: "InvalidRequest",
    Reason.NOT_SUPPORTED: "NotImplemented",
    Reason.UNKEPT_ATTRIBUTE: "NotImplemented",
    Reason.NOT_WRITABLE: "InvalidRequest",
    Reason.OTHER_BUCKET: "InvalidRequest",
    Reason.BAD_TAGS: "InvalidTag",
    Reason.READ_ONLY: "AccessDenied",
    Reason.VERSIONED_MOVE: "InvalidRequest",
    Reason.NO_SUCH_VERSION: "NoSuchVersion",
    Reason.DELETE_MARKER: "MethodNotAllowed",
    Reason.LOCKED: "AccessDenied",
    Reason.BAD_STATE: "InvalidBucketState",
    Reason.CONDITION: "PreconditionFailed",
    Reason.BAD_RANGE: "InvalidRange",
    Reason.BAD_DIGEST: "BadDigest",
    Reason.NEEDS_KEY: "InvalidRequest",
    Reason.WRONG_KEY: "AccessDenied",
}


class S3Error(Exception):
    """An S3 error answer: its code (which gives the HTTP status), message and the
    headers that go with it (a delete marker's, on a GET of a key it hides)."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = STATUS[code]
        self.headers = headers or {}


def from_refusal(refusal: Refused) -> S3Error:
    """The S3 error that a refusal of the object service is."""
    return S3Error(CODE[refusal.reason], refusal.detail)
