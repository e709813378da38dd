"""Server-side encryption over S3: the SSE-S3 and SSE-C request headers, the headers that
answer them, and Get/Put/DeleteBucketEncryption (sealing itself: datastore/sealing.py;
what the store decides: service/encryption.py)."""

from __future__ import annotations

from fsobj.s3.app import Request, Response
from fsobj.s3.errors import S3Error
from fsobj.s3.wire import document, fixed_base64, parse
from fsobj.service import bucket_settings, encryption, names
from fsobj.service.encryption import Seal
from fsobj.service.objects import ObjectService

SSE = "x-amz-server-side-encryption"
CUSTOMER = f"{SSE}-customer-"
COPY_SOURCE = "copy-source-"  # x-amz-copy-source-server-side-encryption-customer-*
XML = {"content-type": "application/xml"}


def customer_key(headers: dict[str, str], prefix: str = "") -> bytes | None:
    """The client's key of an SSE-C request (`prefix`: of its copy source), checked as
    S3 checks it: all three headers, AES256, 32 bytes, and the MD5 the client sent."""
    names_ = [
        f"x-amz-{prefix}server-side-encryption-customer-{part}"
        for part in ("algorithm", "key", "key-md5")
    ]
    algorithm, key, md5 = (headers.get(name) for name in names_)
    if algorithm is None and key is None and md5 is None:
        return None
    if algorithm is None or key is None or md5 is None:
        raise S3Error(
            "InvalidArgument",
            "an SSE-C request gives the algorithm, the key and the key's MD5",
        )
    if algorithm != "AES256":
        raise S3Error("InvalidEncryptionAlgorithmError", "the only SSE-C algorithm is AES256")
    raw = fixed_base64(key, 32)
    if raw is None:
        raise S3Error("InvalidArgument", "the secret key was invalid for the specified algorithm")
    if encryption.key_md5(raw) != md5.strip():
        raise S3Error("InvalidArgument", "the key's MD5 is not the MD5 of the key")
    return raw


def requested_seal(headers: dict[str, str]) -> Seal | None:
    """How a write asks its object to be sealed (None: as the bucket says)."""
    key = customer_key(headers)
    asked = headers.get(SSE)
    if asked is not None and key is not None:
        raise S3Error(
            "InvalidArgument", "SSE-C and x-amz-server-side-encryption exclude each other"
        )
    if key is not None:
        return Seal(customer_key=key)
    if asked is None:
        return None
    if asked.startswith("aws:kms"):
        raise S3Error("NotImplemented", f"{asked}: fsobj has no key management service")
    if asked != encryption.STORE_KEY:
        raise S3Error("InvalidArgument", "the encryption method specified is not supported")
    return Seal()


def answer_headers(metadata: dict[str, bytes]) -> dict[str, str]:
    """What S3 answers of how an object is sealed (PUT, GET, HEAD, copies, uploads)."""
    sealed = encryption.of_object(metadata)
    if sealed is None:
        return {}
    scheme, md5 = sealed
    if scheme == encryption.STORE_KEY:
        return {SSE: encryption.STORE_KEY}
    return {f"{CUSTOMER}algorithm": "AES256", f"{CUSTOMER}key-md5": md5 or ""}


class Handlers:
    """A bucket's default encryption (S3's ServerSideEncryptionConfiguration)."""

    def __init__(self, service: ObjectService):
        self.service = service

    async def get(self, request: Request) -> Response:
        found = await bucket_settings.read(
            self.service, request.who, request.bucket, names.BUCKET_ENCRYPTION
        )
        if found is None:
            raise S3Error(
                "ServerSideEncryptionConfigurationNotFoundError",
                "the bucket has no default encryption",
            )
        rule = ("ApplyServerSideEncryptionByDefault", [("SSEAlgorithm", found.decode())])
        body = document("ServerSideEncryptionConfiguration", ("Rule", [rule]))
        return Response(200, XML, body)

    async def put(self, request: Request) -> Response:
        root = parse(await request.read_xml_body())
        algorithms = [node.text or "" for node in root.iter("SSEAlgorithm")]
        if len(algorithms) != 1:
            raise S3Error("MalformedXML", "one rule, with one SSEAlgorithm")
        if algorithms[0].startswith("aws:kms"):
            raise S3Error("NotImplemented", f"{algorithms[0]}: fsobj has no key management service")
        if algorithms[0] != encryption.STORE_KEY:
            raise S3Error("MalformedXML", "SSEAlgorithm is AES256")
        await bucket_settings.write(
            self.service, request.who, request.bucket, names.BUCKET_ENCRYPTION, b"AES256"
        )
        return Response(200)

    async def delete(self, request: Request) -> Response:
        await bucket_settings.write(
            self.service, request.who, request.bucket, names.BUCKET_ENCRYPTION, None
        )
        return Response(204)
