"""Access control through a real mount, by processes running as other users."""

import pytest
from conftest import as_user

from fsobj.iam import CANNED, Permission

OWNER, GRANTEE, MEMBER, OTHER, ANON = 1000, 1001, 1002, 1004, 65534
GROUP = 2000
ROLES = {
    "owner": {"uid": OWNER},
    "grantee": {"uid": GRANTEE},
    "member": {"uid": MEMBER, "groups": (GROUP,)},
    "other": {"uid": OTHER},
    "anon": {"uid": ANON},
    "admin": {"uid": 0},
}
ALL = frozenset(Permission)
P = Permission


def rights_of(role: str, grants: list[tuple[str, Permission]]) -> frozenset[Permission]:
    """The model: what a role may do under `grants`."""
    if role in ("owner", "admin"):
        return ALL
    uid = ROLES[role]["uid"]
    granted = set()
    for grantee, permission in grants:
        if (
            grantee == "everyone"
            or (grantee == "authenticated" and uid != ANON)
            or grantee == f"uid:{uid}"
            or (grantee.startswith("gid:") and int(grantee[4:]) in ROLES[role].get("groups", ()))
        ):
            granted.add(permission)
    return ALL if P.FULL_CONTROL in granted else frozenset(granted)


GRANTEES = (("uid", f"uid:{GRANTEE}"), ("gid", f"gid:{GROUP}"), ("everyone", "everyone"))
CASES = [
    (f"{kind}-{perm.value}", [(grantee, perm)]) for perm in Permission for kind, grantee in GRANTEES
]
CASES += [
    (f"canned-{name}", [(g.grantee, g.permission) for g in grants])
    for name, grants in CANNED.items()
]


def acl_text(grants) -> str:
    return "".join(f"{grantee} {perm.value}\n" for grantee, perm in grants)


def steps_for(bucket: str, role: str, acl: str) -> list[tuple[list, tuple[Permission, ...]]]:
    """Each operation a role tries, with the permissions of which it needs one."""
    me = f"{bucket}/{role}"
    return [
        (["list", bucket], (P.READ,)),
        (["chdir", bucket], (P.READ,)),
        (["stat", f"{me}-obj"], (P.READ, P.WRITE)),
        (["read", f"{me}-obj"], (P.READ,)),
        (["getxattr", f"{me}-obj", "user.k"], (P.READ,)),
        (["getxattr", f"{me}-obj", "user.fsobj.etag"], (P.READ,)),
        (["listxattr", f"{me}-obj"], (P.READ,)),
        (["access", f"{me}-obj", "r"], (P.READ,)),
        (["access", f"{me}-obj", "w"], (P.WRITE,)),
        (["write", f"{me}-new", "new"], (P.WRITE,)),
        (["write", f"{me}-over", "overwritten"], (P.WRITE,)),
        (["unlink", f"{me}-victim"], (P.WRITE,)),
        (["rename", f"{me}-mover", f"{me}-moved"], (P.WRITE,)),
        (["setxattr", f"{me}-obj", "user.k2", "v2"], (P.WRITE,)),
        (["utime", f"{me}-obj"], (P.WRITE,)),
        (["chmod", f"{me}-obj", "600"], (P.WRITE,)),
        (["mkdir", f"{me}-dir"], (P.WRITE,)),
        (["symlink", f"{role}-obj", f"{me}-link"], (P.WRITE,)),
        (["getxattr", bucket, "user.fsobj.acl"], (P.READ_ACP,)),
        (["setxattr", bucket, "user.fsobj.acl", acl], (P.WRITE_ACP,)),
    ]


def shown_mode(rights: frozenset[Permission]) -> str:
    if rights == ALL:
        return oct(0o644)
    return oct(((4 if P.READ in rights else 0) | (2 if P.WRITE in rights else 0)) * 0o111)


@pytest.mark.parametrize(("case", "grants"), CASES, ids=[c[0] for c in CASES])
def test_permission_matrix(mount, case, grants):
    bucket = f"{mount.path}/{case.lower().replace('_', '-')}"
    acl = acl_text(grants)
    setup = [["mkdir", bucket]]
    for role in ROLES:
        for name in ("obj", "over", "victim", "mover"):
            setup.append(["write", f"{bucket}/{role}-{name}", "data"])
        setup.append(["setxattr", f"{bucket}/{role}-obj", "user.k", "v"])
    setup.append(["setxattr", bucket, "user.fsobj.acl", acl])
    assert set(as_user(OWNER, setup)) == {"ok"}

    failures = []
    for role, identity in ROLES.items():
        rights = rights_of(role, grants)
        steps = steps_for(bucket, role, acl)
        results = as_user(identity["uid"], [s for s, _ in steps], groups=identity.get("groups", ()))
        for (step, needed), result in zip(steps, results, strict=True):
            allowed = bool(rights.intersection(needed))
            if step[0] == "access":
                ok = result is allowed
            elif allowed:
                ok = result not in ("EACCES", "EPERM") and not str(result).startswith("E")
            else:
                ok = result == "EACCES"
            if step[0] == "stat" and allowed:
                ok = result == shown_mode(rights)
            if not ok:
                failures.append(f"{role} {step[0]} {step[1:]}: got {result}, allowed={allowed}")
    assert not failures, "\n".join(failures)
