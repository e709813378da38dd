"""A bucket's grants as its directory's POSIX ACL, in-process (fsobj.posix_acl)."""

import os
import stat
import subprocess

import pytest
from conftest import as_user

from fsobj.iam import posix_acl
from fsobj.iam.policy import CANNED, Acl, Grant, Permission, parse_grants
from fsobj.iam.posix_acl import GROUP, GROUP_OBJ, MASK, NO_ID, OTHER, USER, USER_OBJ, AclEntry

P = Permission
OWNER, GID = 1000, 1000


def acl(text: str) -> Acl:
    return Acl(OWNER, parse_grants(text))


def entries(*triples) -> tuple[AclEntry, ...]:
    return tuple(
        sorted(AclEntry(tag, NO_ID if id_ is None else id_, perm) for tag, id_, perm in triples)
    )


def test_grants_become_entries_that_add_up_as_s3_grants_do():
    got = posix_acl.from_grants(acl("uid:1001 WRITE\ngid:50 READ\neveryone READ\n"), GID)
    assert got == entries(
        (USER_OBJ, None, 7),
        (USER, 1001, 7),  # its WRITE, and everyone's READ
        (GROUP_OBJ, None, 5),
        (GROUP, 50, 5),
        (MASK, None, 7),
        (OTHER, None, 5),
    )
    assert posix_acl.mode_of(got) == 0o775


def test_a_private_bucket_has_no_acl_beyond_its_mode():
    got = posix_acl.from_grants(acl(""), GID)
    assert posix_acl.is_minimal(got) and posix_acl.mode_of(got) == 0o700


def test_authenticated_leaves_out_nobody_and_admins_get_everything():
    got = posix_acl.from_grants(Acl(OWNER, CANNED["authenticated-read"]), GID, frozenset({0, 7}))
    assert (USER, 65534, 0) in {(e.tag, e.id, e.perm) for e in got}
    assert (USER, 7, 7) in {(e.tag, e.id, e.perm) for e in got}
    assert (OTHER, NO_ID, 5) in {(e.tag, e.id, e.perm) for e in got}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "everyone READ\n",
        "everyone READ\neveryone WRITE\n",
        "authenticated READ\n",
        "uid:1001 READ\nuid:1002 WRITE\ngid:50 READ\ngid:1000 WRITE\n",
        "uid:1001 FULL_CONTROL\nuid:1002 READ_ACP\nuid:1002 READ\n",
        "authenticated READ\neveryone WRITE\nuid:7 WRITE_ACP\n",
    ],
)
def test_grants_survive_the_way_through_an_acl_and_back(text):
    # (A grant that another one already covers, such as uid:7 READ beside authenticated
    # READ, comes back without it: the ACL says the same.)
    before = acl(text)
    back = posix_acl.to_grants(posix_acl.from_grants(before, GID), before, GID)
    assert back == before.grants


def test_chmod_of_a_bucket_is_a_change_of_grants():
    current = acl("uid:1001 READ\n")
    changed = posix_acl.with_mode(posix_acl.from_grants(current, GID), 0o705)
    assert posix_acl.to_grants(changed, current, GID) == (Grant("everyone", P.READ),)
    # The mask narrows named entries: g-w takes WRITE from every named grantee.
    current = acl("uid:1001 READ\nuid:1001 WRITE\n")
    changed = posix_acl.with_mode(posix_acl.from_grants(current, GID), 0o750)
    assert posix_acl.to_grants(changed, current, GID) == (Grant("uid:1001", P.READ),)


def test_full_control_lost_with_rw_leaves_the_acp_rights():
    current = acl("uid:1001 FULL_CONTROL\n")
    narrowed = entries(
        (USER_OBJ, None, 7),
        (USER, 1001, 5),
        (GROUP_OBJ, None, 0),
        (MASK, None, 5),
        (OTHER, None, 0),
    )
    assert posix_acl.to_grants(narrowed, current, GID) == (
        Grant("uid:1001", P.READ),
        Grant("uid:1001", P.READ_ACP),
        Grant("uid:1001", P.WRITE_ACP),
    )


def test_the_xattr_form_is_linux_s_and_bad_values_are_refused():
    value = posix_acl.encode(entries((USER_OBJ, None, 7), (GROUP_OBJ, None, 5), (OTHER, None, 0)))
    # version 2, then (tag, perm, id) little-endian: what getfacl and the kernel read
    assert value.hex() == "0200000001000700ffffffff04000500ffffffff20000000ffffffff"
    assert posix_acl.decode(value) == posix_acl.decode(value[:4] + value[4:])
    for bad in (
        b"",
        b"\x01\x00\x00\x00",
        value[:-1],
        value[:4] + b"\x40\x00\x07\x00\xff\xff\xff\xff",
    ):
        with pytest.raises(ValueError):
            posix_acl.decode(bad)


def run_as(uid: int, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *command],
        capture_output=True,
        text=True,
    )


def test_getfacl_setfacl_and_chmod_show_and_change_a_bucket_s_grants(mount):
    bucket = f"{mount.path}/facl"
    assert as_user(OWNER, [["mkdir", bucket], ["write", f"{bucket}/obj", "data"]]) == ["ok", "ok"]
    assert run_as(OWNER, "setfacl", "-m", "u:1001:rx,g:50:rwx", bucket).returncode == 0
    text = os.getxattr(bucket, "user.fsobj.acl").decode()
    assert text.splitlines()[1:] == ["gid:50 READ", "gid:50 WRITE", "uid:1001 READ"]
    shown = run_as(OWNER, "getfacl", "-cn", bucket).stdout.split()
    assert shown == [
        "user::rwx",
        "user:1001:r-x",
        "group::---",
        "group:50:rwx",
        "mask::rwx",
        "other::---",
    ]
    assert as_user(1001, [["read", f"{bucket}/obj"], ["write", f"{bucket}/new", "x"]]) == [
        "data",
        "EACCES",
    ]
    assert as_user(1002, [["read", f"{bucket}/obj"]]) == ["EACCES"]
    assert run_as(OWNER, "chmod", "705", bucket).returncode == 0
    assert os.getxattr(bucket, "user.fsobj.acl").decode().splitlines()[1:] == ["everyone READ"]
    # Grants add up, so the bucket's group never has less than everyone: 705 shows as 755.
    assert stat.S_IMODE(os.stat(bucket).st_mode) == 0o755
    assert as_user(1002, [["read", f"{bucket}/obj"], ["list", bucket]]) == ["data", ["obj"]]
    assert run_as(OWNER, "setfacl", "-b", bucket).returncode == 0
    assert run_as(1001, "setfacl", "-m", "u:1001:rwx", bucket).returncode != 0  # owners only
    inside = f"{bucket}/obj"
    refused = run_as(OWNER, "setfacl", "-m", "u:1001:rw", inside)
    assert refused.returncode != 0 and "not supported" in refused.stderr
