"""S3 as current AWS clients expect it, with boto3, the aws command and rclone against a
mount serving S3: conditional writes and deletes, a retried completion of a multipart
upload, a copy of an object onto itself that replaces its metadata, and metadata beyond
ASCII."""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import os
import zlib

import pytest
from botocore.exceptions import ClientError
from s3_fixtures import code_of
from test_s3_protocol import signed_request

PART = 5 << 20


def test_a_create_if_absent_lands_once_and_a_write_if_match_only_over_that_object(s3):
    client = s3.client()
    client.create_bucket(Bucket="cond")
    first = client.put_object(Bucket="cond", Key="lock", Body=b"mine", IfNoneMatch="*")
    taken = code_of(client.put_object, Bucket="cond", Key="lock", Body=b"no", IfNoneMatch="*")
    assert taken == "PreconditionFailed"
    other = code_of(client.put_object, Bucket="cond", Key="lock", Body=b"no", IfMatch='"0f"')
    assert other == "PreconditionFailed"
    assert (s3.path / "cond" / "lock").read_bytes() == b"mine"
    client.put_object(Bucket="cond", Key="lock", Body=b"mine, 2", IfMatch=first["ETag"])
    assert (s3.path / "cond" / "lock").read_bytes() == b"mine, 2"
    # If-Match of a key with no object: NoSuchKey, and nothing made for it stays.
    missing = code_of(client.put_object, Bucket="cond", Key="deep/er", Body=b"x", IfMatch="*")
    assert missing == "NoSuchKey"
    assert not (s3.path / "cond" / "deep").exists()
    # A copy may be conditional on its destination too.
    client.put_object(Bucket="cond", Key="source", Body=b"s")
    copying = code_of(
        client.copy_object,
        Bucket="cond",
        Key="lock",
        CopySource={"Bucket": "cond", "Key": "source"},
        IfNoneMatch="*",
    )
    assert copying == "PreconditionFailed"
    assert (s3.path / "cond" / "lock").read_bytes() == b"mine, 2"


def test_of_many_writers_creating_one_key_if_absent_exactly_one_wins(s3):
    client = s3.client()
    client.create_bucket(Bucket="race")

    def create(n: int, key: str) -> str | None:
        try:
            client.put_object(Bucket="race", Key=key, Body=f"writer {n}".encode(), IfNoneMatch="*")
        except ClientError as error:
            return error.response["Error"]["Code"]
        return None

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for round_ in range(5):
            key = f"lock-{round_}"
            answers = list(pool.map(lambda n, key=key: create(n, key), range(8)))
            assert answers.count(None) == 1, answers
            assert set(answers) == {None, "PreconditionFailed"}
            winner = answers.index(None)
            assert (s3.path / "race" / key).read_bytes() == f"writer {winner}".encode()


def upload_in_parts(client, bucket: str, key: str, content: bytes) -> tuple[str, list[dict]]:
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(content), PART), 1):
        piece = content[start : start + PART]
        answer = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=piece
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    return upload, parts


def completion(key: str, upload: str, parts: list[dict]) -> dict:
    return {"Bucket": "parts", "Key": key, "UploadId": upload, "MultipartUpload": {"Parts": parts}}


def test_a_completion_retried_succeeds_and_one_may_be_conditional(s3):
    client = s3.client()
    client.create_bucket(Bucket="parts")
    content = os.urandom(PART + 1000)
    upload, parts = upload_in_parts(client, "parts", "big", content)
    done = {
        "Bucket": "parts",
        "Key": "big",
        "UploadId": upload,
        "MultipartUpload": {"Parts": parts},
    }
    etag = client.complete_multipart_upload(**done)["ETag"]
    # The answer was lost, say: the SDK completes again, and hears the same.
    assert client.complete_multipart_upload(**done)["ETag"] == etag
    assert (s3.path / "parts" / "big").read_bytes() == content
    assert client.list_multipart_uploads(Bucket="parts").get("Uploads", []) == []
    abort = code_of(client.abort_multipart_upload, Bucket="parts", Key="big", UploadId=upload)
    assert abort == "NoSuchUpload"
    # Once the key holds another object, that upload is no more.
    client.put_object(Bucket="parts", Key="big", Body=b"replaced")
    assert code_of(client.complete_multipart_upload, **done) == "NoSuchUpload"
    # Completing into a taken key with If-None-Match fails, and leaves the upload to retry.
    upload, parts = upload_in_parts(client, "parts", "big", b"second")
    again = {
        "Bucket": "parts",
        "Key": "big",
        "UploadId": upload,
        "MultipartUpload": {"Parts": parts},
    }
    taken = code_of(client.complete_multipart_upload, **again, IfNoneMatch="*")
    assert taken == "PreconditionFailed"
    assert (s3.path / "parts" / "big").read_bytes() == b"replaced"
    client.complete_multipart_upload(**again)
    assert (s3.path / "parts" / "big").read_bytes() == b"second"


