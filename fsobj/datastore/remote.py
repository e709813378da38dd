"""The data store's S3 backend: blobs kept in a bucket of any S3-compatible service.

A blob is uploaded, and the service asked for it back (its size, and its MD5 where the
ETag is one), before the commit returns, so no metadata row ever names a blob that the
service does not hold. Reads go through the local blob cache (datastore/cache.py); this module
only moves whole blobs in and out. Every call blocks: callers run it in a worker thread.

Credentials come from boto3's own chain (the environment, `AWS_SHARED_CREDENTIALS_FILE`,
`~/.aws/credentials`), never from a command line. A failure of the service is an OSError
(EIO, or ENOENT for a blob it does not hold); the first of an outage is logged as a
warning and the recovery once, not every request.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions
import trio
from boto3.s3.transfer import TransferConfig

from fsobj import measures
from fsobj.datastore.blob_file import BlobFile, DamagedBlob, blob_file_problem
from fsobj.datastore.cache import DEFAULT_CACHE_BYTES, BlobCache
from fsobj.datastore.sealing import Seal, sealed_size
from fsobj.datastore.staging import Staging
from fsobj.datastore.store import Blob, DataStore

log = logging.getLogger(__name__)

# Large blobs go up and down in parts, several at once, as S3 serves them best.
_TRANSFER = TransferConfig(
    multipart_threshold=64 << 20, multipart_chunksize=16 << 20, max_concurrency=4
)
_NOT_THERE = {"404", "NoSuchKey", "NotFound"}


@dataclasses.dataclass(frozen=True)
class Location:
    """Where a store's blobs live: `s3://BUCKET[/PREFIX]` at an endpoint (None: AWS)."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None

    @classmethod
    def parse(cls, url: str, endpoint: str | None = None, region: str | None = None) -> Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"{url!r} is not s3://BUCKET[/PREFIX]")
        prefix = parts.path.strip("/")
        if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
            raise ValueError(f"the endpoint {endpoint!r} is not an http(s) URL")
        return cls(parts.netloc, f"{prefix}/" if prefix else "", endpoint, region)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


