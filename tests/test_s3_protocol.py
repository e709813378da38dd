"""The S3 front end at the level of HTTP: payload modes that boto3 does not use over plain
HTTP (signed chunks), bodies cut off, malformed requests and unknown operations. Requests
are signed with botocore's signer; chunk signatures are computed here, from AWS's spec."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import socket
import time

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import mounted_at

EMPTY = hashlib.sha256(b"").hexdigest()


class _Signer(S3SigV4Auth):
    """botocore's signer, signing for the payload hash or mode that the test chose."""

    def payload(self, request):
        return request.context.get("payload") or super().payload(request)


def signed_request(s3, method: str, path: str, headers: dict, body: bytes = b"") -> AWSRequest:
    key_id, secret = s3.key(0)
    headers = dict(headers)
    payload = headers.pop("x-amz-content-sha256", None)
    request = AWSRequest(method=method, url=s3.endpoint + path, data=body, headers=headers)
    request.context["payload"] = payload
    _Signer(Credentials(key_id, secret), "s3", "us-east-1").add_auth(request)
    return request


def send(s3, request: AWSRequest, body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=60)
    try:
        path = request.url[len(s3.endpoint) :]
        data = request.body if body is None else body
        connection.request(request.method, path, body=data, headers=dict(request.headers.items()))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def chunked(s3, request: AWSRequest, chunks: list[bytes], tamper: bool = False) -> bytes:
    """The aws-chunked body of STREAMING-AWS4-HMAC-SHA256-PAYLOAD, each chunk signed."""
    _, secret = s3.key(0)
    authorization = request.headers["Authorization"]
    previous = authorization.rpartition("Signature=")[2]
    scope = authorization.partition("Credential=")[2].partition(",")[0].split("/", 1)[1]
    date = scope.split("/")[0]
    key = ("AWS4" + secret).encode()
    for part in (date, "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    amz_date = request.headers["X-Amz-Date"]
    body = b""
    for chunk in [*chunks, b""]:
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                amz_date,
                scope,
                previous,
                EMPTY,
                hashlib.sha256(chunk).hexdigest(),
            ]
        )
        previous = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        signature = ("0" * 64) if tamper and chunk else previous
        body += f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + chunk + b"\r\n"
    return body


def test_signed_chunks_are_verified_one_by_one(s3):
    s3.client().create_bucket(Bucket="chunks")
    chunks = [os.urandom(70_000), os.urandom(65_536), b"tail"]
    headers = {
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(sum(map(len, chunks))),
    }
    request = signed_request(s3, "PUT", "/chunks/signed", headers)
    status, answer = send(s3, request, chunked(s3, request, chunks))
    assert status == 200, answer
    assert (s3.path / "chunks" / "signed").read_bytes() == b"".join(chunks)

    request = signed_request(s3, "PUT", "/chunks/tampered", headers)
    status, answer = send(s3, request, chunked(s3, request, chunks, tamper=True))
    assert status == 403 and b"SignatureDoesNotMatch" in answer, answer
    assert not (s3.path / "chunks" / "tampered").exists()


def test_a_signed_payload_must_match_its_hash(s3):
    s3.client().create_bucket(Bucket="hashes")
    request = signed_request(
        s3, "PUT", "/hashes/k", {"x-amz-content-sha256": hashlib.sha256(b"one").hexdigest()}
    )
    status, answer = send(s3, request, b"two")
    assert status == 400 and b"XAmzContentSHA256Mismatch" in answer
    assert not (s3.path / "hashes" / "k").exists()


def test_the_clock_must_agree(s3):
    request = signed_request(s3, "GET", "/", {"x-amz-content-sha256": EMPTY})
    request.headers.replace_header("X-Amz-Date", "20200101T000000Z")
    status, answer = send(s3, request)
    assert status == 403 and b"RequestTimeTooSkewed" in answer


def test_a_body_cut_off_leaves_nothing_behind_and_others_are_served(s3):
    client = s3.client()
    client.create_bucket(Bucket="cut-off")
    client.put_bucket_acl(Bucket="cut-off", ACL="public-read-write")
    with socket.create_connection(("127.0.0.1", s3.port)) as sock:
        sock.sendall(
            b"PUT /cut-off/partial HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
            + os.urandom(3 << 20)
        )
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    while os.listdir(s3.mount.store / "staging") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(s3.mount.store / "staging") == []
    assert not (s3.path / "cut-off" / "partial").exists()
    assert "partial" not in str(client.list_objects_v2(Bucket="cut-off"))
    client.put_object(Bucket="cut-off", Key="whole", Body=b"fine")
    assert (s3.path / "cut-off" / "whole").read_bytes() == b"fine"