@pytest.mark.same_on_every_store  # decided above the stores
def test_a_copy_onto_itself_replaces_its_metadata(s3):
    client = s3.client()
    client.create_bucket(Bucket="meta")
    client.put_object(Bucket="meta", Key="k", Body=b"content", Metadata={"old": "1"})
    client.copy_object(
        Bucket="meta",
        Key="k",
        CopySource={"Bucket": "meta", "Key": "k"},
        MetadataDirective="REPLACE",
        Metadata={"new": "2"},
        ContentType="text/x-new",
    )
    head = client.head_object(Bucket="meta", Key="k")
    assert head["Metadata"] == {"new": "2"} and head["ContentType"] == "text/x-new"
    assert (s3.path / "meta" / "k").read_bytes() == b"content"
    # As users do it: aws s3 cp of an object onto itself with new metadata.
    done = s3.aws("s3", "cp", "s3://meta/k", "s3://meta/k", "--metadata", "by=aws")
    assert done.returncode == 0, done.stderr
    assert client.head_object(Bucket="meta", Key="k")["Metadata"] == {"by": "aws"}
    assert os.getxattr(s3.path / "meta" / "k", "user.by") == b"aws"
    assert (s3.path / "meta" / "k").read_bytes() == b"content"
    # Without new metadata, a copy onto itself is refused, as S3 refuses it.
    same = code_of(client.copy_object, Bucket="meta", Key="k", CopySource="meta/k")
    assert same == "InvalidRequest"


def test_a_delete_may_be_conditional_on_what_the_object_is(s3):
    client = s3.client()
    client.create_bucket(Bucket="del")
    put = client.put_object(Bucket="del", Key="k", Body=b"12345")
    assert code_of(client.delete_object, Bucket="del", Key="k", IfMatch='"0f"') == (
        "PreconditionFailed"
    )
    assert code_of(client.delete_object, Bucket="del", Key="k", IfMatchSize=4) == (
        "PreconditionFailed"
    )
    assert (s3.path / "del" / "k").exists()
    client.delete_object(Bucket="del", Key="k", IfMatch=put["ETag"], IfMatchSize=5)
    assert not (s3.path / "del" / "k").exists()
    client.put_object(Bucket="del", Key="a", Body=b"a")
    kept = client.put_object(Bucket="del", Key="b", Body=b"b")
    answer = client.delete_objects(
        Bucket="del",
        Delete={"Objects": [{"Key": "a", "ETag": '"0f"'}, {"Key": "b", "ETag": kept["ETag"]}]},
    )
    assert [e["Code"] for e in answer["Errors"]] == ["PreconditionFailed"]
    assert [d["Key"] for d in answer["Deleted"]] == ["b"]
    assert sorted(os.listdir(s3.path / "del")) == ["a"]


