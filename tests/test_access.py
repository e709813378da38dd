"""Access control through a real mount, by processes running as other users: every role
against every kind of grant, each operation's result against the model of
docs/security.md."""

import pytest
from conftest import as_user

from fsobj.iam.policy import CANNED, Permission

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


def steps_for(bucket: str, role: str, acl: str) -> list[list]:
    """Each operation a role tries; the objects are the owner's, mode 0644."""
    me = f"{bucket}/{role}"
    return [
        ["list", bucket],
        ["chdir", bucket],
        ["stat", f"{me}-obj"],
        ["read", f"{me}-obj"],
        ["getxattr", f"{me}-obj", "user.k"],
        ["getxattr", f"{me}-obj", "user.fsobj.etag"],
        ["listxattr", f"{me}-obj"],
        ["access", f"{me}-obj", "r"],
        ["access", f"{me}-obj", "w"],
        ["write", f"{me}-new", "new"],
        ["write", f"{me}-over", "overwritten"],
        ["unlink", f"{me}-victim"],
        ["rename", f"{me}-mover", f"{me}-moved"],
        ["setxattr", f"{me}-obj", "user.k2", "v2"],
        ["utime", f"{me}-obj"],
        ["chmod", f"{me}-obj", "600"],
        ["mkdir", f"{me}-dir"],
        ["symlink", f"{role}-obj", f"{me}-link"],
        ["getxattr", bucket, "user.fsobj.acl"],
        ["setxattr", bucket, "user.fsobj.acl", acl],
    ]


def expected(role: str, rights: frozenset[Permission], step: list) -> object:
    """The model: the bucket's grants are its directory's r (READ), w (WRITE) and x
    (either); inside it, POSIX mode bits decide, and the objects are the owner's 0644."""
    op = step[0]
    owns = role in ("owner", "admin")
    r, w = P.READ in rights, P.WRITE in rights
    x = r or w
    if op == "access":
        return x and (step[2] == "r" or owns)
    if op in ("list", "chdir"):
        allowed = r if op == "list" else x
    elif op == "getxattr" and step[2] == "user.fsobj.acl":
        allowed = P.READ_ACP in rights and r  # the kernel asks r for any user.* attribute
    elif op == "setxattr" and step[2] == "user.fsobj.acl":
        allowed = P.WRITE_ACP in rights and w
    elif op in ("stat", "read", "getxattr", "listxattr"):
        allowed = x
    elif op in ("write", "unlink", "rename", "mkdir", "symlink"):
        new = op != "write" or step[1].endswith("-new")
        allowed = w and x if new else owns
    else:  # setxattr, utime, chmod of the owner's object
        if x and not owns:
            return "EACCES" if op == "setxattr" else "EPERM"
        allowed = owns
    if not allowed:
        return "EACCES"
    return oct(0o644) if op == "stat" else "ok"


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
    assert set(as_user(OWNER, setup, umask=0o022)) == {"ok"}

    failures = []
    for role, identity in ROLES.items():
        rights = rights_of(role, grants)
        steps = steps_for(bucket, role, acl)
        results = as_user(identity["uid"], steps, groups=identity.get("groups", ()))
        for step, result in zip(steps, results, strict=True):
            want = expected(role, rights, step)
            if step[0] in ("list", "read", "getxattr", "listxattr") and want == "ok":
                ok = not str(result).startswith("E")
            else:
                ok = result == want
            if not ok:
                failures.append(f"{role} {step[0]} {step[1:]}: got {result}, expected {want}")
    assert not failures, "\n".join(failures)
