"""Bucket policies: the rules in-process (which statement decides, principals, actions,
resources, conditions), then with boto3 and awscli against a mount serving S3, beside the
bucket's ACL and the mode bits, for several users."""

from __future__ import annotations

import json
import os

import pytest
from conftest import fsobj_cli
from s3_fixtures import code_of

from fsobj.iam.policy import Identity
from fsobj.refusals import Refused
from fsobj.service.bucket_policy import ALLOW, DENY, Asked, decide, is_public, parse

ALICE = Identity(1001, 1001, 0)
ANYONE = Identity(65534, 65534, 0)


def statement(effect: str, action: str, resource: str, principal="*", **more) -> dict:
    return {
        "Effect": effect,
        "Principal": principal,
        "Action": action,
        "Resource": resource,
        **more,
    }


def asked(action: str, key: str | None, who=ALICE, **context: str) -> Asked:
    resource = "arn:aws:s3:::site" + ("" if key is None else f"/{key}")
    return Asked(action, resource, who, {"aws:sourceip": "127.0.0.1", **context})


def test_a_deny_wins_an_allow_lets_through_and_silence_leaves_it_to_the_acl():
    policy = {
        "Statement": [
            statement(ALLOW, "s3:GetObject", "arn:aws:s3:::site/public/*"),
            statement(DENY, "s3:*", "arn:aws:s3:::site/public/secret*"),
            statement(ALLOW, "s3:Put*", "arn:aws:s3:::site/inbox/*", {"AWS": ["1001"]}),
        ]
    }
    assert decide(policy, asked("s3:GetObject", "public/page.html", ANYONE)) == ALLOW
    assert decide(policy, asked("s3:GetObject", "public/secret.txt", ALICE)) == DENY
    assert decide(policy, asked("s3:GetObject", "private/x", ANYONE)) is None
    assert decide(policy, asked("s3:PutObject", "inbox/a", ALICE)) == ALLOW
    assert decide(policy, asked("s3:PutObject", "inbox/a", ANYONE)) is None  # not named
    assert decide(policy, asked("s3:DeleteObject", "inbox/a", ALICE)) is None


def test_conditions_on_the_address_the_prefix_and_the_transport():
    policy = {
        "Statement": [
            statement(
                DENY, "s3:*", "arn:aws:s3:::site/*",
                Condition={"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.0/8"]}},
            ),
            statement(
                ALLOW, "s3:ListBucket", "arn:aws:s3:::site",
                Condition={"StringLike": {"s3:prefix": ["docs/*", ""]}},
            ),
            statement(
                DENY, "s3:PutObject", "arn:aws:s3:::site/*",
                Condition={"Bool": {"aws:SecureTransport": "false"}},
            ),
        ]
    }  # fmt: skip
    assert decide(policy, asked("s3:GetObject", "k", **{"aws:sourceip": "192.0.2.7"})) == DENY
    assert decide(policy, asked("s3:GetObject", "k")) is None
    assert decide(policy, asked("s3:ListBucket", None, **{"s3:prefix": "docs/2026"})) == ALLOW
    assert decide(policy, asked("s3:ListBucket", None, **{"s3:prefix": "home/"})) is None
    # A key the request does not carry makes the condition false: no Allow.
    assert decide(policy, asked("s3:ListBucket", None)) is None
    assert decide(policy, asked("s3:PutObject", "k", **{"aws:securetransport": "false"})) == DENY


def test_a_policy_is_checked_when_it_is_set():
    good = json.dumps({"Statement": [statement(ALLOW, "s3:GetObject", "arn:aws:s3:::site/*")]})
    assert is_public(parse(good.encode(), "site"))
    for bad in (
        b"not json",
        b'{"Statement": []}',
        json.dumps({"Statement": [statement("Maybe", "s3:GetObject", "arn:aws:s3:::site/*")]}),
        json.dumps({"Statement": [statement(ALLOW, "s3:GetObject", "arn:aws:s3:::other/*")]}),
        json.dumps({"Statement": [{"Effect": ALLOW, "Action": "s3:*", "Resource": "*"}]}),
        json.dumps(
            {"Statement": [statement(ALLOW, "s3:*", "arn:aws:s3:::site", Condition={"Odd": {}})]}
        ),
    ):
        with pytest.raises(Refused):
            parse(bad if isinstance(bad, bytes) else bad.encode(), "site")