class RemoteBlobs:
    """Blobs named `PREFIX` + object id in one bucket."""

    def __init__(self, location: Location):
        self.location = location
        config = botocore.config.Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"},
            max_pool_connections=32,
        )
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint,
            region_name=location.region or "us-east-1",
            config=config,
        )
        self._lock = threading.Lock()
        self._down = False  # the service failed last time: logged once until it answers

    def _key(self, object_id: str) -> str:
        return self.location.prefix + object_id

    def check(self) -> None:
        """That the bucket exists and these credentials may use it: one clear error."""
        try:
            self._client.head_bucket(Bucket=self.location.bucket)
            self._client.list_objects_v2(
                Bucket=self.location.bucket, Prefix=self.location.prefix, MaxKeys=1
            )
        except botocore.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in _NOT_THERE or code == "NoSuchBucket":
                raise OSError(errno.ENOENT, f"no bucket {self.location.bucket!r}") from None
            if code in ("403", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"):
                raise OSError(
                    errno.EACCES,
                    f"{self.location.url}: access denied ({code}): wrong credentials, or"
                    " none for this bucket",
                ) from None
            raise OSError(errno.EIO, f"{self.location.url}: {code or error}") from None
        except botocore.exceptions.BotoCoreError as error:
            raise OSError(errno.EIO, f"{self.location.url}: {error}") from None

    def upload(self, path: Path, object_id: str, size: int, md5: str | None) -> None:
        """Put the blob at `path`, of `size` bytes, and make sure the service holds all of
        it. With the file's `md5`, a single PUT carries it, which the service checks
        (BadDigest otherwise) and answers as the ETag: that answer is the proof. Otherwise
        the service is asked for the blob's size, one more round trip."""
        key = self._key(object_id)
        with self._calling("upload", object_id):
            if size < _TRANSFER.multipart_threshold:
                with open(path, "rb") as content:
                    extra = {}
                    if md5 is not None:
                        extra["ContentMD5"] = base64.b64encode(bytes.fromhex(md5)).decode()
                    answer = self._client.put_object(
                        Bucket=self.location.bucket, Key=key, Body=content, **extra
                    )
                if md5 is not None and answer.get("ETag", "").strip('"') == md5:
                    return
            else:
                self._client.upload_file(str(path), self.location.bucket, key, Config=_TRANSFER)
            held = self._client.head_object(Bucket=self.location.bucket, Key=key)
        held_etag = held.get("ETag", "").strip('"')
        whole = held["ContentLength"] == size and (
            md5 is None or "-" in held_etag or held_etag == md5
        )
        if not whole:
            raise OSError(errno.EIO, f"blob {object_id} did not arrive whole at the service")

    def download(self, object_id: str, path: Path) -> None:
        """Fetch the blob into a new file at `path` (the caller checks and places it)."""
        with self._calling("download", object_id):
            self._client.download_file(
                self.location.bucket, self._key(object_id), str(path), Config=_TRANSFER
            )

    def size(self, object_id: str) -> int | None:
        """The blob's size at the service (None: it holds no such blob)."""
        try:
            with self._calling("head", object_id):
                held = self._client.head_object(
                    Bucket=self.location.bucket, Key=self._key(object_id)
                )
        except FileNotFoundError:
            return None
        return int(held["ContentLength"])

    def delete(self, object_ids: list[str]) -> None:
        for start in range(0, len(object_ids), 1000):  # S3's limit per request
            batch = object_ids[start : start + 1000]
            with self._calling("delete", f"{len(batch)} blobs"):
                self._client.delete_objects(
                    Bucket=self.location.bucket,
                    Delete={"Objects": [{"Key": self._key(i)} for i in batch], "Quiet": True},
                )

    def batches(self) -> Iterator[list[str]]:
        """The ids of all blobs at the service, a listing page (1,000) at a time."""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=self.location.prefix
        )
        with self._calling("list", self.location.url):
            for page in pages:
                yield [
                    item["Key"][len(self.location.prefix) :] for item in page.get("Contents", [])
                ]

    @contextlib.contextmanager
    def _calling(self, what: str, subject: str) -> Iterator[None]:
        """Map the client's exceptions to OSError, keep the outage state, and count and
        time the call (fsobj/measures.py)."""
        outcome = "error"
        try:
            with measures.Timed(measures.BLOB_SERVICE_SECONDS.labels(what)):
                yield
            outcome = "ok"
        except botocore.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in _NOT_THERE:
                outcome = "missing"
                self._answered()
                raise FileNotFoundError(
                    errno.ENOENT, f"the blob service holds no {subject}"
                ) from None
            self._failed(what, subject, error)
            raise OSError(errno.EIO, f"blob service: {what} {subject}: {error}") from None
        except botocore.exceptions.BotoCoreError as error:
            self._failed(what, subject, error)
            raise OSError(errno.EIO, f"blob service: {what} {subject}: {error}") from None
        finally:
            measures.BLOB_SERVICE_CALLS.labels(what, outcome).inc()
        self._answered()

    def _failed(self, what: str, subject: str, error: Exception) -> None:
        with self._lock:
            first, self._down = not self._down, True
        if first:
            log.warning(
                "the blob service at %s fails (%s %s: %s); requests that need it fail with"
                " EIO until it answers again",
                self.location.endpoint or "AWS",
                what,
                subject,
                error,
            )

    def _answered(self) -> None:
        if self._down:
            with self._lock:
                back, self._down = self._down, False
            if back:
                log.warning("the blob service at %s answers again", self.location.endpoint)


