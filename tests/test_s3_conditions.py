"""S3 as current AWS clients expect it, with boto3, the aws command and rclone against a
mount serving S3: conditional writes and deletes, a retried completion of a multipart
upload, a copy of an object onto itself that replaces its metadata, and metadata beyond
ASCII."""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import os

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


def test_a_canned_acl_reads_back_as_it_was_given(s3):
    client = s3.client()
    client.create_bucket(Bucket="canned")
    client.put_bucket_acl(Bucket="canned", ACL="authenticated-read")
    grants = client.get_bucket_acl(Bucket="canned")["Grants"]
    others = [(g["Grantee"].get("URI"), g["Permission"]) for g in grants if "URI" in g["Grantee"]]
    assert others == [("http://acs.amazonaws.com/groups/global/AuthenticatedUsers", "READ")]


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
