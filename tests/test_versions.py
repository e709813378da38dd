"""S3 versioning with boto3 and the aws command, against a mount serving S3: versions,
delete markers, reading, copying and removing by version id, listings of versions in
pages, the null version under Suspended; and what the mount's own changes (a close, `mv`
over a file, `rm`) leave in a versioned bucket's history."""

from __future__ import annotations

import errno
import json
import os

import pytest
from botocore.exceptions import ClientError
from conftest import as_user, fsobj_cli
from s3_fixtures import code_of


def versions_of(client, bucket: str, **options) -> list[tuple[str, str, bool, bool]]:
    """(key, version id, is latest, is a delete marker) of every version, in the order
    S3 lists them (by key, the newest first), read a page of `MaxKeys` at a time."""
    found = []
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, **options)
    for page in pages:
        rows = [(v, False) for v in page.get("Versions", [])]
        rows += [(m, True) for m in page.get("DeleteMarkers", [])]
        # boto3 splits a page in two lists; S3's order is by key, then the newest first.
        # Times are to the millisecond: ties go to the latest, then to the later id
        # (fsobj's ids begin with the time they were made).
        rows.sort(key=lambda row: row[0]["VersionId"], reverse=True)
        rows.sort(
            key=lambda row: (
                row[0]["Key"],
                -row[0]["LastModified"].timestamp(),
                not row[0]["IsLatest"],
            )
        )
        found += [(r["Key"], r["VersionId"], r["IsLatest"], marker) for r, marker in rows]
    return found


