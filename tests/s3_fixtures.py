"""A mount that also serves S3 (`fsobj mount --s3`), and clients for it: boto3 clients
with access keys made through the mount (`fsobj key create`), and the aws command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config
from conftest import Mount, fsobj_cli


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class S3Mount:
    """A mount with S3 served from the same process, and keys for several uids."""

    def __init__(self, mount: Mount, port: int):
        self.mount = mount
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.keys: dict[int, tuple[str, str]] = {}

    @property
    def path(self) -> Path:
        return self.mount.path

    def key(self, uid: int) -> tuple[str, str]:
        """An access key acting as `uid`, made through the mount as an administrator would."""
        if uid not in self.keys:
            out = fsobj_cli("key", "create", str(self.path), "--uid", str(uid)).stdout
            fields = dict(line.split(":", 1) for line in out.splitlines())
            self.keys[uid] = (fields["access key id"].strip(), fields["secret access key"].strip())
        return self.keys[uid]

    def client(self, uid: int | None = 0, **config: object):
        """A boto3 S3 client acting as `uid` (None: anonymous)."""
        if uid is None:
            from botocore import UNSIGNED

            credentials: dict = {}
            options = Config(signature_version=UNSIGNED, s3={"addressing_style": "path"})
        else:
            key_id, secret = self.key(uid)
            credentials = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
            options = Config(s3={"addressing_style": "path"}, **config)
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", config=options, **credentials
        )

    def aws(self, *args: str, uid: int = 0) -> subprocess.CompletedProcess:
        """The aws command acting as `uid`."""
        key_id, secret = self.key(uid)
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        aws = Path(sys.executable).parent / "aws"
        return subprocess.run(
            [str(aws), "--endpoint-url", self.endpoint, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
