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
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import Mount


def free_port() -> int:
    """A loopback port nobody listens on (SeaweedFS's: services.seaweedfs_port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int,
    timeout: float = 30.0,
    server: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    """Until something listens on `port`; fails at once if `server` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if (server is not None and server.poll() is not None) or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
                raise RuntimeError(f"nothing listens on port {port}:\n{tail}") from None
            time.sleep(0.05)


def parse_key(output: str) -> tuple[str, str]:
    """The access key id and secret that `fsobj key create` printed."""
    fields = dict(line.split(":", 1) for line in output.splitlines())
    return fields["access key id"].strip(), fields["secret access key"].strip()


def s3_client(endpoint: str, key: tuple[str, str] | None, **config: object):
    """A boto3 S3 client for `endpoint`, path-style, signing with `key` (None: anonymous)."""
    if key is None:
        from botocore import UNSIGNED

        config["signature_version"] = UNSIGNED
        credentials: dict = {}
    else:
        credentials = {"aws_access_key_id": key[0], "aws_secret_access_key": key[1]}
    options = Config(s3={"addressing_style": "path"}, **config)  # type: ignore[arg-type]
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=options, **credentials
    )


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
        """An access key acting as `uid`, made through the mount as `fsobj key create`
        makes it (its own tests run the command; here, a process less per test)."""
        if uid not in self.keys:
            from fsobj.fuse.xattr_names import KEYS
            from fsobj.iam.policy import new_access_key

            key_id, secret = new_access_key()
            os.setxattr(self.path, KEYS, f"create {key_id} {uid} {secret}".encode())
            self.keys[uid] = (key_id, secret)
        return self.keys[uid]

    def client(self, uid: int | None = 0, **config: object):
        """A boto3 S3 client acting as `uid` (None: anonymous)."""
        return s3_client(self.endpoint, None if uid is None else self.key(uid), **config)

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

    def rclone(self, *args: str, uid: int = 0) -> subprocess.CompletedProcess:
        """The rclone command acting as `uid`, its remote `fsobj:` this S3 endpoint."""
        key_id, secret = self.key(uid)
        remote = {
            "TYPE": "s3",
            "PROVIDER": "Other",
            "ENDPOINT": self.endpoint,
            "ACCESS_KEY_ID": key_id,
            "SECRET_ACCESS_KEY": secret,
            "REGION": "us-east-1",
            "FORCE_PATH_STYLE": "true",
        }
        env = {**os.environ, "RCLONE_CONFIG": "/dev/null"}
        env |= {f"RCLONE_CONFIG_FSOBJ_{name}": value for name, value in remote.items()}
        rclone = Path(sys.executable).parent / "rclone"
        result = subprocess.run(
            [str(rclone), *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"rclone {' '.join(args)}:\n{result.stderr}"
        return result


def code_of(call, *args, **kwargs) -> str:
    """The S3 error code with which `call` fails."""
    with pytest.raises(ClientError) as failed:
        call(*args, **kwargs)
    return failed.value.response["Error"]["Code"]
