"""Object lock with boto3 against a mount serving S3, and on the mount: a locked version
is removed by no route (DELETE by version id, the mount's attributes; lifecycle rules:
test_lifecycle.py), a
GOVERNANCE retention gives way to a bypass, COMPLIANCE and legal holds to nothing."""

from __future__ import annotations

import datetime
import errno
import os

from s3_fixtures import code_of


def days_from_now(days: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)


def test_locked_versions_stay_until_their_retention_ends(s3):
    client = s3.client()
    client.create_bucket(Bucket="vault", ObjectLockEnabledForBucket=True)
    assert client.get_bucket_versioning(Bucket="vault")["Status"] == "Enabled"
    config = client.get_object_lock_configuration(Bucket="vault")["ObjectLockConfiguration"]
    assert config == {"ObjectLockEnabled": "Enabled"}
    suspend = {"Status": "Suspended"}
    assert (
        code_of(client.put_bucket_versioning, Bucket="vault", VersioningConfiguration=suspend)
        == "InvalidBucketState"
    )

    client.put_object_lock_configuration(
        Bucket="vault",
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    governed = client.put_object(Bucket="vault", Key="g", Body=b"governed")["VersionId"]
    retention = client.get_object_retention(Bucket="vault", Key="g")["Retention"]
    assert retention["Mode"] == "GOVERNANCE"
    assert retention["RetainUntilDate"] > days_from_now(0.9)
    head = client.head_object(Bucket="vault", Key="g")
    assert head["ObjectLockMode"] == "GOVERNANCE"

    delete = client.delete_object
    assert code_of(delete, Bucket="vault", Key="g", VersionId=governed) == "AccessDenied"
    # A rewrite is no route to it: a new version goes on top, the locked one stays.
    client.put_object(Bucket="vault", Key="g", Body=b"newer")
    got = client.get_object(Bucket="vault", Key="g", VersionId=governed)
    assert got["Body"].read() == b"governed"
    delete(Bucket="vault", Key="g", VersionId=governed, BypassGovernanceRetention=True)
    assert code_of(client.get_object, Bucket="vault", Key="g", VersionId=governed) == (
        "NoSuchVersion"
    )

    until = days_from_now(2)
    complied = client.put_object(
        Bucket="vault", Key="c", Body=b"kept", ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )["VersionId"]  # fmt: skip
    assert (
        code_of(delete, Bucket="vault", Key="c", VersionId=complied, BypassGovernanceRetention=True)
        == "AccessDenied"
    )
    shorter = {"Mode": "COMPLIANCE", "RetainUntilDate": days_from_now(1)}
    put_retention = client.put_object_retention
    assert code_of(
        put_retention, Bucket="vault", Key="c", VersionId=complied, Retention=shorter,
        BypassGovernanceRetention=True,
    ) == "AccessDenied"  # fmt: skip
    longer = {"Mode": "COMPLIANCE", "RetainUntilDate": days_from_now(3)}
    put_retention(Bucket="vault", Key="c", VersionId=complied, Retention=longer)

    held = client.put_object(Bucket="vault", Key="h", Body=b"held")["VersionId"]
    client.put_object_retention(
        Bucket="vault", Key="h", VersionId=held, BypassGovernanceRetention=True,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": days_from_now(-1)},
    )  # fmt: skip
    client.put_object_legal_hold(Bucket="vault", Key="h", LegalHold={"Status": "ON"})
    assert client.get_object_legal_hold(Bucket="vault", Key="h")["LegalHold"]["Status"] == "ON"
    assert (
        code_of(delete, Bucket="vault", Key="h", VersionId=held, BypassGovernanceRetention=True)
        == "AccessDenied"
    )
    client.put_object_legal_hold(Bucket="vault", Key="h", LegalHold={"Status": "OFF"})
    delete(Bucket="vault", Key="h", VersionId=held)  # its retention has ended: it goes

    # On the mount: the retention and legal hold of the current version, by the same rules.
    on_mount = s3.path / "vault" / "c"
    assert os.getxattr(on_mount, "user.fsobj.retention").startswith(b"COMPLIANCE ")
    for change in (
        lambda: os.removexattr(on_mount, "user.fsobj.retention"),
        lambda: os.setxattr(on_mount, "user.fsobj.retention", b"GOVERNANCE 2030-01-01T00:00:00Z"),
    ):
        try:
            change()
            raise AssertionError("a COMPLIANCE retention was lifted on the mount")
        except OSError as error:
            assert error.errno == errno.EPERM
    os.setxattr(s3.path / "vault" / "g", "user.fsobj.legal-hold", b"ON")
    assert client.get_object_legal_hold(Bucket="vault", Key="g")["LegalHold"]["Status"] == "ON"
    (s3.path / "vault" / "c").unlink()  # a delete marker on top; the version stays
    assert client.get_object(Bucket="vault", Key="c", VersionId=complied)["Body"].read() == (
        b"kept"
    )
