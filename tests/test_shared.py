"""One store served by several hosts at once: metadata in PostgreSQL, blobs at an S3
service (SeaweedFS), and two daemons on one machine standing for two hosts, each with its
own store directory (cache, staging, log). What a user of one sees of the other's work:
close-to-open consistency, listings and attributes within the metadata timeout, readers
that keep their version, the last close winning, ACLs acting everywhere, and faults (the
database or the service going away, a host killed) that lose nothing committed."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import Mount, as_user, fsobj_cli, mounted_at
from services import SeaweedFS, seaweedfs

from fsobj.service.backends import Backends, format_store, join_store

TIMEOUT = 1.0  # --metadata-timeout: other hosts' changes show within it
SESSION = 3.0  # --session-timeout
OPTIONS = ("--metadata-timeout", str(TIMEOUT), "--session-timeout", str(SESSION))
MIB = 1 << 20


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as running:
        yield running


class SharedStore:
    """A shared store, and a store directory per host that joins it."""

    def __init__(self, service: SeaweedFS, database: str, prefix: str, work: Path):
        self.service = service
        self.database = database
        self.prefix = prefix
        self.work = work
        self.first = work / "host-a"
        # What `fsobj format` and `fsobj format --join` do, in-process (the commands are
        # test_shared's own tests below): a second off the set-up of each test.
        format_store(self.first, Backends(database, f"s3://fsobj-blobs/{prefix}", service.endpoint))

    def host(self, name: str) -> Path:
        """The store directory of another host, joined to the store (once it was served)."""
        store = self.work / name
        if not store.exists():
            join_store(store, self.database)
        return store

    @contextlib.contextmanager
    def mounted(self, store: Path, *options: str) -> Iterator[Mount]:
        with mounted_at(store, store.parent / f"{store.name}.log", (*OPTIONS, *options)) as m:
            yield m

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.database, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def blobs_at_service(self) -> set[str]:
        pages = self.service.client().get_paginator("list_objects_v2")
        return {
            item["Key"].split("/")[-1]
            for page in pages.paginate(Bucket="fsobj-blobs", Prefix=self.prefix + "/")
            for item in page.get("Contents", [])
        }

    def named_blobs(self) -> set[str]:
        rows = self.query("SELECT DISTINCT object_id FROM entries WHERE object_id IS NOT NULL")
        return {str(uuid.UUID(bytes=bytes(key))) for (key,) in rows}


@pytest.fixture
def shared(service, pg_cluster, pg_password, tmp_path, monkeypatch, request) -> SharedStore:
    service.offer_bucket(monkeypatch, tmp_path)
    return SharedStore(service, pg_cluster.new_database(), request.node.name[:40], tmp_path)


@pytest.fixture
def two_hosts(shared):
    """The store mounted on host A (which records where its blobs live) and on host B."""
    with shared.mounted(shared.first) as a, shared.mounted(shared.host("host-b")) as b:
        (a / "shared").mkdir()
        yield a, b


def settle() -> None:
    """Wait out the metadata timeout: what one host changed shows on the others."""
    time.sleep(TIMEOUT + 0.1)


def test_a_file_closed_on_one_host_opens_with_its_content_on_the_other(two_hosts):
    a, b = two_hosts
    (a / "shared" / "report.txt").write_bytes(b"first draft")
    assert (b / "shared" / "report.txt").read_bytes() == b"first draft"
    # Close-to-open: B knows the name already, and opens what A closed last, at once.
    (a / "shared" / "report.txt").write_bytes(b"the final version")
    assert (b / "shared" / "report.txt").read_bytes() == b"the final version"
    with open(a / "shared" / "report.txt", "r+b") as updating:  # in place, without O_TRUNC
        updating.write(b"THE")
    assert (b / "shared" / "report.txt").read_bytes() == b"THE final version"
    # Another object renamed over it: B's kernel still knows the old one under that name,
    # and its open is answered ESTALE, so the kernel looks the name up again.
    (a / "shared" / "next").write_bytes(b"renamed over it")
    os.rename(a / "shared" / "next", a / "shared" / "report.txt")
    assert (b / "shared" / "report.txt").read_bytes() == b"renamed over it"
    os.setxattr(a / "shared" / "report.txt", "user.status", b"approved")
    settle()
    assert os.getxattr(b / "shared" / "report.txt", "user.status") == b"approved"


def test_listings_and_attributes_follow_the_other_host_within_the_timeout(two_hosts):
    a, b = two_hosts
    for name in ("one", "two", "three"):
        (a / "shared" / name).write_bytes(name.encode())
    settle()
    assert sorted(os.listdir(b / "shared")) == ["one", "three", "two"]
    assert os.stat(b / "shared" / "three").st_size == 5
    (a / "shared" / "three").write_bytes(b"a longer three")
    os.rename(a / "shared" / "one", a / "shared" / "uno")
    os.unlink(a / "shared" / "two")
    os.mkdir(a / "shared" / "sub")
    os.chmod(a / "shared" / "uno", 0o600)
    settle()
    assert sorted(os.listdir(b / "shared")) == ["sub", "three", "uno"]
    assert os.stat(b / "shared" / "three").st_size == len(b"a longer three")
    assert os.stat(b / "shared" / "uno").st_mode & 0o777 == 0o600
    assert not (b / "shared" / "one").exists()
    assert os.stat(b / "shared").st_nlink == 3  # ".", "..": and "sub"
    (b / "shared" / "sub" / "from-b").write_bytes(b"b")
    settle()
    assert os.listdir(a / "shared" / "sub") == ["from-b"]


def test_names_made_here_and_moved_or_removed_there_stop_resolving_here_in_time(two_hosts):
    """The kernel keeps no name longer than the metadata timeout, not even one this host
    made itself (whose row other hosts see once its first close writes it)."""
    a, b = two_hosts
    for name in ("kept", "moved", "removed"):
        (a / "shared" / name).write_bytes(name.encode())
        os.stat(a / "shared" / name)  # the kernel holds the name now
    os.rename(b / "shared" / "moved", b / "shared" / "renamed")
    os.unlink(b / "shared" / "removed")
    settle()
    assert not os.path.lexists(a / "shared" / "moved")
    assert not os.path.lexists(a / "shared" / "removed")
    assert (a / "shared" / "renamed").read_bytes() == b"moved"
    assert (a / "shared" / "kept").read_bytes() == b"kept"


def test_buckets_made_and_removed_on_one_host_show_on_the_other(two_hosts):
    a, b = two_hosts
    (a / "team-bucket").mkdir()
    settle()
    assert "team-bucket" in os.listdir(b.path)
    (b / "team-bucket" / "note").write_bytes(b"n")
    with pytest.raises(OSError) as refused:  # A's bucket holds B's object now
        (a / "team-bucket").rmdir()
    assert refused.value.errno == errno.ENOTEMPTY
    (a / "team-bucket" / "note").unlink()
    (a / "team-bucket").rmdir()
    settle()
    assert "team-bucket" not in os.listdir(b.path)
    with pytest.raises(FileNotFoundError):
        (b / "team-bucket" / "late").write_bytes(b"x")


def test_a_reader_keeps_its_version_while_the_other_host_rewrites_and_deletes(two_hosts):
    a, b = two_hosts
    old = os.urandom(3 * MIB)
    (a / "shared" / "data.bin").write_bytes(old)
    with open(b / "shared" / "data.bin", "rb") as reader:
        assert reader.read(MIB) == old[:MIB]
        (a / "shared" / "data.bin").write_bytes(b"new content")
        a.make_durable()  # the replaced blob goes
        assert reader.read(MIB) == old[MIB : 2 * MIB]
        (a / "shared" / "data.bin").unlink()
        a.make_durable()
        assert reader.read() == old[2 * MIB :]
    settle()
    assert not (b / "shared" / "data.bin").exists()


def test_the_last_close_wins_across_hosts(two_hosts):
    a, b = two_hosts
    (a / "shared" / "doc").write_bytes(b"original")
    settle()
    with open(a / "shared" / "doc", "wb") as from_a, open(b / "shared" / "doc", "wb") as from_b:
        from_a.write(b"written on A")
        from_b.write(b"written on B")
        from_a.close()
        from_b.close()
    assert (a / "shared" / "doc").read_bytes() == b"written on B"
    assert (b / "shared" / "doc").read_bytes() == b"written on B"
    # Both make the same new name: no EEXIST, the last close wins there too.
    with open(a / "shared" / "new", "wb") as from_a, open(b / "shared" / "new", "wb") as from_b:
        from_a.write(b"A made it")
        from_b.write(b"B made it")
        from_b.close()
        from_a.close()
    settle()
    assert (a / "shared" / "new").read_bytes() == b"A made it"
    assert (b / "shared" / "new").read_bytes() == b"A made it"
    assert sorted(os.listdir(b / "shared")) == ["doc", "new"]


def test_acl_changes_act_on_every_host_within_the_timeout(two_hosts):
    a, b = two_hosts
    (a / "private-bucket").mkdir()
    (a / "private-bucket" / "plan").write_bytes(b"plan")
    os.chmod(a / "private-bucket" / "plan", 0o644)
    read = [["read", str(b / "private-bucket" / "plan")]]
    settle()
    assert as_user(1001, read) == ["EACCES"]
    fsobj_cli("acl", "grant", "--uid", "1001", "--perm", "READ", str(a / "private-bucket"))
    settle()
    assert as_user(1001, read) == ["plan"]
    fsobj_cli("acl", "revoke", "--uid", "1001", str(a / "private-bucket"))
    settle()
    assert as_user(1001, read) == ["EACCES"]


def test_many_writers_on_both_hosts_make_unique_inodes_and_a_clean_store(two_hosts, shared):
    a, b = two_hosts
    errors: list[BaseException] = []

    def write_many(mount: Mount, tag: str) -> None:
        try:
            for i in range(150):
                (mount / "shared" / f"{tag}-{i}").write_bytes(f"{tag} {i}".encode())
        except BaseException as error:
            errors.append(error)

    writers = [threading.Thread(target=write_many, args=(m, t)) for m, t in ((a, "a"), (b, "b"))]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert not errors
    settle()
    for mount in (a, b):
        names = os.listdir(mount / "shared")
        assert len(names) == 300
        inodes = {os.stat(mount / "shared" / name).st_ino for name in names}
        assert len(inodes) == 300
    assert (a / "shared" / "b-149").read_bytes() == b"b 149"
    assert (b / "shared" / "a-7").read_bytes() == b"a 7"


def test_collection_spares_what_a_live_session_pins_and_takes_it_once_lapsed(shared):
    """A blob being uploaded has no row yet: only its pin keeps collectors away."""
    other = shared.host("host-c")
    with shared.mounted(shared.first) as a:
        (a / "shared").mkdir()
        (a / "shared" / "kept").write_bytes(b"named")
        ((session,),) = shared.query("SELECT id FROM sessions")
        orphan = "00000000-0000-4000-8000-000000000001"
        shared.service.client().put_object(
            Bucket="fsobj-blobs", Key=f"{shared.prefix}/{orphan}", Body=b"in flight"
        )
        shared.query(
            "INSERT INTO pins (object_id, session) VALUES (%s, %s)",
            (bytes.fromhex(orphan.replace("-", "")), session),
        )
        out = fsobj_cli("gc", "--store", str(other)).stdout  # on another host, meanwhile
        assert orphan in shared.blobs_at_service(), out
        a.process.send_signal(signal.SIGKILL)  # the pinning host dies: its heart stops
        a.process.wait()
        time.sleep(SESSION + 0.5)
        fsobj_cli("gc", "--store", str(other))
        assert orphan not in shared.blobs_at_service()
        assert shared.blobs_at_service() == shared.named_blobs()
        a.process = None  # killed: the mount point is only left to unmount
        os.system(f"fusermount3 -u -z {a.path}")


def test_a_host_killed_mid_write_leaves_the_others_working_and_its_uploads_collected(
    shared,
):
    with shared.mounted(shared.first) as a, shared.mounted(shared.host("host-b")) as b:
        (a / "shared").mkdir()
        (a / "shared" / "steady").write_bytes(b"committed before")
        writer = subprocess.Popen(  # big files: the kill meets uploads in flight
            ["sh", "-c", f"while :; do head -c 70M /dev/urandom > {a.path}/shared/big; done"],
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(4)
            a.process.send_signal(signal.SIGKILL)
            a.process.wait()
        finally:
            writer.kill()
            writer.wait()
        a.process = None
        subprocess.run(["fusermount3", "-u", "-z", str(a.path)], check=True)
        # B goes on as if nothing happened.
        (b / "shared" / "from-b").write_bytes(b"B writes on")
        assert (b / "shared" / "steady").read_bytes() == b"committed before"
        settle()
        if (b / "shared" / "big").exists():  # a committed version, whole: the shell's
            size = os.stat(b / "shared" / "big").st_size  # `>` commits the truncation
            assert size in (0, 70 * MIB)
            assert len((b / "shared" / "big").read_bytes()) == size
        # Once A's session lapsed, a collection anywhere takes what A left unnamed.
        time.sleep(SESSION + 0.5)
        fsobj_cli("gc", str(b.path))
        assert shared.blobs_at_service() == shared.named_blobs()
        # fsck from a third host while B keeps the store mounted (A's directory holds
        # what A staged when it died: local to A, cleared when A mounts again).
        report = fsobj_cli("fsck", "--store", str(shared.host("host-c")), "--verify")
        assert "store is clean" in report.stdout + report.stderr, report.stdout


def test_an_outage_of_the_database_under_two_hosts_is_eio_and_heals(two_hosts, pg_cluster):
    a, b = two_hosts
    a.expect_errors = b.expect_errors = True
    (a / "shared" / "before").write_bytes(b"committed before")
    settle()
    pg_cluster.stop("immediate")
    try:
        for mount in (a, b):
            with pytest.raises(OSError) as raised:
                (mount / "shared" / "during").write_bytes(b"x")
            assert raised.value.errno == errno.EIO
    finally:
        pg_cluster.start()
    (a / "shared" / "after-a").write_bytes(b"A after")
    (b / "shared" / "after-b").write_bytes(b"B after")
    settle()
    for mount in (a, b):
        assert (mount / "shared" / "before").read_bytes() == b"committed before"
        assert (mount / "shared" / "after-a").read_bytes() == b"A after"
        assert (mount / "shared" / "after-b").read_bytes() == b"B after"
        log = mount.log_text()
        assert log.count("the metadata database fails") == 1, log
        assert "the metadata database answers again" in log


def test_an_outage_of_the_blob_service_under_two_hosts_keeps_cached_reads(two_hosts, service):
    a, b = two_hosts
    a.expect_errors = b.expect_errors = True
    (a / "shared" / "cached").write_bytes(b"read on B before the outage")
    assert (b / "shared" / "cached").read_bytes() == b"read on B before the outage"
    service.stop()
    try:
        with pytest.raises(OSError) as raised:
            (b / "shared" / "during").write_bytes(b"cannot be uploaded")
        assert raised.value.errno == errno.EIO
        assert (b / "shared" / "cached").read_bytes() == b"read on B before the outage"
    finally:
        service.start()
    (b / "shared" / "after").write_bytes(b"uploaded after")
    assert (a / "shared" / "after").read_bytes() == b"uploaded after"
    assert not (a / "shared" / "during").exists()


def test_s3_on_one_host_serves_what_the_other_mounts_and_its_keys_follow(shared):
    """The S3 API served from host B, keys managed through host A's mount."""
    from s3_fixtures import free_port, parse_key, s3_client, wait_for_port

    port = free_port()
    with (
        shared.mounted(shared.first) as a,
        shared.mounted(shared.host("host-b"), "--s3", f"127.0.0.1:{port}") as b,
    ):
        wait_for_port(port)
        key = parse_key(fsobj_cli("key", "create", str(a.path), "--uid", "0").stdout)
        client = s3_client(f"http://127.0.0.1:{port}", key)
        (a / "reports").mkdir()
        (a / "reports" / "q4.txt").write_bytes(b"from the mount on A")
        settle()
        got = client.get_object(Bucket="reports", Key="q4.txt")["Body"].read()
        assert got == b"from the mount on A"
        client.put_object(Bucket="reports", Key="q1.txt", Body=b"over S3 on B")
        assert (a / "reports" / "q1.txt").read_bytes() == b"over S3 on B"
        b.expect_errors = True  # the refused request below is logged
        fsobj_cli("key", "rm", str(a.path), "--key-id", key[0])
        settle()
        with pytest.raises(client.exceptions.ClientError) as refused:
            client.get_object(Bucket="reports", Key="q4.txt")
        assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_puts_on_both_hosts_under_the_same_new_prefixes_land_in_one_tree(shared):
    """Both hosts serve S3 and PUT keys under the same new prefixes at once: each PUT and
    the directories its key implies are one transaction, so where the other host made a
    directory first, the key goes into it. Every key is there, each directory once."""
    from concurrent.futures import ThreadPoolExecutor

    from s3_fixtures import free_port, parse_key, s3_client, wait_for_port

    ports = free_port(), free_port()
    with (
        shared.mounted(shared.first, "--s3", f"127.0.0.1:{ports[0]}") as a,
        shared.mounted(shared.host("host-b"), "--s3", f"127.0.0.1:{ports[1]}"),
    ):
        for port in ports:
            wait_for_port(port)
        key = parse_key(fsobj_cli("key", "create", str(a.path), "--uid", "0").stdout)
        clients = [s3_client(f"http://127.0.0.1:{port}", key) for port in ports]
        clients[0].create_bucket(Bucket="race")
        settle()

        def put(job: tuple[int, int]) -> str:
            host, i = job
            name = f"p{i % 6}/q{i % 3}/k-{host}-{i}"
            clients[host].put_object(Bucket="race", Key=name, Body=name.encode())
            return name

        with ThreadPoolExecutor(8) as pool:
            names = set(pool.map(put, [(host, i) for i in range(36) for host in (0, 1)]))
        settle()
        for client in clients:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket="race")
            listed = {item["Key"] for page in pages for item in page.get("Contents", [])}
            assert listed == names
        for name in names:
            assert (a / "race" / name).read_bytes() == name.encode()
        assert sorted(os.listdir(a / "race")) == [f"p{i}" for i in range(6)]
        directories = shared.query(
            "SELECT parent, name, count(*) FROM entries WHERE kind = 'dir'"
            " GROUP BY parent, name HAVING count(*) > 1"
        )
        assert directories == []
    fsobj_cli("fsck", "--store", str(shared.first))  # exits non-zero on any problem