@pytest.mark.same_on_every_store  # decided above the stores
def test_metadata_beyond_ascii_as_clients_send_it(s3, tmp_path):
    client = s3.client()
    client.create_bucket(Bucket="utf")
    title = "日本 été"
    # Raw UTF-8 in the header, signed as the Go SDK signs it.
    headers = {"x-amz-meta-title": title, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    request = signed_request(s3, "PUT", "/utf/raw", headers, b"x")
    connection = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=60)
    sent = {name: value.encode() for name, value in request.headers.items()}
    connection.request("PUT", "/utf/raw", body=b"x", headers=sent)
    assert connection.getresponse().status == 200
    connection.close()
    assert os.getxattr(s3.path / "utf" / "raw", "user.title") == title.encode()
    # Answered as S3 answers it: RFC 2047's encoded word.
    word = f"=?UTF-8?B?{base64.b64encode(title.encode()).decode()}?="
    assert client.head_object(Bucket="utf", Key="raw")["Metadata"] == {"title": word}
    # Sent so (what SDKs that check for ASCII let through), it is stored decoded.
    client.put_object(Bucket="utf", Key="word", Body=b"", Metadata={"title": word})
    assert os.getxattr(s3.path / "utf" / "word", "user.title") == title.encode()
    # rclone, a Go client, with its own metadata.
    local = tmp_path / "local.txt"
    local.write_bytes(b"from rclone")
    s3.rclone("copyto", "-M", "--metadata-set", f"title={title}", str(local), "fsobj:utf/by-rclone")
    assert os.getxattr(s3.path / "utf" / "by-rclone", "user.title") == title.encode()


def test_buckets_are_listed_a_page_at_a_time(s3):
    client = s3.client()
    for name in ("page-a", "page-b", "page-c", "other"):
        client.create_bucket(Bucket=name)
    first = client.list_buckets(MaxBuckets=2, Prefix="page-")
    assert [b["Name"] for b in first["Buckets"]] == ["page-a", "page-b"]
    rest = client.list_buckets(
        MaxBuckets=2, Prefix="page-", ContinuationToken=first["ContinuationToken"]
    )
    assert [b["Name"] for b in rest["Buckets"]] == ["page-c"] and "ContinuationToken" not in rest
    pages = client.get_paginator("list_buckets").paginate(PaginationConfig={"PageSize": 1})
    assert [b["Name"] for page in pages for b in page["Buckets"]] == [
        "other", "page-a", "page-b", "page-c"
    ]  # fmt: skip


@pytest.mark.same_on_every_store  # decided above the stores
def test_a_canned_acl_reads_back_as_it_was_given(s3):
    client = s3.client()
    client.create_bucket(Bucket="canned")
    client.put_bucket_acl(Bucket="canned", ACL="authenticated-read")
    grants = client.get_bucket_acl(Bucket="canned")["Grants"]
    others = [(g["Grantee"].get("URI"), g["Permission"]) for g in grants if "URI" in g["Grantee"]]
    assert others == [("http://acs.amazonaws.com/groups/global/AuthenticatedUsers", "READ")]


