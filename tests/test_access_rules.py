"""Access control: listing, ACL changes at once, and attempts to get around the checks."""

import os

import pytest
from conftest import as_user, fsobj_cli, mounted_at

OWNER, ALICE, BOB, STAFF_MEMBER = 1000, 1001, 1002, 1005
STAFF = 3000


def make_bucket(mount, name: str, owner: int = OWNER, acl: str = "", files=("obj",)) -> str:
    bucket = f"{mount.path}/{name}"
    steps = [["mkdir", bucket]]
    steps += [["write", f"{bucket}/{f}", f"{f} in {name}"] for f in files]
    steps += [["setxattr", bucket, "user.fsobj.acl", acl]]
    assert set(as_user(owner, steps)) == {"ok"}
    return bucket


def acl_lines(bucket: str) -> str:
    """A bucket's grants as the ACL text shows them."""
    return os.getxattr(bucket, "user.fsobj.acl").decode().split("\n", 1)[1]


def set_acl(bucket: str, acl: str, by: int = OWNER) -> None:
    assert as_user(by, [["setxattr", bucket, "user.fsobj.acl", acl]]) == ["ok"]


def fork_as(uid: int, work) -> int:
    """Run `work()` in a forked process as `uid`; returns the pid (exit 0 if it returned)."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            work()
            status = 0
        finally:
            os._exit(status)
    return pid


def test_top_level_lists_only_readable_buckets(mount):
    make_bucket(mount, "private-one")
    make_bucket(mount, "shared-one", acl=f"uid:{ALICE} READ\n")
    assert as_user(ALICE, [["list", str(mount.path)]]) == [["shared-one"]]
    assert as_user(BOB, [["list", str(mount.path)]]) == [[]]
    assert as_user(OWNER, [["list", str(mount.path)]]) == [["private-one", "shared-one"]]
    assert sorted(os.listdir(mount.path)) == ["private-one", "shared-one"]  # admin
    # The bucket still exists for Bob: its name is taken, and entering it is refused.
    assert as_user(
        BOB,
        [
            ["mkdir", f"{mount.path}/private-one"],
            ["chdir", f"{mount.path}/private-one"],
            ["read", f"{mount.path}/private-one/obj"],
        ],
    ) == ["EEXIST", "EACCES", "EACCES"]


def test_acl_changes_act_on_the_next_request(mount):
    bucket = make_bucket(mount, "moody", acl=f"uid:{ALICE} READ\n")
    reads = [
        ["read", f"{bucket}/obj"],
        ["stat", f"{bucket}/obj"],
        ["list", bucket],
        ["getxattr", f"{bucket}/obj", "user.fsobj.id"],
    ]
    assert "EACCES" not in as_user(ALICE, reads)
    set_acl(bucket, "")
    assert as_user(ALICE, reads) == ["EACCES"] * 4
    set_acl(bucket, f"uid:{ALICE} READ\n")
    assert as_user(ALICE, reads)[0] == "obj in moody"


def test_a_descriptor_opened_before_a_revoke_keeps_working_new_opens_fail(mount):
    bucket = make_bucket(mount, "revoked", acl=f"uid:{ALICE} READ\n")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()

    def hold_then_reopen() -> None:
        fd = os.open(f"{bucket}/obj", os.O_RDONLY)
        os.write(ready_w, b"1")
        os.read(go_r, 1)
        data = os.pread(fd, 100, 0)
        try:
            os.open(f"{bucket}/obj", os.O_RDONLY)
            reopened = b"opened"
        except PermissionError:
            reopened = b"EACCES"
        os.write(out_w, data + b"|" + reopened)

    pid = fork_as(ALICE, hold_then_reopen)
    assert os.read(ready_r, 1) == b"1"
    set_acl(bucket, "")
    os.write(go_w, b"1")
    os.close(out_w)
    result = os.read(out_r, 1000)
    assert result == b"obj in revoked|EACCES"
    assert os.waitpid(pid, 0)[1] == 0


def test_moves_between_buckets_need_write_on_both(mount):
    source = make_bucket(
        mount, "source", files=("a", "b", "c"), acl=f"uid:{ALICE} WRITE\n"
    )  # Alice may write, not read
    readable = make_bucket(mount, "readable", files=(), acl=f"uid:{ALICE} READ\n")
    mine = make_bucket(mount, "mine", owner=ALICE, files=("x",))
    assert as_user(
        ALICE,
        [
            ["rename", f"{source}/a", f"{mine}/a"],  # out of a bucket she may write
            ["rename", f"{mine}/x", f"{readable}/x"],  # into a bucket she cannot write
            ["rename", f"{source}/b", f"{source}/b2"],  # within a bucket she may write
        ],
    ) == ["ok", "EACCES", "ok"]
    assert sorted(os.listdir(source)) == ["b2", "c"]
    assert sorted(os.listdir(mine)) == ["a", "x"]


def test_a_symlink_into_another_bucket_is_checked_there(mount):
    secret = make_bucket(mount, "secret", files=("plans",))
    public = make_bucket(mount, "public", files=(), acl="everyone READ\n")
    os.symlink(f"{secret}/plans", f"{public}/shortcut")
    os.symlink("../secret/plans", f"{public}/relative")
    assert as_user(
        ALICE,
        [
            ["read", f"{public}/shortcut"],
            ["read", f"{public}/relative"],
            ["read", f"{public}/../secret/plans"],
            ["lstat", f"{public}/shortcut"],
        ],
    ) == ["EACCES", "EACCES", "EACCES", "0o777"]


def test_only_the_owner_or_an_admin_removes_a_bucket_and_none_renames_one(mount):
    bucket = make_bucket(mount, "keepsake", files=(), acl=f"uid:{ALICE} FULL_CONTROL\n")
    assert as_user(
        ALICE,
        [
            ["rmdir", bucket],
            ["rename", bucket, f"{mount.path}/stolen"],
        ],
    ) == ["EPERM", "EPERM"]  # the top level is sticky, as /tmp is
    assert as_user(BOB, [["rmdir", bucket]]) == ["EPERM"]
    assert os.path.isdir(bucket)
    assert as_user(OWNER, [["rmdir", bucket]]) == ["ok"]


def test_a_bucket_made_again_by_someone_else_is_the_new_one_for_everyone(mount):
    # The kernel keeps bucket names (their lookup checks nothing): it must never keep one
    # past the bucket's end, nor stand in for a newer bucket of the same name.
    bucket = make_bucket(mount, "reborn", acl=f"uid:{ALICE} READ\n")
    assert as_user(ALICE, [["read", f"{bucket}/obj"], ["stat", bucket]]) == [
        "obj in reborn",
        "0o750",  # the group bits show the ACL's mask: what named users may at most do
    ]
    assert as_user(OWNER, [["unlink", f"{bucket}/obj"], ["rmdir", bucket]]) == ["ok", "ok"]
    assert as_user(ALICE, [["stat", bucket], ["read", f"{bucket}/obj"]]) == ["ENOENT", "ENOENT"]
    make_bucket(mount, "reborn", owner=BOB, files=("other",))
    assert as_user(ALICE, [["stat", bucket], ["read", f"{bucket}/other"]]) == ["0o700", "EACCES"]
    assert as_user(BOB, [["read", f"{bucket}/other"]]) == ["other in reborn"]
    assert os.stat(bucket).st_uid == BOB


def test_groups_count_primary_and_supplementary(mount):
    bucket = make_bucket(mount, "staffroom", acl=f"gid:{STAFF} READ\n")
    assert as_user(STAFF_MEMBER, [["read", f"{bucket}/obj"]], gid=STAFF) == ["obj in staffroom"]
    assert as_user(STAFF_MEMBER, [["read", f"{bucket}/obj"]], groups=(STAFF,)) == [
        "obj in staffroom"
    ]
    assert as_user(STAFF_MEMBER, [["read", f"{bucket}/obj"]]) == ["EACCES"]


def test_ownership_changes_are_for_administrators(mount):
    bucket = make_bucket(mount, "owned", acl=f"uid:{ALICE} FULL_CONTROL\n")

    def chown_as(uid: int) -> str:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.setresuid(uid, uid, uid)
                os.chown(f"{bucket}/obj", uid, -1)
                status = 0
            except PermissionError:
                status = 13
            finally:
                os._exit(status)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    assert chown_as(ALICE) == 13
    os.chown(f"{bucket}/obj", ALICE, -1)
    assert os.stat(f"{bucket}/obj").st_uid == ALICE


def test_denials_fsobj_decides_are_audited_with_uid_pid_bucket_and_permission(mount):
    # The kernel decides from mode bits and ACLs, and logs nothing; what only fsobj can
    # decide (READ_ACP, WRITE_ACP, removing a bucket) is logged.
    bucket = make_bucket(mount, "audited", acl=f"uid:{BOB} READ\n")
    assert as_user(BOB, [["getxattr", bucket, "user.fsobj.acl"]]) == ["EACCES"]
    lines = [line for line in mount.log_text().splitlines() if "denied" in line]
    assert any(
        "/audited" in line
        and f"uid {BOB}" in line
        and "pid " in line
        and "lacks READ_ACP" in line
        and "bucket audited" in line
        for line in lines
    ), lines


def test_odd_names_do_not_escape_a_bucket(mount):
    make_bucket(mount, "vault", files=("gold",))
    make_bucket(mount, "lobby", files=(), acl="everyone READ\n")
    lobby = f"{mount.path}/lobby"
    assert as_user(
        ALICE,
        [
            ["read", f"{lobby}/../vault/gold"],
            ["read", f"{lobby}/./../vault/gold"],
            ["list", f"{lobby}/.."],
            ["read", f"{lobby}/...."],
        ],
    ) == ["EACCES", "EACCES", ["lobby"], "ENOENT"]


@pytest.fixture
def acl_cli(mount):
    bucket = make_bucket(mount, "cli-bucket", files=("obj",))
    return bucket


def test_acl_command_on_a_live_mount(mount, acl_cli):
    bucket = acl_cli
    shown = fsobj_cli("acl", "get", bucket).stdout
    assert shown.splitlines()[0].startswith(f"owner uid:{OWNER}")
    fsobj_cli("acl", "grant", bucket, "--uid", str(ALICE), "--perm", "READ")
    assert as_user(ALICE, [["read", f"{bucket}/obj"]]) == ["obj in cli-bucket"]
    fsobj_cli("acl", "grant", bucket, "--user", "nobody", "--perm", "write", "--perm", "READ")
    fsobj_cli("acl", "grant", bucket, "--group", "staff", "--perm", "READ_ACP")
    text = fsobj_cli("acl", "get", bucket).stdout
    assert f"uid:{ALICE} READ" in text
    assert "uid:65534 READ" in text and "uid:65534 WRITE" in text and "# nobody" in text
    assert "gid:50 READ_ACP" in text
    fsobj_cli("acl", "revoke", bucket, "--user", "nobody", "--perm", "WRITE")
    text = fsobj_cli("acl", "get", bucket).stdout
    assert "uid:65534 READ" in text and "uid:65534 WRITE" not in text
    fsobj_cli("acl", "revoke", bucket, "--uid", str(ALICE))
    assert as_user(ALICE, [["read", f"{bucket}/obj"]]) == ["EACCES"]
    fsobj_cli("acl", "set", bucket, "--canned", "public-read")
    assert fsobj_cli("acl", "get", bucket).stdout.splitlines()[1:] == ["everyone READ"]
    assert as_user(BOB, [["read", f"{bucket}/obj"]]) == ["obj in cli-bucket"]
    bad = fsobj_cli(
        "acl", "grant", bucket, "--user", "no-such-user-here", "--perm", "READ", check=False
    )
    assert bad.returncode == 1 and "no such user" in bad.stderr


def test_acl_change_needs_write_acp(mount, acl_cli):
    bucket = acl_cli
    # Through the mount the kernel also asks r (to read) or w (to change) on the
    # bucket's directory, as for any user.* attribute.
    set_acl(
        bucket,
        f"uid:{ALICE} READ_ACP\nuid:{ALICE} READ\nuid:{ALICE} WRITE\n"
        f"uid:{BOB} WRITE_ACP\nuid:{BOB} WRITE\n",
    )
    assert as_user(
        ALICE,
        [
            ["getxattr", bucket, "user.fsobj.acl"],
            ["setxattr", bucket, "user.fsobj.acl", f"uid:{ALICE} FULL_CONTROL\n"],
        ],
    ) == [f"owner uid:{OWNER}\n" + acl_lines(bucket), "EACCES"]
    assert as_user(BOB, [["setxattr", bucket, "user.fsobj.acl", "bad acl text\n"]]) == ["EINVAL"]
    assert as_user(BOB, [["setxattr", bucket, "user.fsobj.acl", f"uid:{BOB} READ\n"]]) == ["ok"]
    assert as_user(BOB, [["read", f"{bucket}/obj"]]) == ["obj in cli-bucket"]


def test_acl_command_on_an_unmounted_store(mount, acl_cli):
    mount.stop()
    store = str(mount.store)
    fsobj_cli("acl", "set", "--store", store, "cli-bucket", "--canned", "authenticated-read")
    assert "authenticated READ" in fsobj_cli("acl", "get", "--store", store, "cli-bucket").stdout
    fsobj_cli("acl", "grant", "--store", store, "cli-bucket", "--everyone", "--perm", "WRITE")
    mount.start()
    bucket = f"{mount.path}/cli-bucket"
    assert as_user(BOB, [["write", f"{bucket}/new", "hi"], ["list", bucket]]) == [
        "ok",
        ["new", "obj"],
    ]
    assert as_user(65534, [["list", bucket]]) == ["EACCES"]  # not authenticated


def test_permissions_survive_remount(mount):
    bucket = make_bucket(mount, "durable-acl", acl=f"uid:{ALICE} READ\n")
    mount.restart()
    assert as_user(ALICE, [["read", f"{bucket}/obj"], ["write", f"{bucket}/n", "x"]]) == [
        "obj in durable-acl",
        "EACCES",
    ]
    assert as_user(BOB, [["read", f"{bucket}/obj"]]) == ["EACCES"]


def test_revoke_while_writing_a_file_keeps_that_write(mount):
    bucket = make_bucket(mount, "inflight", acl=f"uid:{ALICE} READ\nuid:{ALICE} WRITE\n")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def write_across_the_revoke() -> None:
        with open(f"{bucket}/report", "w") as f:
            f.write("first half ")
            f.flush()
            os.write(ready_w, b"1")
            os.read(go_r, 1)
            f.write("second half")

    pid = fork_as(ALICE, write_across_the_revoke)
    assert os.read(ready_r, 1) == b"1"
    set_acl(bucket, "")
    os.write(go_w, b"1")
    assert os.waitpid(pid, 0)[1] == 0
    with open(f"{bucket}/report") as f:
        assert f.read() == "first half second half"


def test_a_private_mount_serves_its_owner_alone(store, tmp_path):
    with mounted_at(store, tmp_path / "private.log", ("--private",)) as private:
        (private / "mine").mkdir()
        (private / "mine" / "f").write_text("for me")
        assert as_user(
            OWNER, [["list", str(private.path)], ["read", f"{private.path}/mine/f"]]
        ) == [
            "EACCES",
            "EACCES",
        ]
        assert (private / "mine" / "f").read_text() == "for me"
        with open("/proc/mounts") as mounts:
            options = next(line for line in mounts if str(private.path) in line).split()[3]
        assert "allow_other" not in options
