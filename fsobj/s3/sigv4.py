"""AWS Signature Version 4, as S3 checks it: in the Authorization header or in a
presigned URL's query, and on the payload (a signed SHA-256, signed chunks, or unsigned
chunks with a checksum trailer). Also the presigned URLs of Signature Version 2, which
`aws s3 presign` of awscli 1 makes.

Pure functions and small classes over what the HTTP server hands over (method, raw path,
raw query, headers); the secret of an access key comes from `secret_of`.
"""

from __future__ import annotations

import base64
import calendar
import dataclasses
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote, unquote

import trio

from fsobj.s3.errors import S3Error
from fsobj.s3.wire import fixed_base64
from fsobj.service import checksums

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW_SECONDS = 15 * 60
MAX_PRESIGNED_SECONDS = 7 * 24 * 3600
MAX_CHUNK_HEADER = 4096
HASHED_PIECE = 256 * 1024  # payload gathered to this size is hashed in a thread


@dataclasses.dataclass(frozen=True, slots=True)
class Signed:
    """Who signed a request, and how its payload must be checked."""

    key_id: str | None  # None: anonymous
    payload: str  # the hex SHA-256 signed for, UNSIGNED, or a STREAMING-* mode
    signing_key: bytes = b""
    amz_date: str = ""
    scope: str = ""
    seed_signature: str = ""


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def parse_query(raw: bytes) -> list[tuple[str, str]]:
    """The query's name-value pairs, decoded, in order (blank values kept)."""
    pairs = []
    for part in raw.decode("latin-1").split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name.replace("+", " ")), unquote(value.replace("+", " "))))
    return pairs


def _canonical_headers(headers: dict[str, str], signed: list[str]) -> str:
    lines = []
    for name in signed:
        if name not in headers:
            raise S3Error("SignatureDoesNotMatch", f"signed header {name!r} is missing")
        # A value as the client signed it: the bytes sent, UTF-8 for those that are (the
        # Go SDK's and rclone's non-ASCII metadata), decoded here as latin-1.
        value = headers[name].encode("latin-1").decode("utf-8", "surrogateescape")
        lines.append(f"{name}:{' '.join(value.split())}\n")
    return "".join(lines)


def _string_to_sign(
    method: str,
    raw_path: bytes,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    signed_headers: list[str],
    payload: str,
    amz_date: str,
    scope: str,
) -> str:
    canonical = "\n".join(
        [
            method,
            raw_path.decode("latin-1"),
            _canonical_query(query),
            _canonical_headers(headers, signed_headers),
            ";".join(signed_headers),
            payload,
        ]
    )
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _timestamp(amz_date: str) -> float:
    try:
        return calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise S3Error("AccessDenied", f"bad request date {amz_date!r}") from None


def _scope_parts(credential: str) -> tuple[str, str, str, str]:
    """(key id, date, region, service) of `KEYID/DATE/REGION/SERVICE/aws4_request`."""
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise S3Error("AuthorizationHeaderMalformed", f"bad credential scope {credential!r}")
    return parts[0], parts[1], parts[2], parts[3]


@dataclasses.dataclass(frozen=True, slots=True)
class Wire:
    """What a signature covers of a request, as it came: method, path and query as
    sent, and the headers (names in lowercase)."""

    method: str
    raw_path: bytes
    query: list[tuple[str, str]]
    headers: dict[str, str]