def test_policies_over_s3_beside_the_acl(s3):
    owner = s3.client(1001)
    owner.create_bucket(Bucket="site")
    owner.put_object(Bucket="site", Key="public/index.html", Body=b"<h1>hello</h1>")
    owner.put_object(Bucket="site", Key="public/secret.txt", Body=b"no")
    owner.put_object(Bucket="site", Key="private/notes", Body=b"mine")
    anonymous, other = s3.client(None), s3.client(1002)
    assert code_of(anonymous.get_object, Bucket="site", Key="public/index.html") == "AccessDenied"
    assert code_of(owner.get_bucket_policy, Bucket="site") == "NoSuchBucketPolicy"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            statement(ALLOW, "s3:GetObject", "arn:aws:s3:::site/public/*"),
            statement(DENY, "s3:GetObject", "arn:aws:s3:::site/public/secret*"),
            statement(ALLOW, ["s3:PutObject", "s3:ListBucket"], ["arn:aws:s3:::site",
                      "arn:aws:s3:::site/inbox/*"], {"AWS": "arn:aws:iam::000000000000:user/1002"}),
        ],
    }  # fmt: skip
    done = s3.aws("s3api", "put-bucket-policy", "--bucket", "site", "--policy", json.dumps(policy),
                  uid=1001)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(owner.get_bucket_policy(Bucket="site")["Policy"]) == policy
    assert owner.get_bucket_policy_status(Bucket="site")["PolicyStatus"]["IsPublic"]
    # Everyone reads what the policy opens, and nothing it denies or leaves closed.
    page = anonymous.get_object(Bucket="site", Key="public/index.html")
    assert page["Body"].read() == b"<h1>hello</h1>"
    assert code_of(anonymous.get_object, Bucket="site", Key="public/secret.txt") == "AccessDenied"
    assert code_of(anonymous.get_object, Bucket="site", Key="private/notes") == "AccessDenied"
    # The Deny holds against the owner too, whatever the ACL says.
    assert code_of(owner.get_object, Bucket="site", Key="public/secret.txt") == "AccessDenied"
    # uid 1002 may list and write its inbox; the objects are the bucket owner's.
    assert [o["Key"] for o in other.list_objects_v2(Bucket="site")["Contents"]][:1] == [
        "private/notes"
    ]
    other.put_object(Bucket="site", Key="inbox/from-1002", Body=b"hi")
    assert (s3.path / "site" / "inbox" / "from-1002").stat().st_uid == 1001
    assert code_of(other.put_object, Bucket="site", Key="elsewhere", Body=b"x") == "AccessDenied"
    assert code_of(other.delete_object, Bucket="site", Key="inbox/from-1002") == "AccessDenied"
    # DeleteObjects weighs each key: a Deny holds there too.
    owner.put_bucket_policy(Bucket="site", Policy=json.dumps({"Statement": [
        statement(DENY, "s3:DeleteObject", "arn:aws:s3:::site/private/*")]}))  # fmt: skip
    answer = owner.delete_objects(
        Bucket="site", Delete={"Objects": [{"Key": "private/notes"}, {"Key": "public/index.html"}]}
    )
    assert [e["Key"] for e in answer["Errors"]] == ["private/notes"]
    assert os.path.exists(s3.path / "site" / "private" / "notes")
    # The owner can always take the policy away; others may not touch it.
    assert code_of(other.delete_bucket_policy, Bucket="site") == "AccessDenied"
    bad = code_of(owner.put_bucket_policy, Bucket="site", Policy='{"Statement": "nope"}')
    assert bad == "MalformedPolicy"
    owner.delete_bucket_policy(Bucket="site")
    assert code_of(owner.get_bucket_policy, Bucket="site") == "NoSuchBucketPolicy"
    owner.delete_object(Bucket="site", Key="private/notes")


