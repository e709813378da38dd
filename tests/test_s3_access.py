"""Who may do what over S3, with real clients against a mount that serves S3: signatures,
access keys and their users' groups, presigned URLs, and permissions that are the mount's."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from conftest import as_user, fsobj_cli
from s3_fixtures import code_of, s3_client


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


def test_a_removed_key_stops_at_once(s3):
    client = s3.client(1001)
    client.create_bucket(Bucket="revoked")
    key_id, _ = s3.key(1001)
    fsobj_cli("key", "rm", str(s3.path), "--key-id", key_id)
    assert code_of(client.list_objects_v2, Bucket="revoked") == "InvalidAccessKeyId"
    listed = fsobj_cli("key", "ls", str(s3.path)).stdout
    assert key_id not in listed
