"""The S3 front end with real clients (boto3, the aws command, curl) against a mount that
serves S3 from its own process: every answer checked, and the two views cross-checked."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from conftest import as_user, fsobj_cli, is_mounted
from s3_fixtures import parse_key, s3_client, wait_for_port


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(ClientError) as failed:
        call(*args, **kwargs)
    return failed.value.response["Error"]["Code"]


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
def test_signatures_keys_and_presigned_urls(s3):
    client = s3.client()
    client.create_bucket(Bucket="signed")
    client.put_object(Bucket="signed", Key="k", Body=b"secret content")
    key_id, secret = s3.key(0)

    def client_with(key_id: str, secret: str):
        return s3_client(s3.endpoint, (key_id, secret))

    assert code_of(client_with(key_id, "x" * 40).list_buckets) == "SignatureDoesNotMatch"
    assert code_of(client_with("FSNOSUCHKEY000000000", secret).list_buckets) == (
        "InvalidAccessKeyId"
    )
    client = s3.client(signature_version="s3v4")  # presigned URLs of Signature Version 4
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": "signed", "Key": "k"}, ExpiresIn=60
    )
    fetched = subprocess.run(["curl", "-sf", url], capture_output=True, timeout=30)
    assert fetched.returncode == 0 and fetched.stdout == b"secret content"
    tampered = url.replace("Key", "Kez") if "Kez" in url else url.replace("/k?", "/j?")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(tampered)
    assert refused.value.code == 403
    expired = client.generate_presigned_url(
        "get_object", Params={"Bucket": "signed", "Key": "k"}, ExpiresIn=1
    )
    time.sleep(2)
    with pytest.raises(urllib.error.HTTPError) as too_late:
        urllib.request.urlopen(expired)
    assert too_late.value.code == 403 and b"expired" in too_late.value.read()
    anonymous = s3.client(None)
    assert code_of(anonymous.get_object, Bucket="signed", Key="k") == "AccessDenied"
    client.put_bucket_acl(Bucket="signed", ACL="public-read")
    assert anonymous.get_object(Bucket="signed", Key="k")["Body"].read() == b"secret content"


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
    assert code_of(client.get_bucket_policy, Bucket="payloads") == "NotImplemented"


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
def test_permissions_over_s3_are_the_mounts(s3):
    """The same cases as several uids through both front ends: the same answers."""
    owner, member, stranger = 1001, 1002, 1003
    client = s3.client(owner)
    client.create_bucket(Bucket="shared")
    client.put_bucket_acl(Bucket="shared", GrantRead="id=uid:1002", GrantWrite="id=uid:1002")
    root = s3.path / "shared"
    for side in ("m", "s"):  # one set of targets for each front end
        for name, mode in (("open", 0o644), ("closed", 0o600), ("shared-rw", 0o666)):
            client.put_object(Bucket="shared", Key=f"{name}-{side}", Body=b"x")
            os.chmod(root / f"{name}-{side}", mode)
        client.put_object(Bucket="shared", Key=f"private-{side}/inside", Body=b"x")
        os.chmod(root / f"private-{side}", 0o700)
        client.put_object(Bucket="shared", Key=f"sticky-{side}/theirs", Body=b"x")
        os.chmod(root / f"sticky-{side}", 0o1777)
        os.chmod(root / f"sticky-{side}" / "theirs", 0o666)

    def over_s3(c, uid: int, case: str, key: str) -> str:
        calls = {
            "read": lambda: c.get_object(Bucket="shared", Key=key)["Body"].read(),
            "write": lambda: c.put_object(Bucket="shared", Key=key, Body=b"new"),
            "delete": lambda: c.delete_object(Bucket="shared", Key=key),
            "list": lambda: c.list_objects_v2(Bucket="shared"),
        }
        try:
            calls[case]()
        except ClientError as error:
            return "denied" if error.response["Error"]["Code"] == "AccessDenied" else "other"
        return "ok"

    cases = [
        ("read", "open"),
        ("read", "closed"),
        ("read", "private/inside"),
        ("write", "new-{uid}"),
        ("write", "open"),
        ("write", "shared-rw"),
        ("write", "private/new-{uid}"),
        ("write", "sticky/new-{uid}"),
        ("delete", "sticky/theirs"),
        ("delete", "closed"),
        ("list", ""),
    ]
    on_mount_op = {"read": "read", "write": "write", "delete": "unlink", "list": "list"}
    for uid in (member, stranger):
        keys = []
        for case, key in cases:
            key = key.format(uid=uid)
            head, _, tail = key.partition("/")
            keys.append(
                (
                    case,
                    f"{head}-m/{tail}" if tail else f"{key}-m",
                    f"{head}-s/{tail}" if tail else f"{key}-s",
                )
            )
        steps = []
        for case, mounted, _ in keys:
            path = str(root) if case == "list" else str(root / mounted)
            steps.append([on_mount_op[case], path, *(["n"] if case == "write" else [])])
        mount_answers = [
            "ok" if r not in ("EACCES", "EPERM") else "denied" for r in as_user(uid, steps)
        ]
        c = s3.client(uid)
        s3_answers = [over_s3(c, uid, case, key) for case, _, key in keys]
        assert s3_answers == mount_answers, (uid, cases, mount_answers, s3_answers)
        assert set(s3_answers) == ({"ok", "denied"} if uid == member else {"denied"})
    assert (root / "new-1002-s").stat().st_uid == member
    assert code_of(s3.client(member).put_bucket_acl, Bucket="shared", ACL="private") == (
        "AccessDenied"
    )
    acl = client.get_bucket_acl(Bucket="shared")
    assert {(g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"]} == {
        ("uid:1001", "FULL_CONTROL"),
        ("uid:1002", "READ"),
        ("uid:1002", "WRITE"),
    }


@pytest.fixture
def team_member():
    """A real user in the system's group database: uid 2101 (own group 2101) and a member
    of the group `fsobj-team` (gid 2100). Removed afterwards, also after a failure."""

    def remove() -> None:
        subprocess.run(["userdel", "fsobj-member"], capture_output=True)
        subprocess.run(["groupdel", "fsobj-team"], capture_output=True)

    remove()  # what an interrupted earlier run may have left
    subprocess.run(["groupadd", "--gid", "2100", "fsobj-team"], check=True)
    user = ["--uid", "2101", "--user-group", "--groups", "fsobj-team", "fsobj-member"]
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", *user], check=True
    )
    try:
        yield 2101, 2100
    finally:
        remove()


@pytest.mark.same_on_every_store
def test_a_key_acts_with_its_users_groups(s3, team_member):
    """A key's uid brings the groups the group database gives it, on the bucket's grants
    and on the objects' group bits, as that user's processes have them on the mount."""
    member, team = team_member
    stranger = 1003
    client = s3.client(1001)
    client.create_bucket(Bucket="teamwork")
    client.put_bucket_acl(
        Bucket="teamwork", GrantRead=f"id=gid:{team}", GrantWrite=f"id=gid:{team}"
    )
    root = s3.path / "teamwork"
    for side in ("m", "s"):
        client.put_object(Bucket="teamwork", Key=f"plan-{side}", Body=b"team only")
        client.put_object(Bucket="teamwork", Key=f"closed-{side}", Body=b"owner only")
        client.put_object(Bucket="teamwork", Key=f"room-{side}/x", Body=b"x")
        os.chown(root / f"plan-{side}", 1001, team)
        os.chmod(root / f"plan-{side}", 0o640)
        os.chmod(root / f"closed-{side}", 0o600)
        os.chown(root / f"room-{side}", 1001, team)
        os.chmod(root / f"room-{side}", 0o770)

    def over_s3(c, case: str, key: str) -> str:
        try:
            if case == "read":
                c.get_object(Bucket="teamwork", Key=key)["Body"].read()
            else:
                c.put_object(Bucket="teamwork", Key=key, Body=b"new")
        except ClientError as error:
            return "denied" if error.response["Error"]["Code"] == "AccessDenied" else "other"
        return "ok"

    cases = [("read", "plan"), ("read", "closed"), ("write", "room/new"), ("write", "top")]
    for uid, groups, expected in (
        (member, (member, team), ["ok", "denied", "ok", "ok"]),
        (stranger, (), ["denied"] * 4),
    ):
        steps = []
        for case, key in cases:
            head, _, tail = key.partition("/")
            path = root / (f"{head}-m/{tail}" if tail else f"{key}-m")
            steps.append([case, str(path), *(["n"] if case == "write" else [])])
        on_mount = [
            "denied" if r in ("EACCES", "EPERM") else "ok"
            for r in as_user(uid, steps, groups=groups)
        ]
        c = s3.client(uid)
        answers = []
        for case, key in cases:
            head, _, tail = key.partition("/")
            answers.append(over_s3(c, case, f"{head}-s/{tail}" if tail else f"{key}-s"))
        assert on_mount == answers == expected, (uid, on_mount, answers)
    assert (root / "room-s" / "new").stat().st_uid == member
    # Both front ends' denials are one audit line in one format: who lacked what, where.
    log = s3.mount.log.read_text()
    assert (
        "refused (AccessDenied): denied: uid 1003 pid 0 lacks x on 'teamwork' on bucket teamwork"
        in log
    )
    assert (
        "refused (AccessDenied): denied: uid 2101 pid 0 lacks r on 'closed-s' on bucket teamwork"
        in log
    )


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
    assert os.listdir(s3.mount.store / "uploads") == []


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
def test_an_objects_acl_is_its_owner_and_mode_bits(s3):
    owner = s3.client(1001)
    owner.create_bucket(Bucket="object-acls")
    owner.put_bucket_acl(Bucket="object-acls", GrantRead="id=uid:1002")
    owner.put_object(Bucket="object-acls", Key="k", Body=b"v")
    acl = owner.get_object_acl(Bucket="object-acls", Key="k")
    assert acl["Owner"]["ID"] == "uid:1001"
    seen = {
        (g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"]) for g in acl["Grants"]
    }
    assert seen == {
        ("uid:1001", "FULL_CONTROL"),
        ("gid:1001", "READ"),
        ("http://acs.amazonaws.com/groups/global/AllUsers", "READ"),
    }
    owner.put_object_acl(Bucket="object-acls", Key="k", ACL="private")
    assert oct((s3.path / "object-acls" / "k").stat().st_mode & 0o777) == "0o600"
    assert code_of(s3.client(1002).get_object, Bucket="object-acls", Key="k") == "AccessDenied"
    assert code_of(
        s3.client(1002).put_object_acl, Bucket="object-acls", Key="k", ACL="public-read"
    ) == ("AccessDenied")
    assert code_of(
        owner.put_object_acl, Bucket="object-acls", Key="k", ACL="authenticated-read"
    ) == ("NotImplemented")
    owner.put_object_acl(Bucket="object-acls", Key="k", ACL="public-read")
    assert s3.client(1002).get_object(Bucket="object-acls", Key="k")["Body"].read() == b"v"


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


def test_keys_on_an_unmounted_store(tmp_path):
    store = str(tmp_path / "store")
    made = fsobj_cli("key", "create", "--store", store, "--user", "root").stdout
    key_id = made.split("access key id:")[1].split()[0]
    assert "acts as uid:       0" in made
    assert fsobj_cli("key", "ls", "--store", store).stdout == f"{key_id} uid:0\n"
    fsobj_cli("key", "rm", "--store", store, "--key-id", key_id)
    assert fsobj_cli("key", "ls", "--store", store).stdout == ""
    missing = fsobj_cli("key", "rm", "--store", store, "--key-id", key_id, check=False)
    assert missing.returncode == 1 and "no access key" in missing.stderr
    unknown = fsobj_cli("key", "create", "--store", store, "--user", "no-such-user", check=False)
    assert unknown.returncode == 1 and "no user" in unknown.stderr


@pytest.mark.same_on_every_store
def test_a_presigned_put_with_expect_100_continue(s3, tmp_path):
    client = s3.client(signature_version="s3v4")
    client.create_bucket(Bucket="uploads")
    url = client.generate_presigned_url(
        "put_object", Params={"Bucket": "uploads", "Key": "from-curl"}, ExpiresIn=60
    )
    body = tmp_path / "body"
    body.write_bytes(os.urandom(3 << 20))
    sent = subprocess.run(
        ["curl", "-sf", "-v", "-H", "Expect: 100-continue", "-T", str(body), url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    assert "> Expect: 100-continue" in sent.stderr and "< HTTP/1.1 100" in sent.stderr
    assert (s3.path / "uploads" / "from-curl").read_bytes() == body.read_bytes()


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
    ) == "InvalidArgument"  # fmt: skip
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


def test_a_removed_key_stops_at_once(s3):
    client = s3.client(1001)
    client.create_bucket(Bucket="revoked")
    key_id, _ = s3.key(1001)
    fsobj_cli("key", "rm", str(s3.path), "--key-id", key_id)
    assert code_of(client.list_objects_v2, Bucket="revoked") == "InvalidAccessKeyId"
    listed = fsobj_cli("key", "ls", str(s3.path)).stdout
    assert key_id not in listed