class RemoteDataStore(DataStore):
    """The data store with its blobs at an S3 service, and the store's own `blobs/`
    directory as their bounded local cache (datastore/cache.py). Staging stays local."""

    small_commits_inline = False  # a commit uploads: never on the loop
    durable_at_commit = True  # the service holds it

    def __init__(self, root: Path, remote: RemoteBlobs, cache_bytes: int = DEFAULT_CACHE_BYTES):
        super().__init__(root)
        for index in range(256):  # the cache may have been emptied by hand, shards and all
            (self.blobs / f"{index:02x}").mkdir(exist_ok=True)
        self.remote = remote
        self.cache = BlobCache(self.blob_path, cache_bytes)
        self.cache.scan(self.blobs)
        self._filling: dict[str, trio.Event] = {}

    def commit_now(
        self, staging: Staging, object_id: str, sync: bool, seal: Seal | None = None
    ) -> Blob:
        """The blob goes to the cache without a local sync, then to the service; it is
        the service's copy that makes it durable. A failed upload leaves no blob."""
        blob = super().commit_now(staging, object_id, False, seal)
        path = self.blob_path(object_id)
        try:
            if seal is None:  # the ETag is the file's MD5, unless a multipart upload's
                md5 = None if blob.etag is None or "-" in blob.etag else blob.etag
                self.remote.upload(path, object_id, blob.size, md5)
            else:
                self.remote.upload(path, object_id, sealed_size(blob.size), None)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return blob

    async def commit(
        self, staging: Staging, object_id: str, sync: bool = True, seal: Seal | None = None
    ) -> Blob:
        blob = await super().commit(staging, object_id, sync, seal)
        self.cache.added(object_id, blob.size)
        return blob

    def commit_open(
        self, staging: Staging, object_id: str, seal: Seal | None = None
    ) -> tuple[Blob, BlobFile | None]:
        return self.commit_now(staging, object_id, False, seal), None  # uploaded, as any

    async def ensure_local(self, object_id: str, size: int, checksums: bytes | None) -> None:
        """Fill the cache with the blob unless it holds it; readers of one blob that is
        being filled wait for that one fill."""
        (measures.BLOB_CACHE_HITS if object_id in self.cache else measures.BLOB_CACHE_MISSES).inc()
        while object_id not in self.cache:
            filling = self._filling.get(object_id)
            if filling is not None:
                await filling.wait()
                continue
            filling = self._filling[object_id] = trio.Event()
            try:
                await trio.to_thread.run_sync(self._fill, object_id, size, checksums)
                self.cache.added(object_id, size)
            finally:
                del self._filling[object_id]
                filling.set()
        self.cache.used_now(object_id)

    def _fill(self, object_id: str, size: int, checksums: bytes | None) -> None:
        path = self.blob_path(object_id)
        if path.exists():  # left by an earlier run, or committed here
            return
        partial = self.staging_path()
        try:
            self.remote.download(object_id, partial)
            if problem := blob_file_problem(partial, size, checksums):
                raise DamagedBlob(f"blob {object_id} at the blob service {problem}")
            partial.chmod(0o400)
            os.rename(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    async def sync_blob(self, object_id: str) -> None:
        """Nothing to do: the commit returned once the service held the blob."""

    def blob_problem(self, object_id: str, size: int, checksums: bytes | None, verify: bool) -> str:
        held = self.remote.size(object_id)
        if held is None:
            return "is missing at the blob service"
        if held not in (size, sealed_size(size)):
            return f"has {held} bytes at the blob service, not {size}"
        if verify and checksums is not None:
            copy = self.staging_path()
            try:
                self.remote.download(object_id, copy)
                return blob_file_problem(copy, size, checksums)
            finally:
                copy.unlink(missing_ok=True)
        return ""

    async def remove_blobs(self, object_ids: list[str]) -> None:
        for object_id in object_ids:
            self.cache.removed(object_id)
        await super().remove_blobs(object_ids)
        await trio.to_thread.run_sync(self.remote.delete, object_ids)

    def blob_batches(self) -> Iterator[list[str]]:
        return self.remote.batches()

    def blob_size(self, object_id: str) -> int | None:
        return self.remote.size(object_id)
