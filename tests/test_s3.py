"""The S3 front end with real clients (boto3, the aws command, curl) against a mount that
serves S3 from its own process: every answer checked, and the two views cross-checked."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import fsobj_cli, is_mounted
from s3_fixtures import code_of, parse_key, s3_client, wait_for_port


def test_an_object_put_over_s3_is_a_file_on_the_mount_and_back(s3):
    client = s3.client()
    client.create_bucket(Bucket="both-views")
    # The kernel remembers that the name is missing; the PUT must make it forget that.
    assert not (s3.path / "both-views" / "docs").exists()
    put = client.put_object(
        Bucket="both-views",
        Key="docs/readme.txt",
        Body=b"over s3",
        ContentType="text/x-test",
        Metadata={"colour": "blue"},
    )
    on_mount = s3.path / "both-views" / "docs" / "readme.txt"
    assert on_mount.read_bytes() == b"over s3"
    assert put["ETag"] == f'"{os.getxattr(on_mount, "user.fsobj.etag").decode()}"'
    assert os.getxattr(on_mount, "user.colour") == b"blue"
    assert os.getxattr(on_mount, "user.fsobj.content-type") == b"text/x-test"

    written = s3.path / "both-views" / "docs" / "from-mount.md"
    content = b"# from the mount\n"
    written.write_bytes(content)
    os.setxattr(written, "user.reviewed", b"yes")
    got = client.get_object(Bucket="both-views", Key="docs/from-mount.md")
    assert got["Body"].read() == content
    assert got["ETag"] == f'"{hashlib.md5(content).hexdigest()}"'
    assert got["Metadata"] == {"reviewed": "yes"}
    assert got["ContentType"] == "text/markdown"

    client.delete_object(Bucket="both-views", Key="docs/readme.txt")
    assert not on_mount.exists()
    assert code_of(client.get_object, Bucket="both-views", Key="docs/readme.txt") == "NoSuchKey"
    assert code_of(client.head_bucket, Bucket="no-such-bucket") == "404"
    assert code_of(client.get_object, Bucket="no-such-bucket", Key="k") == "NoSuchBucket"


@pytest.mark.same_on_every_store
def test_buckets_follow_s3_rules_and_are_the_mounts_top_level(s3):
    client = s3.client(1001)
    client.create_bucket(Bucket="made-over-s3")
    assert (s3.path / "made-over-s3").is_dir()
    assert (s3.path / "made-over-s3").stat().st_uid == 1001
    os.mkdir(s3.path / "made-on-mount")  # by root
    assert code_of(client.create_bucket, Bucket="made-over-s3") == "BucketAlreadyOwnedByYou"
    assert code_of(client.create_bucket, Bucket="made-on-mount") == "BucketAlreadyExists"
    assert code_of(client.create_bucket, Bucket="Bad_Name") == "InvalidBucketName"
    names = [b["Name"] for b in s3.client(0).list_buckets()["Buckets"]]
    assert names == ["made-on-mount", "made-over-s3"]
    assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["made-over-s3"]
    client.put_object(Bucket="made-over-s3", Key="k", Body=b"x")
    assert code_of(client.delete_bucket, Bucket="made-over-s3") == "BucketNotEmpty"
    client.delete_object(Bucket="made-over-s3", Key="k")
    client.delete_bucket(Bucket="made-over-s3")
    assert not (s3.path / "made-over-s3").exists()
    location = s3.client(0).get_bucket_location(Bucket="made-on-mount")
    assert location.get("LocationConstraint") is None


def test_ranges_and_conditional_gets(s3):
    client = s3.client()
    client.create_bucket(Bucket="ranges")
    body = bytes(range(256)) * 40
    etag = client.put_object(Bucket="ranges", Key="k", Body=body)["ETag"]
    part = client.get_object(Bucket="ranges", Key="k", Range="bytes=10-19")
    assert part["Body"].read() == body[10:20]
    assert part["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    suffix = client.get_object(Bucket="ranges", Key="k", Range="bytes=-5")["Body"].read()
    assert suffix == body[-5:]
    assert (
        client.get_object(Bucket="ranges", Key="k", Range="bytes=100-")["Body"].read()
        == (body[100:])
    )
    assert code_of(client.get_object, Bucket="ranges", Key="k", Range="bytes=99999-") == (
        "InvalidRange"
    )
    assert code_of(client.get_object, Bucket="ranges", Key="k", IfNoneMatch=etag) == "304"
    assert code_of(client.get_object, Bucket="ranges", Key="k", IfMatch='"nope"') == (
        "PreconditionFailed"
    )
    assert client.get_object(Bucket="ranges", Key="k", IfMatch=etag)["Body"].read() == body
    import datetime

    modified = client.head_object(Bucket="ranges", Key="k")["LastModified"]
    later, earlier = modified + datetime.timedelta(hours=1), modified - datetime.timedelta(hours=1)
    assert code_of(client.get_object, Bucket="ranges", Key="k", IfModifiedSince=later) == "304"
    assert client.get_object(Bucket="ranges", Key="k", IfModifiedSince=earlier)["Body"].read()
    assert code_of(client.get_object, Bucket="ranges", Key="k", IfUnmodifiedSince=earlier) == (
        "PreconditionFailed"
    )
    assert client.get_object(Bucket="ranges", Key="k", IfUnmodifiedSince=later)["Body"].read()
    overridden = client.get_object(
        Bucket="ranges", Key="k", ResponseContentType="x/y", ResponseContentDisposition="inline"
    )
    assert overridden["ContentType"] == "x/y" and overridden["ContentDisposition"] == "inline"
    head = client.head_object(Bucket="ranges", Key="k")
    assert head["ContentLength"] == len(body) and head["ETag"] == etag


def test_listings_are_in_utf8_key_order_with_prefixes_and_pages(s3):
    client = s3.client()
    client.create_bucket(Bucket="listing")
    keys = ["a-b", "a/x", "a/y/z", "a0", "b", "é", "z/"]
    for key in keys:
        client.put_object(Bucket="listing", Key=key, Body=b"")
    os.mkdir(s3.path / "listing" / "empty")  # an empty directory is its marker key
    expected = sorted([*keys, "empty/"], key=lambda k: k.encode())
    listed = [o["Key"] for o in client.list_objects_v2(Bucket="listing")["Contents"]]
    assert listed == expected
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket="listing", PaginationConfig={"PageSize": 2}
    )
    assert [o["Key"] for page in pages for o in page.get("Contents", [])] == expected
    top = client.list_objects_v2(Bucket="listing", Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a-b", "a0", "b", "é"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "empty/", "z/"]
    inner = client.list_objects_v2(Bucket="listing", Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in inner["Contents"]] == ["a/x"]
    assert [p["Prefix"] for p in inner["CommonPrefixes"]] == ["a/y/"]
    after = client.list_objects_v2(Bucket="listing", StartAfter="a/x")
    assert [o["Key"] for o in after["Contents"]] == expected[expected.index("a/x") + 1 :]
    v1 = client.get_paginator("list_objects").paginate(
        Bucket="listing", PaginationConfig={"PageSize": 3}
    )
    assert [o["Key"] for page in v1 for o in page.get("Contents", [])] == expected


@pytest.mark.same_on_every_store
def test_payload_checks(s3):
    client = s3.client()
    client.create_bucket(Bucket="payloads")
    assert (
        code_of(
            client.put_object,
            Bucket="payloads",
            Key="k",
            Body=b"abc",
            ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==",
        )
        == "BadDigest"
    )
    assert not (s3.path / "payloads" / "k").exists()
    assert os.listdir(s3.mount.store / "staging") == []
    for malformed in ("abc=", "not base64!"):  # no MD5 at all: InvalidDigest, as S3 says
        digest = code_of(
            client.put_object, Bucket="payloads", Key="k", Body=b"", ContentMD5=malformed
        )
        assert digest == "InvalidDigest"
    for algorithm in ("CRC32", "CRC32C", "SHA256", "SHA1"):
        client.put_object(
            Bucket="payloads", Key=algorithm, Body=b"x" * 1000, ChecksumAlgorithm=algorithm
        )
        assert (s3.path / "payloads" / algorithm).read_bytes() == b"x" * 1000
    wrong = {"ChecksumCRC32C": "AAAAAA==", "ChecksumCRC32": "AAAAAA=="}
    for argument, value in wrong.items():
        assert (
            code_of(client.put_object, Bucket="payloads", Key="bad", Body=b"x", **{argument: value})
            == "BadDigest"
        )
    assert not (s3.path / "payloads" / "bad").exists()
    assert code_of(client.get_bucket_policy, Bucket="payloads") == "NoSuchBucketPolicy"
    assert code_of(client.get_bucket_policy_status, Bucket="payloads") == "NoSuchBucketPolicy"


def bucket_holding(s3, bucket: str, key: str, content: bytes):
    """A client of uid 0, and a new bucket holding one object."""
    client = s3.client()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key=key, Body=content)
    return client


def test_a_get_keeps_streaming_the_version_it_began_with(s3):
    old = os.urandom(8 << 20)
    client = bucket_holding(s3, "versions", "k", old)
    body = client.get_object(Bucket="versions", Key="k")["Body"]
    first = body.read(1 << 20)
    client.put_object(Bucket="versions", Key="k", Body=b"new")
    (s3.path / "versions" / "k").unlink()
    assert first + body.read() == old


@pytest.mark.same_on_every_store
def test_keys_that_cannot_be_names_are_refused(s3):
    client = s3.client()
    client.create_bucket(Bucket="names")
    client.put_object(Bucket="names", Key="dir/file", Body=b"x")
    for key in ("a//b", "./a", "a/../b", "n" * 256, "dir"):
        assert code_of(client.put_object, Bucket="names", Key=key, Body=b"x") in (
            "InvalidArgument",
            "InvalidRequest",
            "KeyTooLongError",
        ), key
    assert code_of(client.put_object, Bucket="names", Key="dir/file/under", Body=b"x") == (
        "InvalidRequest"
    )
    assert code_of(client.put_object, Bucket="names", Key="k" * 1025, Body=b"x") == (
        "KeyTooLongError"
    )
    client.put_object(Bucket="names", Key="folder/", Body=b"")
    assert (s3.path / "names" / "folder").is_dir()


@pytest.mark.same_on_every_store
def test_the_aws_command(s3, tmp_path):
    source = tmp_path / "notes.txt"
    source.write_bytes(b"aws cli\n" * 1000)
    assert s3.aws("s3", "mb", "s3://cli-bucket").returncode == 0
    copied = s3.aws("s3", "cp", str(source), "s3://cli-bucket/notes.txt")
    assert copied.returncode == 0, copied.stderr
    assert (s3.path / "cli-bucket" / "notes.txt").read_bytes() == source.read_bytes()
    listed = s3.aws("s3", "ls", "s3://cli-bucket/")
    assert "notes.txt" in listed.stdout and "8000" in listed.stdout
    back = s3.aws("s3", "cp", "s3://cli-bucket/notes.txt", str(tmp_path / "back.txt"))
    assert back.returncode == 0 and (tmp_path / "back.txt").read_bytes() == source.read_bytes()
    presigned = s3.aws("s3", "presign", "s3://cli-bucket/notes.txt")  # Signature Version 2
    assert presigned.returncode == 0, presigned.stderr
    fetched = subprocess.run(["curl", "-sf", presigned.stdout.strip()], capture_output=True)
    assert fetched.returncode == 0 and fetched.stdout == source.read_bytes()
    forged = presigned.stdout.strip().replace("Signature=", "Signature=A")
    assert subprocess.run(["curl", "-sf", forged], capture_output=True).returncode == 22
    tagging = '{"TagSet": [{"Key": "from", "Value": "aws"}]}'
    where = ["--bucket", "cli-bucket", "--key", "notes.txt"]
    put = s3.aws("s3api", "put-object-tagging", *where, "--tagging", tagging)
    assert put.returncode == 0, put.stderr
    got = json.loads(s3.aws("s3api", "get-object-tagging", *where).stdout)
    assert got["TagSet"] == [{"Key": "from", "Value": "aws"}]


def test_multipart_uploads(s3):
    from boto3.s3.transfer import TransferConfig

    client = s3.client()
    client.create_bucket(Bucket="multi")
    content = os.urandom(12 << 20)
    five = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    client.upload_fileobj(io.BytesIO(content), "multi", "dir/big", Config=five)
    assert (s3.path / "multi" / "dir" / "big").read_bytes() == content
    head = client.head_object(Bucket="multi", Key="dir/big")
    parts = [
        hashlib.md5(content[i : i + (5 << 20)]).digest() for i in range(0, len(content), 5 << 20)
    ]
    assert head["ETag"] == f'"{hashlib.md5(b"".join(parts)).hexdigest()}-3"'

    started = client.create_multipart_upload(Bucket="multi", Key="pending", Metadata={"m": "v"})
    upload_id = started["UploadId"]
    small = client.upload_part(
        Bucket="multi", Key="pending", UploadId=upload_id, PartNumber=1, Body=b"tiny"
    )
    second = client.upload_part(
        Bucket="multi", Key="pending", UploadId=upload_id, PartNumber=2, Body=b"end"
    )
    listed = client.list_multipart_uploads(Bucket="multi")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [("pending", upload_id)]
    parts_listed = client.list_parts(Bucket="multi", Key="pending", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts_listed] == [(1, 4), (2, 3)]
    chosen = [
        {"PartNumber": 1, "ETag": small["ETag"]},
        {"PartNumber": 2, "ETag": second["ETag"]},
    ]

    def complete(parts):
        return client.complete_multipart_upload(
            Bucket="multi", Key="pending", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    assert code_of(complete, chosen) == "EntityTooSmall"
    assert code_of(complete, chosen[::-1]) == "InvalidPartOrder"
    assert code_of(complete, [{"PartNumber": 3, "ETag": small["ETag"]}]) == "InvalidPart"
    assert not (s3.path / "multi" / "pending").exists()
    s3.mount.restart()  # an upload in progress survives a restart
    wait_for_port(s3.port)
    complete(chosen[1:])
    assert (s3.path / "multi" / "pending").read_bytes() == b"end"
    assert os.getxattr(s3.path / "multi" / "pending", "user.m") == b"v"
    assert client.list_multipart_uploads(Bucket="multi").get("Uploads", []) == []

    aborted = client.create_multipart_upload(Bucket="multi", Key="gone")["UploadId"]
    client.upload_part(Bucket="multi", Key="gone", UploadId=aborted, PartNumber=1, Body=b"x")
    client.abort_multipart_upload(Bucket="multi", Key="gone", UploadId=aborted)
    assert code_of(client.list_parts, Bucket="multi", Key="gone", UploadId=aborted) == (
        "NoSuchUpload"
    )
    # Of completed uploads their record stays (for a retried completion), never a part.
    uploads = s3.mount.store / "uploads"
    assert {p.name for d in uploads.iterdir() for p in d.iterdir()} == {"upload.json", "completed"}


def test_a_copy_shares_the_blob_and_outlives_its_source(s3):
    client = s3.client()
    client.create_bucket(Bucket="copies")
    client.create_bucket(Bucket="elsewhere")
    content = os.urandom(3 << 20)
    etag = client.put_object(
        Bucket="copies", Key="src", Body=content, Metadata={"kept": "1"}, ContentType="x/src"
    )["ETag"]
    copied = client.copy_object(
        Bucket="elsewhere", Key="dst", CopySource={"Bucket": "copies", "Key": "src"}
    )
    assert copied["CopyObjectResult"]["ETag"] == etag
    source_id = os.getxattr(s3.path / "copies" / "src", "user.fsobj.id")
    assert os.getxattr(s3.path / "elsewhere" / "dst", "user.fsobj.id") == source_id
    got = client.get_object(Bucket="elsewhere", Key="dst")
    got["Body"].close()  # unread, it would hold the daemon at unmount (docs/s3.md)
    assert got["Metadata"] == {"kept": "1"} and got["ContentType"] == "x/src"
    replaced = client.copy_object(
        Bucket="copies",
        Key="src",
        CopySource="copies/src",
        MetadataDirective="REPLACE",
        Metadata={"new": "2"},
        ContentType="x/new",
    )
    assert replaced["CopyObjectResult"]["ETag"] == etag
    assert client.head_object(Bucket="copies", Key="src")["Metadata"] == {"new": "2"}
    assert code_of(client.copy_object, Bucket="copies", Key="src", CopySource="copies/src") == (
        "InvalidRequest"
    )
    assert (
        code_of(
            client.copy_object,
            Bucket="copies",
            Key="third",
            CopySource="copies/src",
            CopySourceIfMatch='"other"',
        )
        == "PreconditionFailed"
    )
    client.delete_object(Bucket="copies", Key="src")
    s3.mount.make_durable()  # where a blob that lost its last name would go
    assert (s3.path / "elsewhere" / "dst").read_bytes() == content
    assert fsobj_cli("gc", str(s3.path)).returncode == 0
    assert client.get_object(Bucket="elsewhere", Key="dst")["Body"].read() == content


@pytest.mark.same_on_every_store
def test_content_headers_are_kept_with_the_object(s3):
    client = s3.client()
    client.create_bucket(Bucket="headers")
    client.put_object(
        Bucket="headers",
        Key="page.html.gz",
        Body=b"\x1f\x8b",
        ContentEncoding="gzip",
        ContentDisposition='attachment; filename="page.html.gz"',
        CacheControl="max-age=60",
        ContentLanguage="en",
    )
    got = client.head_object(Bucket="headers", Key="page.html.gz")
    assert got["ContentEncoding"] == "gzip" and got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == 'attachment; filename="page.html.gz"'
    assert got["ContentLanguage"] == "en" and got["Metadata"] == {}
    on_mount = s3.path / "headers" / "page.html.gz"
    assert os.getxattr(on_mount, "user.fsobj.cache-control") == b"max-age=60"
    assert os.listxattr(on_mount) == []  # copying tools do not try to copy them
    os.setxattr(on_mount, "user.fsobj.cache-control", b"no-cache")
    assert client.head_object(Bucket="headers", Key="page.html.gz")["CacheControl"] == "no-cache"


def test_fsobj_serve_without_a_mount(tmp_path):
    from s3_fixtures import free_port

    store, port = tmp_path / "store", free_port()
    key = parse_key(fsobj_cli("key", "create", "--store", str(store), "--uid", "0").stdout)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fsobj",
            "serve",
            "--store",
            str(store),
            "--s3",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port)
        client = s3_client(f"http://127.0.0.1:{port}", key)
        client.create_bucket(Bucket="served")
        client.put_object(Bucket="served", Key="k", Body=b"alone")
        assert client.get_object(Bucket="served", Key="k")["Body"].read() == b"alone"
    finally:
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=60)
    assert server.returncode == 0 and b"Traceback" not in errors, errors
    checked = fsobj_cli("fsck", "--verify", "--store", str(store), check=False)
    assert checked.returncode == 0, checked.stdout


def test_a_mount_whose_s3_address_is_taken_fails_cleanly(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mountpoint = tmp_path / "mnt"
        mountpoint.mkdir()
        failed = fsobj_cli(
            "mount", "--store", str(tmp_path / "store"), "--s3", f"127.0.0.1:{port}",
            str(mountpoint), check=False,
        )  # fmt: skip
    assert failed.returncode == 1 and f"cannot serve S3 at 127.0.0.1:{port}" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not is_mounted(mountpoint)


def test_parts_copied_from_objects(s3):
    source = os.urandom(6 << 20)
    client = bucket_holding(s3, "part-copies", "source", source)
    upload = client.create_multipart_upload(Bucket="part-copies", Key="joined")["UploadId"]
    first = client.upload_part_copy(
        Bucket="part-copies", Key="joined", UploadId=upload, PartNumber=1,
        CopySource="part-copies/source", CopySourceRange=f"bytes=0-{(5 << 20) - 1}",
    )["CopyPartResult"]["ETag"]  # fmt: skip
    second = client.upload_part(
        Bucket="part-copies", Key="joined", UploadId=upload, PartNumber=2, Body=b"tail"
    )["ETag"]
    assert code_of(
        client.upload_part_copy, Bucket="part-copies", Key="joined", UploadId=upload,
        PartNumber=3, CopySource="part-copies/source", CopySourceRange="bytes=0-99999999",
    ) == "InvalidRange"  # fmt: skip
    client.complete_multipart_upload(
        Bucket="part-copies",
        Key="joined",
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second}]
        },
    )
    assert (s3.path / "part-copies" / "joined").read_bytes() == source[: 5 << 20] + b"tail"


def test_a_prefix_goes_with_its_last_key_a_marker_is_a_key(s3, tmp_path):
    for name in ("a.txt", "sub/b.txt", "sub/deeper/c.txt"):
        (tmp_path / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / name).write_text(name)
    assert s3.aws("s3", "mb", "s3://prefixes").returncode == 0
    synced = s3.aws("s3", "sync", str(tmp_path / "tree"), "s3://prefixes/backup/")
    assert synced.returncode == 0, synced.stderr
    backup = s3.path / "prefixes" / "backup"
    assert (backup / "sub" / "deeper" / "c.txt").read_text() == "sub/deeper/c.txt"
    client = s3.client()
    client.put_object(Bucket="prefixes", Key="kept/", Body=b"")  # a marker, as consoles make
    os.makedirs(s3.path / "prefixes" / "made-on-mount" / "inner")
    client.put_object(Bucket="prefixes", Key="made-on-mount/inner/k", Body=b"x")
    listed = [o["Key"] for o in client.list_objects_v2(Bucket="prefixes")["Contents"]]
    assert listed == [
        "backup/a.txt",
        "backup/sub/b.txt",
        "backup/sub/deeper/c.txt",
        "kept/",
        "made-on-mount/",
        "made-on-mount/inner/",
        "made-on-mount/inner/k",
    ]
    client.delete_object(Bucket="prefixes", Key="backup/sub/deeper/c.txt")
    assert not (backup / "sub" / "deeper").exists() and (backup / "sub" / "b.txt").exists()
    client.delete_object(Bucket="prefixes", Key="made-on-mount/")  # its keys keep it
    assert (s3.path / "prefixes" / "made-on-mount" / "inner" / "k").exists()
    removed = s3.aws("s3", "rm", "--recursive", "s3://prefixes/")
    assert removed.returncode == 0, removed.stderr
    assert os.listdir(s3.path / "prefixes") == []
    assert s3.aws("s3", "rb", "s3://prefixes").returncode == 0
    assert not (s3.path / "prefixes").exists()


def test_delete_objects_and_metadata_limits(s3):
    client = bucket_holding(s3, "many", "k0", b"0")
    for i in range(1, 4):
        client.put_object(Bucket="many", Key=f"k{i}", Body=b"x")
    done = client.delete_objects(
        Bucket="many", Delete={"Objects": [{"Key": "k0"}, {"Key": "k1"}, {"Key": "none"}]}
    )
    assert sorted(d["Key"] for d in done["Deleted"]) == ["k0", "k1", "none"]
    quiet = client.delete_objects(
        Bucket="many", Delete={"Objects": [{"Key": "k2"}, {"Key": "k3"}], "Quiet": True}
    )
    assert "Deleted" not in quiet and "Errors" not in quiet
    assert os.listdir(s3.path / "many") == []
    refused = s3.client(1001).delete_objects(Bucket="many", Delete={"Objects": [{"Key": "k"}]})
    assert [(e["Key"], e["Code"]) for e in refused["Errors"]] == [("k", "AccessDenied")]
    big = {"m": "v" * 2048}
    assert code_of(client.put_object, Bucket="many", Key="big", Body=b"", Metadata=big) == (
        "MetadataTooLarge"
    )


def test_gc_removes_uploads_abandoned_longer_than_asked(s3):
    client = bucket_holding(s3, "abandoned", "k", b"x")
    old = client.create_multipart_upload(Bucket="abandoned", Key="old")["UploadId"]
    client.upload_part(Bucket="abandoned", Key="old", UploadId=old, PartNumber=1, Body=b"p")
    s3.mount.options = (*s3.mount.options, "--abandon-uploads-after", str(2 / 86400))
    s3.mount.restart()
    wait_for_port(s3.port)
    time.sleep(2.5)
    young = client.create_multipart_upload(Bucket="abandoned", Key="young")["UploadId"]
    assert fsobj_cli("gc", str(s3.path)).returncode == 0
    left = client.list_multipart_uploads(Bucket="abandoned")["Uploads"]
    assert [u["UploadId"] for u in left] == [young]
    assert os.listdir(s3.mount.store / "uploads") == [young]


def test_each_hard_link_is_a_key_that_a_put_or_delete_changes_alone(s3):
    client = s3.client()
    client.create_bucket(Bucket="linked")
    first = s3.path / "linked" / "first"
    first.write_bytes(b"one file")
    os.link(first, s3.path / "linked" / "second")
    os.link(first, s3.path / "linked" / "third")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="linked")["Contents"]]
    assert keys == ["first", "second", "third"]
    assert client.get_object(Bucket="linked", Key="third")["Body"].read() == b"one file"

    client.put_object(Bucket="linked", Key="second", Body=b"a new object")
    assert (s3.path / "linked" / "second").read_bytes() == b"a new object"
    assert os.stat(s3.path / "linked" / "second").st_nlink == 1
    assert first.read_bytes() == b"one file" and os.stat(first).st_nlink == 2

    client.delete_object(Bucket="linked", Key="first")
    assert not first.exists()
    assert (s3.path / "linked" / "third").read_bytes() == b"one file"
    assert os.stat(s3.path / "linked" / "third").st_nlink == 1


def test_object_and_bucket_tagging(s3):
    client = s3.client()
    client.create_bucket(Bucket="tagged")
    client.put_object(Bucket="tagged", Key="k", Body=b"x", Tagging="colour=blue&size=s%20m")
    tag_set = client.get_object_tagging(Bucket="tagged", Key="k")["TagSet"]
    assert tag_set == [{"Key": "colour", "Value": "blue"}, {"Key": "size", "Value": "s m"}]
    assert client.get_object(Bucket="tagged", Key="k")["TagCount"] == 2
    on_mount = s3.path / "tagged" / "k"
    assert os.getxattr(on_mount, "user.fsobj.tags") == b"colour=blue&size=s%20m"
    assert "user.fsobj.tags" not in os.listxattr(on_mount)  # cp -a copies nothing of it

    os.setxattr(on_mount, "user.fsobj.tags", b"from=mount")
    tags = [{"Key": "a", "Value": "1"}]
    assert client.get_object_tagging(Bucket="tagged", Key="k")["TagSet"] == [
        {"Key": "from", "Value": "mount"}
    ]
    client.put_object_tagging(Bucket="tagged", Key="k", Tagging={"TagSet": tags})
    assert client.get_object_tagging(Bucket="tagged", Key="k")["TagSet"] == tags
    copied = dict(CopySource="tagged/k", Bucket="tagged")
    client.copy_object(Key="same-tags", **copied)
    assert client.get_object_tagging(Bucket="tagged", Key="same-tags")["TagSet"] == tags
    client.copy_object(Key="new-tags", TaggingDirective="REPLACE", Tagging="b=2", **copied)
    assert client.get_object_tagging(Bucket="tagged", Key="new-tags")["TagSet"] == [
        {"Key": "b", "Value": "2"}
    ]
    client.copy_object(Key="k", MetadataDirective="REPLACE", Metadata={"m": "v"}, **copied)
    assert client.get_object_tagging(Bucket="tagged", Key="k")["TagSet"] == tags
    eleven = [{"Key": f"k{i}", "Value": ""} for i in range(11)]
    put_many = client.put_object_tagging
    assert code_of(put_many, Bucket="tagged", Key="k", Tagging={"TagSet": eleven}) == "InvalidTag"
    client.delete_object_tagging(Bucket="tagged", Key="k")
    assert client.get_object_tagging(Bucket="tagged", Key="k")["TagSet"] == []
    assert "TagCount" not in client.head_object(Bucket="tagged", Key="k")

    upload = client.create_multipart_upload(Bucket="tagged", Key="parts", Tagging="m=1")
    part = client.upload_part(
        Bucket="tagged", Key="parts", UploadId=upload["UploadId"], PartNumber=1, Body=b"p"
    )
    client.complete_multipart_upload(
        Bucket="tagged", Key="parts", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    assert client.get_object_tagging(Bucket="tagged", Key="parts")["TagSet"] == [
        {"Key": "m", "Value": "1"}
    ]

    assert code_of(client.get_bucket_tagging, Bucket="tagged") == "NoSuchTagSet"
    client.put_bucket_tagging(Bucket="tagged", Tagging={"TagSet": tags})
    assert client.get_bucket_tagging(Bucket="tagged")["TagSet"] == tags
    other = s3.client(1001)
    assert code_of(other.get_bucket_tagging, Bucket="tagged") == "AccessDenied"
    client.delete_bucket_tagging(Bucket="tagged")
    assert code_of(client.get_bucket_tagging, Bucket="tagged") == "NoSuchTagSet"


def test_lifecycle_rules_expire_objects_and_read_back_as_set(s3):
    from conftest import fsobj_cli

    client = s3.client()
    client.create_bucket(Bucket="aging")
    assert code_of(client.get_bucket_lifecycle_configuration, Bucket="aging") == (
        "NoSuchLifecycleConfiguration"
    )
    rules = [
        {"ID": "tmp", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled",
         "Expiration": {"Days": 1}},
        {"ID": "tagged", "Filter": {"And": {"Prefix": "logs/", "Tags": [
            {"Key": "keep", "Value": "no"}]}}, "Status": "Enabled", "Expiration": {"Days": 2}},
        {"ID": "off", "Filter": {"Prefix": "keep/"}, "Status": "Disabled",
         "Expiration": {"Days": 1}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}},
    ]  # fmt: skip
    client.put_bucket_lifecycle_configuration(
        Bucket="aging", LifecycleConfiguration={"Rules": rules}
    )
    assert client.get_bucket_lifecycle_configuration(Bucket="aging")["Rules"] == rules
    bad = [{"ID": "x", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 0}}]
    put_bad = client.put_bucket_lifecycle_configuration
    assert code_of(put_bad, Bucket="aging", LifecycleConfiguration={"Rules": bad}) == (
        "InvalidArgument"
    )

    three_days_ago = time.time() - 3 * 86400
    for key, tags in [("tmp/old", ""), ("tmp/new", ""), ("keep/old", ""),
                      ("logs/old", "keep=no"), ("logs/kept", "keep=yes")]:  # fmt: skip
        client.put_object(Bucket="aging", Key=key, Body=b"x", Tagging=tags)
        if key.endswith("old") or key == "logs/kept":
            os.utime(s3.path / "aging" / key, (three_days_ago, three_days_ago))
    fsobj_cli("gc", str(s3.path))  # applies lifecycle rules, as the daemon does daily
    left = [o["Key"] for o in client.list_objects_v2(Bucket="aging")["Contents"]]
    assert left == ["keep/old", "logs/kept", "tmp/new"]
    client.delete_bucket_lifecycle(Bucket="aging")
    assert code_of(client.get_bucket_lifecycle_configuration, Bucket="aging") == (
        "NoSuchLifecycleConfiguration"
    )


@pytest.mark.same_on_every_store
def test_the_daemon_applies_lifecycle_rules_by_itself(tmp_path):
    from conftest import mounted_at
    from s3_fixtures import S3Mount, free_port, wait_for_port

    port = free_port()
    options = ("--s3", f"127.0.0.1:{port}", "--lifecycle-day", "0.4")  # a day: 0.4 s
    with mounted_at(tmp_path / "store", tmp_path / "fsobj.log", options) as mounted:
        wait_for_port(port)
        client = S3Mount(mounted, port).client()
        client.create_bucket(Bucket="aging")
        rule = {"ID": "tmp", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled",
                "Expiration": {"Days": 1}}  # fmt: skip
        client.put_bucket_lifecycle_configuration(
            Bucket="aging", LifecycleConfiguration={"Rules": [rule]}
        )
        client.put_object(Bucket="aging", Key="tmp/soon-gone", Body=b"x")
        client.put_object(Bucket="aging", Key="kept", Body=b"x")
        deadline = time.monotonic() + 30
        while (mounted.path / "aging" / "tmp" / "soon-gone").exists():
            assert time.monotonic() < deadline, "the rule was never applied"
            time.sleep(0.2)
        assert [o["Key"] for o in client.list_objects_v2(Bucket="aging")["Contents"]] == ["kept"]