def test_a_directory_moved_to_another_bucket_on_one_host_takes_that_buckets_acl_on_all(
    two_hosts,
):
    a, b = two_hosts
    for bucket in ("open-bucket", "closed-bucket"):
        (a / bucket).mkdir()
    fsobj_cli("acl", "grant", "--uid", "1001", "--perm", "READ", str(a / "open-bucket"))
    (a / "open-bucket" / "dir" / "deeper").mkdir(parents=True)
    (a / "open-bucket" / "dir" / "deeper" / "paper").write_bytes(b"paper")
    read = [["read", str(b / "closed-bucket" / "dir" / "deeper" / "paper")]]
    settle()
    assert as_user(1001, [["read", str(b / "open-bucket" / "dir" / "deeper" / "paper")]]) == [
        "paper"
    ]
    os.rename(a / "open-bucket" / "dir", a / "closed-bucket" / "dir")
    settle()
    assert as_user(1001, read) == ["EACCES"]
    assert (b / "closed-bucket" / "dir" / "deeper" / "paper").read_bytes() == b"paper"


def test_both_hosts_rewriting_the_same_objects_at_once_lose_nothing(two_hosts):
    """Group commits on two hosts lock the same rows in different orders: the database
    breaks the deadlocks, and the undone transactions run again."""
    a, b = two_hosts
    names = [f"hot-{i}" for i in range(4)]
    for name in names:
        (a / "shared" / name).write_bytes(b"to be rewritten")
    settle()
    written: set[bytes] = set()
    errors: list[BaseException] = []

    def rewrite(mount: Mount, tag: str) -> None:
        try:
            for round_ in range(40):
                for name in names if round_ % 2 else reversed(names):
                    content = f"{tag} {round_} {name}".encode()
                    written.add(content)
                    (mount / "shared" / name).write_bytes(content)
        except BaseException as error:
            errors.append(error)

    writers = [
        threading.Thread(target=rewrite, args=(mount, f"{mount.store.name}-{i}"))
        for mount in (a, b)
        for i in range(3)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert not errors, errors
    for name in names:
        final = (a / "shared" / name).read_bytes()
        assert final in written and final.endswith(name.encode())
        assert (b / "shared" / name).read_bytes() == final


def test_joining_is_refused_with_one_line_where_there_is_no_shared_store(
    shared, pg_cluster, tmp_path
):
    def refused(store: Path, database: str, *more: str) -> str:
        result = fsobj_cli(
            "format", "--store", str(store), "--meta", database, "--join", *more, check=False
        )
        assert result.returncode == 1 and "Traceback" not in result.stderr, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    empty = pg_cluster.new_database()
    assert "holds no shared store" in refused(tmp_path / "new", empty)
    assert not (tmp_path / "new").exists()
    assert "is a store already" in refused(shared.first, shared.database)
    assert "--join takes --meta alone" in refused(
        tmp_path / "new", shared.database, "--data", "s3://elsewhere/x"
    )
    # The command that joins, as a new host runs it.
    other = tmp_path / "host-b"
    joined = fsobj_cli("format", "--store", str(other), "--meta", shared.database, "--join")
    assert "joins the shared store" in joined.stdout
    # A host whose backends.json puts the blobs elsewhere is refused at mount.
    recorded = json.loads((other / "backends.json").read_text())
    (other / "backends.json").write_text(json.dumps({**recorded, "data": recorded["data"] + "x"}))
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = fsobj_cli("mount", "--store", str(other), str(mountpoint), check=False)
    assert result.returncode == 1 and "the store's database says" in result.stderr, result


def test_each_host_counts_the_sessions_and_its_pins_in_its_metrics(shared):
    """Each heartbeat (a second here) counts the hosts that serve the store."""
    from s3_fixtures import free_port
    from test_metrics import scrape, value

    port, beating = free_port(), ("--session-timeout", "3")
    with shared.mounted(shared.first, *beating, "--metrics", f"127.0.0.1:{port}") as a:
        (a / "pinning").mkdir()
        (a / "pinning" / "k").write_bytes(b"x")  # pins ids for new blobs
        with shared.mounted(shared.host("host-b"), *beating):
            deadline = time.monotonic() + 30
            while value(scrape(port), "fsobj_sessions") != 2:
                assert time.monotonic() < deadline, "no heartbeat counted the second host"
                time.sleep(0.2)
        assert value(scrape(port), "fsobj_pinned_blobs") > 0