@pytest.mark.same_on_every_store  # decided above the stores
def test_get_object_attributes(s3):
    client = s3.client()
    client.create_bucket(Bucket="attrs")
    put = client.put_object(Bucket="attrs", Key="small", Body=b"12345")
    asked = ["ETag", "ObjectSize", "StorageClass", "ObjectParts"]
    small = client.get_object_attributes(Bucket="attrs", Key="small", ObjectAttributes=asked)
    assert small["ETag"] == put["ETag"].strip('"') and small["ObjectSize"] == 5
    assert small["StorageClass"] == "STANDARD" and "ObjectParts" not in small
    upload, parts = upload_in_parts(client, "attrs", "big", os.urandom(PART + 10))
    client.complete_multipart_upload(
        Bucket="attrs", Key="big", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    big = client.get_object_attributes(Bucket="attrs", Key="big", ObjectAttributes=asked)
    assert big["ObjectParts"]["TotalPartsCount"] == 2 and big["ObjectSize"] == PART + 10
    missing = code_of(
        client.get_object_attributes, Bucket="attrs", Key="none", ObjectAttributes=asked
    )
    assert missing == "NoSuchKey"


def test_get_and_head_by_part_number_as_s3_answers_them(s3):
    client = s3.client()
    client.create_bucket(Bucket="bypart")
    content = os.urandom(PART + 10)
    upload, parts = upload_in_parts(client, "bypart", "big", content)
    client.complete_multipart_upload(
        Bucket="bypart", Key="big", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    first = client.get_object(Bucket="bypart", Key="big", PartNumber=1)
    assert first["Body"].read() == content[:PART] and first["PartsCount"] == 2
    assert first["ContentRange"] == f"bytes 0-{PART - 1}/{PART + 10}"
    second = client.head_object(Bucket="bypart", Key="big", PartNumber=2)
    assert second["ContentLength"] == 10 and second["PartsCount"] == 2
    assert (
        client.get_object(Bucket="bypart", Key="big", PartNumber=2)["Body"].read() == content[PART:]
    )
    assert (
        code_of(client.get_object, Bucket="bypart", Key="big", PartNumber=3) == "InvalidPartNumber"
    )
    both = code_of(client.get_object, Bucket="bypart", Key="big", PartNumber=1, Range="bytes=0-1")
    assert both == "InvalidRequest"
    # GetObjectAttributes pages through the parts' sizes.
    attributes = client.get_object_attributes(
        Bucket="bypart", Key="big", ObjectAttributes=["ObjectParts"], MaxParts=1
    )["ObjectParts"]
    assert attributes["TotalPartsCount"] == 2 and attributes["IsTruncated"]
    assert [(p["PartNumber"], p["Size"]) for p in attributes["Parts"]] == [(1, PART)]
    rest = client.get_object_attributes(
        Bucket="bypart", Key="big", ObjectAttributes=["ObjectParts"], PartNumberMarker=1
    )["ObjectParts"]
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(2, 10)]
    # An object not uploaded in parts is its own part 1; rewritten on the mount, so is this.
    client.put_object(Bucket="bypart", Key="small", Body=b"12345")
    whole = client.get_object(Bucket="bypart", Key="small", PartNumber=1)
    assert whole["Body"].read() == b"12345" and "PartsCount" not in whole
    assert (
        code_of(client.get_object, Bucket="bypart", Key="small", PartNumber=2)
        == "InvalidPartNumber"
    )
    with open(s3.path / "bypart" / "big", "r+b") as rewritten:
        rewritten.write(b"new")
    again = client.get_object(Bucket="bypart", Key="big", PartNumber=1)
    assert again["Body"].read() == b"new" + content[3:] and "PartsCount" not in again
    # What fsobj keeps beside the metadata cannot be sent as metadata.
    forged = code_of(
        client.put_object, Bucket="bypart", Key="f", Body=b"", Metadata={"fsobj.parts": "1"}
    )
    assert forged == "InvalidArgument"


def test_multipart_uploads_keep_composite_and_full_object_checksums(s3):
    import awscrt.checksums

    client = s3.client()
    client.create_bucket(Bucket="mpsums")
    content = os.urandom(PART + 1000)
    pieces = [content[:PART], content[PART:]]

    def upload(key: str, algorithm: str, kind: str | None = None) -> tuple[str, list[dict]]:
        extra = {"ChecksumType": kind} if kind else {}
        made = client.create_multipart_upload(
            Bucket="mpsums", Key=key, ChecksumAlgorithm=algorithm, **extra
        )
        assert made["ChecksumAlgorithm"] == algorithm
        parts = []
        for number, piece in enumerate(pieces, 1):
            answer = client.upload_part(
                Bucket="mpsums", Key=key, UploadId=made["UploadId"], PartNumber=number,
                Body=piece, ChecksumAlgorithm=algorithm,
            )  # fmt: skip
            parts.append(
                {"PartNumber": number, "ETag": answer["ETag"],
                 f"Checksum{algorithm}": answer[f"Checksum{algorithm}"]}
            )  # fmt: skip
        return made["UploadId"], parts

    # Composite: the CRC-32 of the parts' CRC-32s, and how many.
    upload_id, parts = upload("composite", "CRC32")
    listed = client.list_parts(Bucket="mpsums", Key="composite", UploadId=upload_id)["Parts"]
    assert [p["ChecksumCRC32"] for p in listed] == [p["ChecksumCRC32"] for p in parts]
    done = client.complete_multipart_upload(
        Bucket="mpsums", Key="composite", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    raw = b"".join(zlib.crc32(piece).to_bytes(4, "big") for piece in pieces)
    expected = base64.b64encode(zlib.crc32(raw).to_bytes(4, "big")).decode() + "-2"
    assert done["ChecksumCRC32"] == expected and done["ChecksumType"] == "COMPOSITE"
    head = client.head_object(Bucket="mpsums", Key="composite", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == expected
    # Full object: CRC64-NVME of all of it, which boto3 checks as it reads.
    upload_id, parts = upload("full", "CRC64NVME")
    whole = awscrt.checksums.crc64nvme(content).to_bytes(8, "big")
    wrong = code_of(
        client.complete_multipart_upload, Bucket="mpsums", Key="full", UploadId=upload_id,
        MultipartUpload={"Parts": parts}, ChecksumCRC64NVME=base64.b64encode(bytes(8)).decode(),
        ChecksumType="FULL_OBJECT",
    )  # fmt: skip
    assert wrong == "BadDigest"
    done = client.complete_multipart_upload(
        Bucket="mpsums", Key="full", UploadId=upload_id, MultipartUpload={"Parts": parts},
        ChecksumCRC64NVME=base64.b64encode(whole).decode(), ChecksumType="FULL_OBJECT",
    )  # fmt: skip
    assert done["ChecksumType"] == "FULL_OBJECT"
    got = client.get_object(Bucket="mpsums", Key="full", ChecksumMode="ENABLED")
    assert got["Body"].read() == content
    assert got["ChecksumCRC64NVME"] == base64.b64encode(whole).decode()
    # A part's checksum that is not the one it came with; a type the algorithm has not.
    upload_id, parts = upload("bad", "SHA256")
    parts[0]["ChecksumSHA256"] = base64.b64encode(bytes(32)).decode()
    bad = code_of(
        client.complete_multipart_upload, Bucket="mpsums", Key="bad", UploadId=upload_id,
        MultipartUpload={"Parts": parts},
    )  # fmt: skip
    assert bad == "InvalidPart"
    refused = code_of(
        client.create_multipart_upload, Bucket="mpsums", Key="x", ChecksumAlgorithm="SHA256",
        ChecksumType="FULL_OBJECT",
    )  # fmt: skip
    assert refused == "InvalidRequest"


@pytest.mark.same_on_every_store  # decided above the stores
def test_checksums_are_kept_with_the_content_and_answered(s3):
    client = s3.client()
    client.create_bucket(Bucket="sums")
    content = os.urandom(300_000)
    for algorithm in ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"):
        put = client.put_object(
            Bucket="sums", Key=algorithm, Body=content, ChecksumAlgorithm=algorithm
        )
        sent = put[f"Checksum{algorithm}"]
        # boto3 checks the content it reads against the checksum answered with it.
        got = client.get_object(Bucket="sums", Key=algorithm, ChecksumMode="ENABLED")
        assert got["Body"].read() == content and got[f"Checksum{algorithm}"] == sent
        assert got["ChecksumType"] == "FULL_OBJECT"
        head = client.head_object(Bucket="sums", Key=algorithm, ChecksumMode="ENABLED")
        assert head[f"Checksum{algorithm}"] == sent
        attributes = client.get_object_attributes(
            Bucket="sums", Key=algorithm, ObjectAttributes=["Checksum"]
        )
        assert attributes["Checksum"][f"Checksum{algorithm}"] == sent
    # A range has no checksum of its own; without ChecksumMode none is answered.
    ranged = client.get_object(
        Bucket="sums", Key="CRC32", Range="bytes=0-9", ChecksumMode="ENABLED"
    )
    assert "ChecksumCRC32" not in ranged
    assert "ChecksumCRC32" not in client.head_object(Bucket="sums", Key="CRC32")
    # Rewritten on the mount, the content has no checksum any more: none is answered.
    (s3.path / "sums" / "CRC32").write_bytes(b"new content")
    head = client.head_object(Bucket="sums", Key="CRC32", ChecksumMode="ENABLED")
    assert "ChecksumCRC32" not in head
    assert client.get_object(Bucket="sums", Key="CRC32")["Body"].read() == b"new content"