def test_block_public_access(s3):
    owner, anonymous = s3.client(1001), s3.client(None)
    owner.create_bucket(Bucket="shut")
    owner.put_object(Bucket="shut", Key="k", Body=b"v")
    assert code_of(owner.get_public_access_block, Bucket="shut") == (
        "NoSuchPublicAccessBlockConfiguration"
    )
    owner.put_bucket_acl(Bucket="shut", ACL="public-read")
    assert anonymous.list_objects_v2(Bucket="shut")["KeyCount"] == 1
    every = {name: True for name in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                     "RestrictPublicBuckets")}  # fmt: skip
    owner.put_public_access_block(Bucket="shut", PublicAccessBlockConfiguration=every)
    assert owner.get_public_access_block(Bucket="shut")["PublicAccessBlockConfiguration"] == every
    # IgnorePublicAcls: the public grant stays (GetBucketAcl shows it) but opens nothing.
    assert code_of(anonymous.list_objects_v2, Bucket="shut") == "AccessDenied"
    grants = owner.get_bucket_acl(Bucket="shut")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in grants)
    # BlockPublicAcls: no new public ACL, on the bucket or an object.
    assert code_of(owner.put_bucket_acl, Bucket="shut", ACL="public-read-write") == ("AccessDenied")
    assert code_of(owner.put_object_acl, Bucket="shut", Key="k", ACL="public-read") == (
        "AccessDenied"
    )
    owner.put_object_acl(Bucket="shut", Key="k", ACL="private")
    # BlockPublicPolicy: no policy that opens the bucket to everyone.
    public = json.dumps({"Statement": [statement(ALLOW, "s3:GetObject", "arn:aws:s3:::shut/*")]})
    assert code_of(owner.put_bucket_policy, Bucket="shut", Policy=public) == "AccessDenied"
    # RestrictPublicBuckets: a public policy set before acts for the owner alone.
    owner.delete_public_access_block(Bucket="shut")
    owner.put_bucket_acl(Bucket="shut", ACL="private")
    owner.put_bucket_policy(Bucket="shut", Policy=public)
    assert anonymous.get_object(Bucket="shut", Key="k")["Body"].read() == b"v"
    owner.put_public_access_block(
        Bucket="shut", PublicAccessBlockConfiguration={"RestrictPublicBuckets": True}
    )
    assert code_of(anonymous.get_object, Bucket="shut", Key="k") == "AccessDenied"
    assert owner.get_object(Bucket="shut", Key="k")["Body"].read() == b"v"


def test_object_ownership(s3):
    owner, writer = s3.client(1001), s3.client(1002)
    owner.create_bucket(Bucket="owned", ObjectOwnership="BucketOwnerEnforced")
    controls = owner.get_bucket_ownership_controls(Bucket="owned")["OwnershipControls"]
    assert controls["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    # uid 1002 may write there (granted on the mount, where ownership controls do not act).
    fsobj_cli("acl", "grant", str(s3.path / "owned"), "--uid", "1002", "--perm", "FULL_CONTROL")
    # ACLs are off: none may be set (but the harmless canned ones), and what S3 writes is
    # the bucket owner's.
    assert code_of(owner.put_bucket_acl, Bucket="owned", ACL="public-read") == (
        "AccessControlListNotSupported"
    )
    writer.put_object(Bucket="owned", Key="from-1002", Body=b"x")
    assert (s3.path / "owned" / "from-1002").stat().st_uid == 1001
    assert code_of(
        writer.put_object_acl, Bucket="owned", Key="from-1002", ACL="public-read"
    ) == "AccessControlListNotSupported"  # fmt: skip
    # ObjectWriter: the writer keeps what it writes, as on the mount.
    owner.put_bucket_ownership_controls(
        Bucket="owned", OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
    )
    writer.put_object(Bucket="owned", Key="kept", Body=b"x")
    assert (s3.path / "owned" / "kept").stat().st_uid == 1002
    owner.delete_bucket_ownership_controls(Bucket="owned")
    assert code_of(owner.get_bucket_ownership_controls, Bucket="owned") == (
        "OwnershipControlsNotFoundError"
    )