def test_bad_requests_get_s3_errors_never_a_server_error(s3):
    client = s3.client()
    client.create_bucket(Bucket="bad-input")
    for method, path, body, expected in [
        ("POST", "/bad-input?delete", b"<Delete><Object><Key>", b"MalformedXML"),
        ("GET", "/bad-input?website", b"", b"NotImplemented"),
        ("PUT", "/bad-input?cors", b"<CORSConfiguration/>", b"InvalidRequest"),
        ("PUT", "/bad-input?policy", b"{", b"MalformedPolicy"),
        (
            "PUT",
            "/bad-input?versioning",
            b"<VersioningConfiguration><Status>On</Status></VersioningConfiguration>",
            b"MalformedXML",
        ),
        ("GET", "/bad-input?versions&max-keys=many", b"", b"InvalidArgument"),
        ("PUT", "/bad-input/k?retention", b"", b"MalformedXML"),
        ("POST", "/bad-input/k?restore", b"", b"NotImplemented"),
        ("PUT", "/bad-input/k?tagging", b"", b"MalformedXML"),
        ("PATCH", "/bad-input/k", b"", b"NotImplemented"),
        ("GET", "/bad-input?list-type=2&max-keys=many", b"", b"InvalidArgument"),
        ("GET", "/bad-input?list-type=2&continuation-token=%21%21%21", b"", b"InvalidArgument"),
    ]:
        sha = hashlib.sha256(body).hexdigest()
        request = signed_request(s3, method, path, {"x-amz-content-sha256": sha}, body)
        status, answer = send(s3, request)
        assert 400 <= status < 500 or status == 501, (path, status, answer)
        assert expected in answer, (path, answer)
    with socket.create_connection(("127.0.0.1", s3.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(100).startswith(b"HTTP/1.1 4")
    # What HTTP/1.1's parser refuses (an empty Content-Length) is S3's error too
    # (s3/unparsable.py: hypercorn alone answers a bare status).
    for header in (b"Content-Length: ", b"Content-Length: ten"):
        with socket.create_connection(("127.0.0.1", s3.port)) as sock:
            sock.sendall(b"PUT /bad-input/k HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n")
            sock.settimeout(10)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert b"<Code>BadRequest</Code>" in answer, answer
    assert client.list_buckets()["Buckets"][0]["Name"] == "bad-input"
    assert "Traceback" not in s3.mount.log_text()


def test_a_slow_client_holds_up_nobody(s3):
    client = s3.client()
    client.create_bucket(Bucket="slow")
    client.put_bucket_acl(Bucket="slow", ACL="public-read-write")
    with socket.create_connection(("127.0.0.1", s3.port)) as slow:
        slow.sendall(b"PUT /slow/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        for i in range(20):  # while the slow upload waits for the rest of its body
            client.put_object(Bucket="slow", Key=f"k{i}", Body=b"v")
            assert client.get_object(Bucket="slow", Key=f"k{i}")["Body"].read() == b"v"
        slow.sendall(b"c" * 998)
        slow.settimeout(30)
        assert slow.recv(100).startswith(b"HTTP/1.1 200")
    assert (s3.path / "slow" / "trickle").read_bytes() == b"ab" + b"c" * 998


def test_a_client_that_reads_nothing_holds_no_unmount(s3):
    """A GET whose answer is never read (its send blocked, shielded by hypercorn): the
    daemon still unmounts within seconds, everything written out."""
    client = s3.client()
    client.create_bucket(Bucket="stalled")
    client.put_bucket_acl(Bucket="stalled", ACL="public-read")
    (s3.path / "stalled" / "big").write_bytes(os.urandom(8 << 20))
    with socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", s3.port))
        reader.sendall(b"GET /stalled/big HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.recv(12) == b"HTTP/1.1 200"
        (s3.path / "stalled" / "written-last").write_bytes(b"kept")
        store, log_file = s3.mount.store, s3.mount.log
        started = time.monotonic()
        s3.mount.stop()
        # Not a timing test: MOUNT_TIMEOUT (30 s) would kill the daemon, which then
        # leaves its store marked as not cleanly unmounted.
        assert time.monotonic() - started < 20
    log = log_file.read_text()
    assert "reads nothing of its answer" in log and "unmounted" in log
    with mounted_at(store, store.parent / "again.log") as again:
        assert (again.path / "stalled" / "written-last").read_bytes() == b"kept"
        assert "not unmounted cleanly" not in (store.parent / "again.log").read_text()


def test_unsigned_chunks_with_a_checksum_trailer(s3):
    import base64
    import zlib

    s3.client().create_bucket(Bucket="trailers")
    content = os.urandom(100_000)

    def body(checksum: bytes) -> bytes:
        chunks = [content[:65536], content[65536:]]
        framed = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks)
        return framed + b"0\r\nx-amz-checksum-crc32:" + base64.b64encode(checksum) + b"\r\n\r\n"

    headers = {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "content-encoding": "aws-chunked",
        "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(content)),
    }
    good = zlib.crc32(content).to_bytes(4, "big")
    request = signed_request(s3, "PUT", "/trailers/good", headers)
    status, answer = send(s3, request, body(good))
    assert status == 200, answer
    assert (s3.path / "trailers" / "good").read_bytes() == content
    request = signed_request(s3, "PUT", "/trailers/bad", headers)
    status, answer = send(s3, request, body(b"\0\0\0\0"))
    assert status == 400 and b"BadDigest" in answer
    assert not (s3.path / "trailers" / "bad").exists()
