"""IAM's model on its own: grants, canned ACLs, owners, administrators, groups."""

import pytest

from fsobj.iam.policy import (
    CANNED,
    Acl,
    AclError,
    Grant,
    Identity,
    Permission,
    Policy,
    parse_grants,
)

P = Permission


def who(uid: int, gid: int | None = None, groups=()) -> Identity:
    return Identity(uid, uid if gid is None else gid, 1, frozenset(groups))


def test_owner_has_full_control_and_grants_apply_by_uid_gid_and_groups():
    acl = Acl(1000, (Grant("uid:1001", P.READ), Grant("gid:50", P.WRITE)))
    assert acl.rights(who(1000)) == frozenset(P)
    assert acl.rights(who(1001)) == {P.READ}
    assert acl.rights(who(1002, gid=50)) == {P.WRITE}
    assert acl.rights(who(1003, groups=[50])) == {P.WRITE}
    assert acl.rights(who(1004)) == frozenset()


def test_full_control_implies_everything_and_write_does_not_imply_read():
    assert Acl(1, (Grant("everyone", P.FULL_CONTROL),)).rights(who(7)) == frozenset(P)
    assert Acl(1, (Grant("everyone", P.WRITE),)).rights(who(7)) == {P.WRITE}


def test_canned_acls():
    def rights(name, uid):
        return Acl(1, CANNED[name]).rights(who(uid))

    assert rights("private", 7) == frozenset()
    assert rights("public-read", 65534) == {P.READ}
    assert rights("public-read-write", 7) == {P.READ, P.WRITE}
    assert rights("authenticated-read", 7) == {P.READ}
    assert rights("authenticated-read", 65534) == frozenset()


def test_administrators_may_do_everything():
    policy = Policy(admins={0, 4242})
    private = Acl(1000)
    assert policy.rights(who(0), private) == frozenset(P)
    assert policy.rights(who(4242), private) == frozenset(P)  # the mounting user
    assert policy.rights(who(1001), private) == frozenset()
    assert policy.rights(who(1001), None) == frozenset(P)  # the top level


def test_acl_text_round_trip_and_errors():
    acl = Acl(1000, parse_grants("owner uid:1000\nuid:7 read\n# a comment\neveryone READ\n"))
    assert acl.to_text() == "owner uid:1000\neveryone READ\nuid:7 READ\n"
    assert parse_grants(acl.to_text()) == acl.grants
    for bad, message in [
        ("uid:7", "expected"),
        ("user:7 READ", "grantee"),
        ("uid:x READ", "grantee"),
        ("uid:7 LIST", "permission"),
    ]:
        with pytest.raises(AclError, match=message):
            parse_grants(bad)
