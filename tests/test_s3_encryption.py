"""Encryption at rest over S3, with boto3 and the aws command against a mount serving
S3: SSE-S3 per request and as a bucket's default (the mount's writes too), SSE-C with its
refusals, copies between them, multipart uploads; what lands on disk is ciphertext."""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os

import pytest
from conftest import blob_files, fsobj_cli
from s3_fixtures import code_of

SECRET = b"the plaintext that must not reach the disk " * 50


def _blobs(s3) -> list[bytes]:
    """What the store's blob files hold (a blob a commit replaced may go meanwhile)."""
    held = []
    for path in blob_files(s3.mount.store):
        with contextlib.suppress(FileNotFoundError):
            held.append(path.read_bytes())
    return held


def _on_disk(s3, needle: bytes) -> bool:
    """Whether any blob file of the store holds `needle` as it is."""
    return any(needle in content for content in _blobs(s3))


def _customer(key: bytes) -> dict[str, str]:
    """boto3's arguments of SSE-C: it sends the key in base64, with its MD5."""
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def test_sse_s3_by_request_and_by_bucket_default_seals_what_lands(s3):
    client = s3.client()
    client.create_bucket(Bucket="vault")
    missing = code_of(client.get_bucket_encryption, Bucket="vault")
    assert missing == "ServerSideEncryptionConfigurationNotFoundError"
    put = client.put_object(Bucket="vault", Key="asked", Body=SECRET, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    assert client.head_object(Bucket="vault", Key="asked")["ServerSideEncryption"] == "AES256"
    got = client.get_object(Bucket="vault", Key="asked")
    assert got["Body"].read() == SECRET and got["ServerSideEncryption"] == "AES256"
    assert (s3.path / "vault" / "asked").read_bytes() == SECRET
    # Rewritten in place on the mount, an object sealed by request stays sealed.
    with open(s3.path / "vault" / "asked", "r+b") as rewritten:
        rewritten.write(SECRET[:10])
    assert client.head_object(Bucket="vault", Key="asked")["ServerSideEncryption"] == "AES256"
    plain = client.put_object(Bucket="vault", Key="plain", Body=b"plain words")
    assert "ServerSideEncryption" not in plain
    assert _on_disk(s3, b"plain words") and not _on_disk(s3, SECRET[:40])
    # A default: S3's writes and the mount's are sealed without asking.
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    client.put_bucket_encryption(
        Bucket="vault", ServerSideEncryptionConfiguration={"Rules": [rule]}
    )
    stored = client.get_bucket_encryption(Bucket="vault")["ServerSideEncryptionConfiguration"]
    assert stored["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    client.put_object(Bucket="vault", Key="by-default", Body=b"default " * 100)
    (s3.path / "vault" / "by-mount").write_bytes(b"mounted " * 100)
    for key in ("by-default", "by-mount"):
        assert client.head_object(Bucket="vault", Key=key)["ServerSideEncryption"] == "AES256"
    assert (s3.path / "vault" / "by-mount").read_bytes() == b"mounted " * 100
    assert not _on_disk(s3, b"default default") and not _on_disk(s3, b"mounted mounted")
    # The mount rewriting a plain object under the default seals it too.
    with open(s3.path / "vault" / "plain", "r+b") as rewritten:
        rewritten.write(b"PLAIN")
    assert client.head_object(Bucket="vault", Key="plain")["ServerSideEncryption"] == "AES256"
    assert client.get_object(Bucket="vault", Key="plain")["Body"].read() == b"PLAIN words"
    assert not _on_disk(s3, b"PLAIN words")
    assert (
        code_of(client.put_object, Bucket="vault", Key="k", Body=b"", ServerSideEncryption="DES")
        == "InvalidArgument"
    )
    kms = code_of(
        client.put_object, Bucket="vault", Key="k", Body=b"", ServerSideEncryption="aws:kms"
    )
    assert kms == "NotImplemented"
    client.delete_bucket_encryption(Bucket="vault")
    missing = code_of(client.get_bucket_encryption, Bucket="vault")
    assert missing == "ServerSideEncryptionConfigurationNotFoundError"
    keys = (s3.mount.store / "keys").stat()
    assert keys.st_mode & 0o777 == 0o600

    # A rotation beside the running daemon: new blobs take the new key, old ones open.
    first = fsobj_cli("encryption", "ls", "--store", str(s3.mount.store)).stdout.split()[0]
    rotated = fsobj_cli("encryption", "rotate", "--store", str(s3.mount.store)).stdout.split()[3]
    rotated = rotated.rstrip(";")
    listed = fsobj_cli("encryption", "ls", "--store", str(s3.mount.store)).stdout
    assert listed.splitlines() == [first, f"{rotated}  (seals new blobs)"]
    client.put_object(Bucket="vault", Key="after", Body=b"x", ServerSideEncryption="AES256")
    headers = [content[:128] for content in _blobs(s3)]
    assert any(rotated.encode() in header for header in headers)
    assert client.get_object(Bucket="vault", Key="asked")["Body"].read() == SECRET


def test_sse_c_needs_its_key_on_every_read_and_the_mount_refuses_it(s3):
    client = s3.client()
    client.create_bucket(Bucket="mine")
    key, other = os.urandom(32), os.urandom(32)
    put = client.put_object(Bucket="mine", Key="c", Body=SECRET, **_customer(key))
    md5 = base64.b64encode(hashlib.md5(key).digest()).decode()
    assert put["SSECustomerAlgorithm"] == "AES256" and put["SSECustomerKeyMD5"] == md5
    assert not _on_disk(s3, SECRET[:40])
    assert code_of(client.get_object, Bucket="mine", Key="c") == "InvalidRequest"
    assert code_of(client.head_object, Bucket="mine", Key="c") == "400"
    assert code_of(client.get_object, Bucket="mine", Key="c", **_customer(other)) == "AccessDenied"
    got = client.get_object(Bucket="mine", Key="c", Range="bytes=10-29", **_customer(key))
    assert got["Body"].read() == SECRET[10:30] and got["SSECustomerKeyMD5"] == md5
    assert client.head_object(Bucket="mine", Key="c", **_customer(key))["ContentLength"] == len(
        SECRET
    )
    # The mount has no key to give: it refuses as fscrypt does, and lists the object.
    with pytest.raises(OSError) as refused:
        (s3.path / "mine" / "c").read_bytes()
    assert refused.value.errno == errno.ENOKEY
    assert (s3.path / "mine" / "c").stat().st_size == len(SECRET)
    # A key for an object sealed without one is refused too.
    client.put_object(Bucket="mine", Key="p", Body=b"p")
    assert code_of(client.get_object, Bucket="mine", Key="p", **_customer(key)) == "InvalidRequest"
    bad_md5 = {  # given the MD5, boto3 sends the key as it is given
        "SSECustomerAlgorithm": "AES256",
        "SSECustomerKey": base64.b64encode(key).decode(),
        "SSECustomerKeyMD5": base64.b64encode(b"0" * 16).decode(),
    }
    assert code_of(client.get_object, Bucket="mine", Key="c", **bad_md5) == "InvalidArgument"
    # Copies: the source's key opens it; the copy is sealed as it asks.
    source = {"Bucket": "mine", "Key": "c"}
    denied = code_of(client.copy_object, Bucket="mine", Key="d", CopySource=source)
    assert denied == "InvalidRequest"
    copy_key = {
        "CopySourceSSECustomerAlgorithm": "AES256",
        "CopySourceSSECustomerKey": key,
    }
    client.copy_object(Bucket="mine", Key="plain-copy", CopySource=source, **copy_key)
    assert (s3.path / "mine" / "plain-copy").read_bytes() == SECRET
    client.copy_object(
        Bucket="mine", Key="other-key", CopySource=source, **copy_key, **_customer(other)
    )
    got = client.get_object(Bucket="mine", Key="other-key", **_customer(other))
    assert got["Body"].read() == SECRET
    assert (
        code_of(client.get_object, Bucket="mine", Key="other-key", **_customer(key))
        == "AccessDenied"
    )


def test_multipart_uploads_and_the_aws_command_seal_with_a_clients_key(s3, tmp_path):
    client = s3.client()
    client.create_bucket(Bucket="big")
    key = os.urandom(32)
    content = os.urandom(1 << 20) * 12  # parts of 8 MiB: two of them
    source = tmp_path / "content"
    source.write_bytes(content)
    client.upload_file(str(source), "big", "parts", ExtraArgs=_customer(key))
    head = client.head_object(Bucket="big", Key="parts", **_customer(key))
    assert head["ETag"].endswith('-2"') and head["ContentLength"] == len(content)
    back = tmp_path / "back"
    client.download_file("big", "parts", str(back), ExtraArgs=_customer(key))
    assert back.read_bytes() == content
    assert not _on_disk(s3, content[5000:5100])
    part = code_of(
        client.upload_part, Bucket="big", Key="k", UploadId="none", PartNumber=1, Body=b""
    )
    assert part == "NoSuchUpload"
    # The aws command, with a key from a file (never on its command line).
    key_file = tmp_path / "sse.key"
    key_file.write_bytes(key)
    put = s3.aws(
        "s3",
        "cp",
        str(source),
        "s3://big/by-aws",
        "--sse-c",
        "AES256",
        "--sse-c-key",
        f"fileb://{key_file}",
    )
    assert put.returncode == 0, put.stderr
    got = s3.aws(
        "s3",
        "cp",
        "s3://big/by-aws",
        str(tmp_path / "by-aws"),
        "--sse-c",
        "AES256",
        "--sse-c-key",
        f"fileb://{key_file}",
    )
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "by-aws").read_bytes() == content
    refused = s3.aws("s3", "cp", "s3://big/by-aws", str(tmp_path / "refused"))
    assert refused.returncode != 0