def authenticate(
    wire: Wire, secret_of: Callable[[str], str | None], now: float | None = None
) -> Signed:
    """Check a request's signature; returns who signed it and how to check its payload."""
    method, raw_path, query, headers = wire.method, wire.raw_path, wire.query, wire.headers
    now = time.time() if now is None else now
    params = dict(query)
    authorization = headers.get("authorization", "")
    if authorization:
        if not authorization.startswith(ALGORITHM + " "):
            raise S3Error("InvalidArgument", "only AWS Signature Version 4 is supported")
        fields = {}
        for item in authorization[len(ALGORITHM) :].split(","):
            name, _, value = item.strip().partition("=")
            fields[name] = value
        try:
            credential = fields["Credential"]
            signed_headers = fields["SignedHeaders"].split(";")
            signature = fields["Signature"]
        except KeyError as missing:
            raise S3Error("AuthorizationHeaderMalformed", f"no {missing} in it") from None
        amz_date = headers.get("x-amz-date", "")
        if abs(now - _timestamp(amz_date)) > MAX_SKEW_SECONDS:
            raise S3Error("RequestTimeTooSkewed", "the request's time is too far from ours")
        payload = headers.get("x-amz-content-sha256", "")
        if not payload:
            raise S3Error("InvalidRequest", "x-amz-content-sha256 is missing")
        signed_query = query
    elif "X-Amz-Signature" in params:
        if params.get("X-Amz-Algorithm") != ALGORITHM:
            raise S3Error("AuthorizationQueryParametersError", "X-Amz-Algorithm must be SigV4")
        try:
            credential = params["X-Amz-Credential"]
            signed_headers = params["X-Amz-SignedHeaders"].split(";")
            signature = params["X-Amz-Signature"]
            amz_date = params["X-Amz-Date"]
            expires = int(params["X-Amz-Expires"])
        except (KeyError, ValueError) as bad:
            raise S3Error("AuthorizationQueryParametersError", f"bad or missing {bad}") from None
        if not 0 < expires <= MAX_PRESIGNED_SECONDS:
            raise S3Error("AuthorizationQueryParametersError", "X-Amz-Expires out of range")
        signed_at = _timestamp(amz_date)
        if now > signed_at + expires:
            raise S3Error("AccessDenied", "Request has expired")
        if signed_at > now + MAX_SKEW_SECONDS:
            raise S3Error("RequestTimeTooSkewed", "the URL was signed in the future")
        payload = params.get("X-Amz-Content-Sha256", UNSIGNED)
        signed_query = [(k, v) for k, v in query if k != "X-Amz-Signature"]
    elif "AWSAccessKeyId" in params:
        return _presigned_v2(wire, secret_of, now)
    else:
        return Signed(None, UNSIGNED)

    key_id, date, region, service = _scope_parts(credential)
    secret = secret_of(key_id)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", "no such access key")
    if not amz_date.startswith(date):
        raise S3Error("SignatureDoesNotMatch", "the credential's date is not the request's")
    scope = f"{date}/{region}/{service}/aws4_request"
    key = signing_key(secret, date, region, service)
    to_sign = _string_to_sign(
        method, raw_path, signed_query, headers, signed_headers, payload, amz_date, scope
    )
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise S3Error("SignatureDoesNotMatch", "the signature does not match")
    return Signed(key_id, payload, key, amz_date, scope, signature)


# Sub-resources that Signature Version 2 signs with the path.
_V2_SUBRESOURCES = {
    "acl", "delete", "location", "partNumber", "uploadId", "uploads", "versionId",
    "response-cache-control", "response-content-disposition", "response-content-encoding",
    "response-content-language", "response-content-type", "response-expires",
}  # fmt: skip


def _presigned_v2(wire: Wire, secret_of: Callable[[str], str | None], now: float) -> Signed:
    """A URL presigned with Signature Version 2, as `aws s3 presign` (awscli 1) makes
    them: an HMAC-SHA1 over method, content headers, expiry and resource."""
    query, headers = wire.query, wire.headers
    params = dict(query)
    try:
        key_id, signature, expires = (
            params["AWSAccessKeyId"],
            params["Signature"],
            int(params["Expires"]),
        )
    except (KeyError, ValueError) as bad:
        raise S3Error("AuthorizationQueryParametersError", f"bad or missing {bad}") from None
    if now > expires:
        raise S3Error("AccessDenied", "Request has expired")
    secret = secret_of(key_id)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", "no such access key")
    signed_params = sorted((k, v) for k, v in query if k in _V2_SUBRESOURCES)
    resource = wire.raw_path.decode("latin-1")
    if signed_params:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in signed_params)
    text = "\n".join(
        [
            wire.method,
            headers.get("content-md5", ""),
            headers.get("content-type", ""),
            str(expires),
            resource,
        ]
    )
    expected = base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest())
    if not hmac.compare_digest(expected.decode(), signature):
        raise S3Error("SignatureDoesNotMatch", "the signature does not match")
    return Signed(key_id, UNSIGNED)


# -- payloads ------------------------------------------------------------------------------


class _Reader:
    """Bytes from an async source, read up to a delimiter or by count."""

    def __init__(self, source: AsyncIterator[bytes]):
        self._source = source
        self._buffer = bytearray()
        self._ended = False

    async def _more(self) -> bool:
        if self._ended:
            return False
        try:
            self._buffer += await anext(self._source)
        except StopAsyncIteration:
            self._ended = True
            return False
        return True

    async def line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > MAX_CHUNK_HEADER:
                raise S3Error("IncompleteBody", "a chunk header is too long")
            if not await self._more():
                raise S3Error("IncompleteBody", "the body ended inside a chunk header")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    async def pieces(self, size: int) -> AsyncIterator[bytes]:
        while size > 0:
            if not self._buffer and not await self._more():
                raise S3Error("IncompleteBody", "the body ended inside a chunk")
            piece = bytes(self._buffer[:size])
            del self._buffer[: len(piece)]
            size -= len(piece)
            yield piece