def test_a_versioned_bucket_keeps_every_version_and_hides_a_deleted_key(s3):
    client = s3.client()
    client.create_bucket(Bucket="kept")
    assert "Status" not in client.get_bucket_versioning(Bucket="kept")
    client.put_bucket_versioning(Bucket="kept", VersioningConfiguration={"Status": "Enabled"})
    assert client.get_bucket_versioning(Bucket="kept")["Status"] == "Enabled"

    first = client.put_object(Bucket="kept", Key="k", Body=b"one")["VersionId"]
    second = client.put_object(Bucket="kept", Key="k", Body=b"two!")["VersionId"]
    assert first != second and "null" not in (first, second)
    assert client.get_object(Bucket="kept", Key="k")["Body"].read() == b"two!"
    old = client.get_object(Bucket="kept", Key="k", VersionId=first)
    assert (old["Body"].read(), old["VersionId"]) == (b"one", first)
    assert client.head_object(Bucket="kept", Key="k", VersionId=first)["ContentLength"] == 3
    assert versions_of(client, "kept") == [
        ("k", second, True, False),
        ("k", first, False, False),
    ]

    deleted = client.delete_object(Bucket="kept", Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert code_of(client.get_object, Bucket="kept", Key="k") == "NoSuchKey"
    with pytest.raises(ClientError) as hidden:  # the marker that hides it says so
        client.head_object(Bucket="kept", Key="k")
    said = hidden.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert (said["x-amz-delete-marker"], said["x-amz-version-id"]) == ("true", marker)
    assert not (s3.path / "kept" / "k").exists()
    assert versions_of(client, "kept") == [
        ("k", marker, True, True),
        ("k", second, False, False),
        ("k", first, False, False),
    ]
    assert code_of(client.get_object, Bucket="kept", Key="k", VersionId=marker) in (
        "MethodNotAllowed",
        "405",
    )
    missing = client.get_object
    assert code_of(missing, Bucket="kept", Key="k", VersionId="0" * 32) == "NoSuchVersion"

    # Removing the delete marker brings the key back, as it was.
    undone = client.delete_object(Bucket="kept", Key="k", VersionId=marker)
    assert undone["DeleteMarker"] is True and undone["VersionId"] == marker
    assert client.get_object(Bucket="kept", Key="k")["VersionId"] == second
    assert (s3.path / "kept" / "k").read_bytes() == b"two!"

    # A past version copied onto its key is a new current version (a restore).
    source = {"Bucket": "kept", "Key": "k", "VersionId": first}
    restored = client.copy_object(Bucket="kept", Key="k", CopySource=source)
    assert restored["CopySourceVersionId"] == first
    assert client.get_object(Bucket="kept", Key="k")["Body"].read() == b"one"
    assert len(versions_of(client, "kept")) == 3

    # The current version removed by its id: the newest one left is current again.
    client.delete_object(Bucket="kept", Key="k", VersionId=restored["VersionId"])
    assert client.get_object(Bucket="kept", Key="k")["VersionId"] == second
    assert (s3.path / "kept" / "k").read_bytes() == b"two!"

    assert code_of(client.delete_bucket, Bucket="kept") == "BucketNotEmpty"
    many = client.delete_objects(
        Bucket="kept",
        Delete={"Objects": [{"Key": "k", "VersionId": v} for v in (first, second)]},
    )
    assert sorted(d["VersionId"] for d in many["Deleted"]) == sorted([first, second])
    assert versions_of(client, "kept") == []
    client.delete_bucket(Bucket="kept")


def test_suspended_versioning_makes_the_null_version_and_keeps_the_others(s3):
    client = s3.client()
    client.create_bucket(Bucket="paused")
    unversioned = client.put_object(Bucket="paused", Key="k", Body=b"before")
    assert "VersionId" not in unversioned  # no versioning yet: no header
    client.put_bucket_versioning(Bucket="paused", VersioningConfiguration={"Status": "Enabled"})
    kept = client.put_object(Bucket="paused", Key="k", Body=b"enabled")["VersionId"]
    client.put_bucket_versioning(Bucket="paused", VersioningConfiguration={"Status": "Suspended"})
    assert client.get_bucket_versioning(Bucket="paused")["Status"] == "Suspended"
    assert client.put_object(Bucket="paused", Key="k", Body=b"s1")["VersionId"] == "null"
    assert client.put_object(Bucket="paused", Key="k", Body=b"s2")["VersionId"] == "null"
    # One null version: the one made before versioning was archived, then replaced.
    assert versions_of(client, "paused") == [("k", "null", True, False), ("k", kept, False, False)]
    assert client.get_object(Bucket="paused", Key="k", VersionId="null")["Body"].read() == b"s2"
    marker = client.delete_object(Bucket="paused", Key="k")
    assert marker["DeleteMarker"] is True and marker["VersionId"] == "null"
    assert versions_of(client, "paused") == [("k", "null", True, True), ("k", kept, False, False)]


def test_version_listings_page_by_key_and_version_and_fold_prefixes(s3):
    client = s3.client()
    client.create_bucket(Bucket="listed")
    client.put_bucket_versioning(Bucket="listed", VersioningConfiguration={"Status": "Enabled"})
    for key in ("a", "b/x", "b/y", "c"):
        for body in (b"1", b"2", b"3"):
            client.put_object(Bucket="listed", Key=key, Body=body)
    client.delete_object(Bucket="listed", Key="c")
    whole = versions_of(client, "listed")
    assert [row[0] for row in whole] == ["a"] * 3 + ["b/x"] * 3 + ["b/y"] * 3 + ["c"] * 4
    assert [row[2] for row in whole if row[0] == "c"] == [True, False, False, False]
    for size in (1, 2, 5):
        assert versions_of(client, "listed", PaginationConfig={"PageSize": size}) == whole
    folded = client.list_object_versions(Bucket="listed", Delimiter="/")
    assert [p["Prefix"] for p in folded["CommonPrefixes"]] == ["b/"]
    assert {v["Key"] for v in folded["Versions"]} == {"a", "c"}
    under = client.list_object_versions(Bucket="listed", Prefix="b/", MaxKeys=4)
    assert under["IsTruncated"] and [v["Key"] for v in under["Versions"]] == ["b/x"] * 3 + ["b/y"]
    assert under["NextKeyMarker"] == "b/y"


def test_the_mounts_changes_in_a_versioned_bucket_keep_what_they_replace(s3):
    client = s3.client()
    client.create_bucket(Bucket="onmount")
    client.put_bucket_versioning(Bucket="onmount", VersioningConfiguration={"Status": "Enabled"})
    bucket = s3.path / "onmount"
    (bucket / "doc").write_bytes(b"draft")
    (bucket / "doc").write_bytes(b"final")  # opened with O_TRUNC, closed: a new version
    (bucket / "other").write_bytes(b"other")
    os.rename(bucket / "other", bucket / "doc")  # mv over: doc's version is kept
    (bucket / "gone").write_bytes(b"bye")
    os.unlink(bucket / "gone")
    rows = versions_of(client, "onmount")
    assert [(key, latest, marker) for key, _, latest, marker in rows] == [
        ("doc", True, False),
        ("doc", False, False),
        ("doc", False, False),
        ("gone", True, True),
        ("gone", False, False),
        ("other", True, True),
        ("other", False, False),
    ]
    bodies = [
        client.get_object(Bucket="onmount", Key=key, VersionId=version)["Body"].read()
        for key, version, _, marker in rows
        if not marker
    ]
    assert bodies == [b"other", b"final", b"draft", b"bye", b"other"]
    # The versions on the mount: read-only files named by version id, in a view that
    # listings never show and no key can be named.
    view = bucket / ".fsobj-versions"
    assert ".fsobj-versions" not in os.listdir(bucket)
    assert sorted(os.listdir(view)) == ["doc", "gone", "other"]
    contents = [version for _, version, _, marker in rows if not marker]
    by_id = dict(zip(contents, bodies, strict=True))
    doc = sorted(version for key, version, _, marker in rows if key == "doc")
    assert sorted(os.listdir(view / "doc")) == doc
    for version in doc:
        assert (view / "doc" / version).read_bytes() == by_id[version]
        assert os.stat(view / "doc" / version).st_size == len(by_id[version])
    assert os.listdir(view / "gone") == [v for k, v, _, m in rows if k == "gone" and not m]
    for refused in (
        lambda: (view / "doc" / doc[0]).write_bytes(b"x"),
        lambda: os.unlink(view / "doc" / doc[0]),
        lambda: os.mkdir(view / "new"),
    ):
        try:
            refused()
            raise AssertionError("the versions' view was changed")
        except OSError as error:
            assert error.errno == errno.EROFS
    assert code_of(client.put_object, Bucket="onmount", Key=".fsobj-versions/x", Body=b"")
    os.mkdir(bucket / "dir")
    try:  # a directory moves key by key: mv copies, which versions keep as S3 sees it
        os.rename(bucket / "dir", bucket / "moved")
        raise AssertionError("a versioned bucket's directory was renamed")
    except OSError as error:
        assert error.errno == 18  # EXDEV


def test_the_aws_command_lists_and_reads_versions(s3, tmp_path):
    s3.client().create_bucket(Bucket="awsv")
    s3.aws(
        "s3api", "put-bucket-versioning", "--bucket", "awsv",
        "--versioning-configuration", "Status=Enabled",
    )  # fmt: skip
    (s3.path / "awsv" / "f").write_bytes(b"old")
    (s3.path / "awsv" / "f").write_bytes(b"new")
    listed = json.loads(s3.aws("s3api", "list-object-versions", "--bucket", "awsv").stdout)
    old = [v["VersionId"] for v in listed["Versions"] if not v["IsLatest"]]
    assert len(old) == 1
    out = tmp_path / "old"
    where = ("--bucket", "awsv", "--key", "f")
    s3.aws("s3api", "get-object", *where, "--version-id", old[0], str(out))
    assert out.read_bytes() == b"old"


def test_the_commands_enable_list_and_restore_versions_on_the_mount(mount):
    bucket = mount / "cmds"
    bucket.mkdir()
    assert fsobj_cli("versioning", str(bucket)).stdout.strip() == "never enabled"
    assert fsobj_cli("versioning", str(bucket), "Enabled").stdout.strip() == "Enabled"
    notes = bucket / "notes.txt"
    for text in (b"first", b"second", b"third"):
        notes.write_bytes(text)
    listed = fsobj_cli("versions", str(notes)).stdout.splitlines()
    assert len(listed) == 3 and listed[0].endswith("(current)")
    ids = [line.split()[0] for line in listed]
    assert ids[0] == os.getxattr(notes, "user.fsobj.version-id").decode()

    fsobj_cli("restore", str(notes), ids[2])  # the first text, as a new version
    assert notes.read_bytes() == b"first"
    assert len(fsobj_cli("versions", str(notes)).stdout.splitlines()) == 4

    notes.unlink()  # a delete marker hides it; its versions stay, and bring it back
    assert not notes.exists()
    assert len(fsobj_cli("versions", str(notes)).stdout.splitlines()) == 4
    fsobj_cli("restore", str(notes), ids[1])
    assert notes.read_bytes() == b"second"
    refused = fsobj_cli("restore", str(notes), "0" * 32, check=False)
    assert refused.returncode != 0 and "No such file" in refused.stderr
    assert fsobj_cli("versioning", str(bucket), "Suspended").stdout.strip() == "Suspended"
    notes.write_bytes(b"null")
    assert os.getxattr(notes, "user.fsobj.version-id") == b"null"


def test_gc_keeps_the_blobs_of_past_versions_and_fsck_checks_them(mount):
    from test_durability import blob_of, damage, fsck

    bucket = mount / "history"
    bucket.mkdir()
    fsobj_cli("versioning", str(bucket), "Enabled")
    for text in (b"one", b"two", b"three"):
        (bucket / "f").write_bytes(text)
    view = bucket / ".fsobj-versions" / "f"
    past = sorted(view.iterdir(), key=lambda p: p.read_bytes())
    assert [p.read_bytes() for p in past] == [b"one", b"three", b"two"]
    fsobj_cli("gc", str(mount.path))
    mount.make_durable()  # the blobs a commit replaced would go now, were they not kept
    assert [p.read_bytes() for p in past] == [b"one", b"three", b"two"]
    oldest = blob_of(past[0], mount.store)
    mount.stop()
    assert fsck(mount.store, "--verify").returncode == 0
    damage(oldest, "delete")
    report = fsck(mount.store)
    assert report.returncode == 1 and "past version" in report.stdout, report.stdout
    assert "of key 'f'" in report.stdout and "is missing" in report.stdout


def test_rclone_sets_versioning_lists_and_reads_old_versions(s3, tmp_path):
    s3.client().create_bucket(Bucket="rcl")
    versioning = s3.rclone("backend", "versioning", "fsobj:rcl", "Enabled").stdout
    assert versioning.strip() == '"Enabled"'  # rclone prints JSON
    source = tmp_path / "f.txt"
    for text in (b"old text", b"new text, longer"):
        source.write_bytes(text)
        s3.rclone("copyto", str(source), "fsobj:rcl/f.txt")
    listed = s3.rclone("lsf", "--s3-versions", "fsobj:rcl").stdout.split()
    assert "f.txt" in listed and len(listed) == 2, listed
    old = next(name for name in listed if name != "f.txt")  # f-vTIMESTAMP.txt
    assert s3.rclone("cat", "--s3-versions", f"fsobj:rcl/{old}").stdout == "old text"
    s3.rclone("backend", "cleanup-hidden", "fsobj:rcl")  # removes the old versions
    assert s3.rclone("lsf", "--s3-versions", "fsobj:rcl").stdout.split() == ["f.txt"]


def test_a_delete_of_no_object_leaves_a_marker_and_parts_copy_from_versions(s3):
    client = s3.client()
    client.create_bucket(Bucket="marks")
    client.put_bucket_versioning(Bucket="marks", VersioningConfiguration={"Status": "Enabled"})
    first = client.delete_object(Bucket="marks", Key="never")  # as S3: a marker all the same
    second = client.delete_object(Bucket="marks", Key="never")
    assert first["DeleteMarker"] and second["DeleteMarker"]
    assert first["VersionId"] != second["VersionId"]
    assert versions_of(client, "marks") == [
        ("never", second["VersionId"], True, True),
        ("never", first["VersionId"], False, True),
    ]

    old = os.urandom(6 << 20)
    kept = client.put_object(Bucket="marks", Key="big", Body=old)["VersionId"]
    client.put_object(Bucket="marks", Key="big", Body=b"small now")
    upload = client.create_multipart_upload(Bucket="marks", Key="joined")["UploadId"]
    source = {"Bucket": "marks", "Key": "big", "VersionId": kept}
    part = client.upload_part_copy(
        Bucket="marks", Key="joined", UploadId=upload, PartNumber=1, CopySource=source
    )
    client.complete_multipart_upload(
        Bucket="marks", Key="joined", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]},
    )  # fmt: skip
    assert client.get_object(Bucket="marks", Key="joined")["Body"].read() == old


def test_past_versions_are_no_easier_to_read_than_their_object(mount):
    bucket = mount / "guarded"
    bucket.mkdir()
    os.chmod(bucket, 0o755)  # others may enter the bucket
    fsobj_cli("versioning", str(bucket), "Enabled")
    for name, mode in (("private", 0o600), ("public", 0o644)):
        for text in (b"one", b"two"):
            (bucket / name).write_bytes(text)
        os.chmod(bucket / name, mode)
    view = bucket / ".fsobj-versions"
    private = [str(p) for p in (view / "private").iterdir()]
    public = [str(p) for p in (view / "public").iterdir()]
    assert len(private) == len(public) == 2
    seen = as_user(1001, [["read", path] for path in private + public])
    assert seen[:2] == ["EACCES", "EACCES"]
    assert sorted(seen[2:]) == ["one", "two"]
    (bucket / "public").unlink()  # gone: its versions are their owner's alone
    assert as_user(1001, [["read", path] for path in public]) == ["EACCES", "EACCES"]