class Checksum(checksums.Checksum):
    """An `x-amz-checksum-*` value: computed over the payload and compared."""

    def __init__(self, algorithm: str, expected: str | None = None):
        if algorithm not in self.ALGORITHMS:
            raise S3Error("NotImplemented", f"checksum algorithm {algorithm} is not supported")
        super().__init__(algorithm)
        self.expected = expected

    def verify(self) -> None:
        if self.expected is not None and self.expected != self.value():
            raise S3Error("BadDigest", f"the {self.algorithm} checksum does not match")


def checksum_of(headers: dict[str, str]) -> Checksum | None:
    """The checksum a request's headers ask to verify (its value may come in a trailer)."""
    for algorithm in Checksum.ALGORITHMS:
        value = headers.get(f"x-amz-checksum-{algorithm}")
        if value is not None:
            return Checksum(algorithm, value)
    trailer = headers.get("x-amz-trailer", "").strip().lower()
    if trailer.startswith("x-amz-checksum-"):
        return Checksum(trailer[len("x-amz-checksum-") :])
    return None


async def payload(
    signed: Signed, headers: dict[str, str], body: AsyncIterator[bytes], checksum: Checksum | None
) -> AsyncIterator[bytes]:
    """The request's payload, checked as it streams through: a signed SHA-256, each
    signed chunk, Content-MD5 and `checksum` (checksum_of: its x-amz-checksum). A
    mismatch raises at the end, before the caller commits anything."""
    md5 = hashlib.md5() if "content-md5" in headers else None
    expected_md5 = _content_md5(headers["content-md5"]) if md5 is not None else b""
    sha = hashlib.sha256() if _is_sha256(signed.payload) else None
    if signed.payload in (STREAMING_SIGNED, STREAMING_UNSIGNED_TRAILER):
        pieces = _chunks(signed, body, checksum)
    elif signed.payload.startswith("STREAMING-"):
        raise S3Error("NotImplemented", f"payload mode {signed.payload} is not supported")
    else:
        pieces = body
    digests = [d for d in (checksum, md5, sha) if d is not None]

    def update(data: bytes) -> None:
        for digest in digests:
            digest.update(data)

    gathered = bytearray()
    async for piece in pieces:
        if not digests:
            yield piece
            continue
        gathered += piece
        if len(gathered) >= HASHED_PIECE:
            data, gathered = bytes(gathered), bytearray()
            # hashlib lets go of the GIL: the other core hashes while the loop serves
            await trio.to_thread.run_sync(update, data)
            yield data
    if gathered:
        data = bytes(gathered)
        update(data)
        yield data
    if sha is not None and sha.hexdigest() != signed.payload:
        raise S3Error("XAmzContentSHA256Mismatch", "the payload's SHA-256 does not match")
    if md5 is not None and md5.digest() != expected_md5:
        raise S3Error("BadDigest", "the Content-MD5 does not match")
    if checksum is not None:
        checksum.verify()


def _content_md5(header: str) -> bytes:
    """The MD5 a Content-MD5 header gives; InvalidDigest, as S3 answers, for one that is
    no base64 of 16 bytes."""
    digest = fixed_base64(header, 16)
    if digest is None:
        raise S3Error("InvalidDigest", "Content-MD5 is not the base64 of an MD5")
    return digest


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


async def _chunks(
    signed: Signed, body: AsyncIterator[bytes], checksum: Checksum | None
) -> AsyncIterator[bytes]:
    """aws-chunked content: `SIZE[;chunk-signature=SIG]\\r\\nDATA\\r\\n`..., a last chunk
    of size 0, then trailer lines (the checksum) and an empty line."""
    reader = _Reader(body)
    previous = signed.seed_signature
    while True:
        header = (await reader.line()).decode("latin-1")
        size_text, _, extension = header.partition(";")
        try:
            size = int(size_text, 16)
        except ValueError:
            raise S3Error("IncompleteBody", f"bad chunk header {header[:40]!r}") from None
        chunk_hash = hashlib.sha256() if signed.payload == STREAMING_SIGNED else None
        async for piece in reader.pieces(size):
            if chunk_hash is not None:
                chunk_hash.update(piece)
            yield piece
        if chunk_hash is not None:
            given = extension.partition("chunk-signature=")[2]
            to_sign = "\n".join(
                [
                    "AWS4-HMAC-SHA256-PAYLOAD",
                    signed.amz_date,
                    signed.scope,
                    previous,
                    EMPTY_SHA256,
                    chunk_hash.hexdigest(),
                ]
            )
            expected = hmac.new(signed.signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, given):
                raise S3Error("SignatureDoesNotMatch", "a chunk's signature does not match")
            previous = expected
        if size == 0:
            break
        if await reader.line() != b"":
            raise S3Error("IncompleteBody", "a chunk does not end where its size says")
    while line := await reader.line():  # trailers, up to an empty line
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if checksum is not None and name == f"x-amz-checksum-{checksum.algorithm}":
            checksum.expected = value.strip()
