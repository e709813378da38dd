"""Multipart uploads in progress: their parts, staged on disk until the upload completes.

STORE/uploads/ID/upload.json   bucket, key, initiator, content type, metadata, start time
STORE/uploads/ID/NNNNN-MD5     part NNNNN, whose MD5 (its ETag) is in its name; beside
                               it, its chunks' CRC-32s (.crc) and its S3 checksum (.sum)
STORE/uploads/ID/completed     once completed (its parts gone): the object's ETag, so that
                               a retried completion whose answer was lost succeeds too

A part is written under a temporary name and renamed once whole, so an upload survives a
restart with exactly the parts that were acknowledged. Completing concatenates the parts
into one staging file (in the kernel: `copy_file_range`), which commits as any upload
does; the parts never pass through memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

from fsobj.datastore.blob_file import CHUNK
from fsobj.datastore.staging import Staging
from fsobj.service import checksums

MIN_PART = 5 << 20  # every part but the last, as S3 requires
MAX_PARTS = 10_000
ABANDONED_UPLOAD = 7 * 24 * 3600.0  # seconds after which gc removes an upload in progress


@dataclasses.dataclass(frozen=True, slots=True)
class Upload:
    upload_id: str
    bucket: str
    key: str
    uid: int
    content_type: str | None
    metadata: dict[str, bytes]
    initiated_ns: int
    completed_etag: str | None = None  # completed already: the object's ETag
    checksum: str | None = None  # "ALGORITHM TYPE": the S3 checksum the object keeps


@dataclasses.dataclass(frozen=True, slots=True)
class Part:
    number: int
    etag: str
    size: int
    modified_ns: int
    checksum: str | None = None  # "ALGORITHM VALUE": the S3 checksum it came with


class Uploads:
    """The multipart uploads of a store (blocking calls: run them in a thread)."""

    def __init__(self, root: Path):
        self.root = root / "uploads"
        self.root.mkdir(exist_ok=True)

    def create(
        self,
        bucket: str,
        key: str,
        uid: int,
        content_type: str | None,
        metadata: dict[str, bytes],
        checksum: str | None = None,
    ) -> Upload:
        upload = Upload(
            uuid.uuid4().hex,
            bucket,
            key,
            uid,
            content_type,
            metadata,
            time.time_ns(),
            checksum=checksum,
        )
        where = self.root / upload.upload_id
        where.mkdir()
        record = dataclasses.asdict(upload)
        record["metadata"] = {k: v.hex() for k, v in metadata.items()}
        (where / "upload.json").write_text(json.dumps(record))
        return upload

    def get(self, upload_id: str) -> Upload | None:
        if not upload_id.isalnum():
            return None
        try:
            record = json.loads((self.root / upload_id / "upload.json").read_text())
        except (OSError, ValueError):
            return None
        record["metadata"] = {k: bytes.fromhex(v) for k, v in record["metadata"].items()}
        with contextlib.suppress(FileNotFoundError):
            record["completed_etag"] = (self.root / upload_id / "completed").read_text()
        return Upload(**record)

    def all(self) -> list[Upload]:
        """The uploads in progress (not those completed already)."""
        found = [self.get(path.name) for path in self.root.iterdir()]
        return sorted(
            (u for u in found if u and u.completed_etag is None),
            key=lambda u: (u.key, u.initiated_ns),
        )

    def part_file(self, upload_id: str) -> Path:
        """A temporary name for a part being received."""
        return self.root / upload_id / f"receiving-{uuid.uuid4().hex}"

    def keep_part(
        self,
        upload_id: str,
        number: int,
        received: Path,
        digests: tuple[str, bytes],
        checksum: str | None = None,
    ) -> None:
        """A part received whole at `received`, with its MD5 and chunk checksums, and the
        S3 checksum it came with ("ALGORITHM VALUE"), becomes part `number` (replacing an
        earlier one of that number)."""
        for old in self._part_paths(upload_id).get(number, []):
            _remove_part(old)
        etag, checksums = digests
        kept = self.root / upload_id / f"{number:05d}-{etag}"
        kept.with_name(kept.name + ".crc").write_bytes(checksums)
        if checksum is not None:
            kept.with_name(kept.name + ".sum").write_text(checksum)
        received.rename(kept)

    def part_checksum(self, upload_id: str, number: int, algorithm: str) -> str:
        """Part `number`'s S3 checksum in `algorithm`: the one it came with, or computed
        from its content. Blocking: for a thread."""
        kept = self._part_paths(upload_id)[number][-1]
        with contextlib.suppress(FileNotFoundError):
            sent, value = kept.with_name(kept.name + ".sum").read_text().split()
            if sent == algorithm:
                return value
        return checksums.of_file(kept, algorithm)

    def _part_paths(self, upload_id: str) -> dict[int, list[Path]]:
        paths: dict[int, list[Path]] = {}
        for path in (self.root / upload_id).iterdir():
            number, _, etag = path.name.partition("-")
            if number.isdigit() and len(etag) == 32:
                paths.setdefault(int(number), []).append(path)
        return paths

    def parts(self, upload_id: str) -> list[Part]:
        found = []
        for number, paths in sorted(self._part_paths(upload_id).items()):
            st = paths[-1].stat()
            etag = paths[-1].name.partition("-")[2]
            checksum = None
            with contextlib.suppress(FileNotFoundError):
                checksum = paths[-1].with_name(paths[-1].name + ".sum").read_text()
            found.append(Part(number, etag, st.st_size, st.st_mtime_ns, checksum))
        return found

    def assemble(self, upload_id: str, numbers: list[int], staging: Path) -> Staging:
        """The parts `numbers`, in order, as one staging file; with the checksums of its
        chunks when every part but the last is a whole number of chunks (as clients cut
        them), so that its commit reads nothing back."""
        paths = self._part_paths(upload_id)
        sums = b""
        for index, number in enumerate(numbers):
            kept = paths[number][-1]
            whole = kept.stat().st_size % CHUNK == 0
            if not whole and index < len(numbers) - 1:
                sums = b""
                break
            sums += kept.with_name(kept.name + ".crc").read_bytes()
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        size = 0
        try:
            for number in numbers:
                with open(paths[number][-1], "rb") as part:
                    length = os.fstat(part.fileno()).st_size
                    copied = 0
                    while copied < length:
                        n = os.copy_file_range(part.fileno(), fd, length - copied, copied, size)
                        if n == 0:
                            raise OSError(f"part {number} ended early")
                        copied += n
                        size += n
        except BaseException:
            os.close(fd)
            staging.unlink()
            raise
        assembled = Staging(staging, fd, size)
        if sums or size == 0:
            assembled.checksums = sums
        return assembled

    def remove(self, upload_id: str) -> None:
        shutil.rmtree(self.root / upload_id, ignore_errors=True)

    def completed(self, upload_id: str, etag: str) -> None:
        """The upload is the object of this ETag now: its parts go, its record stays (until
        it expires) to answer a retried completion."""
        where = self.root / upload_id
        (where / "completed").write_text(etag)
        for paths in self._part_paths(upload_id).values():
            for path in paths:
                _remove_part(path)

    def expire(self, older_than_seconds: float) -> int:
        """Remove uploads begun longer ago than that: abandoned by their clients, or
        completed (their record kept for retries) as long ago."""
        limit = time.time_ns() - int(older_than_seconds * 1e9)
        found = [self.get(path.name) for path in self.root.iterdir()]
        expired = [u for u in found if u and u.initiated_ns < limit]
        for upload in expired:
            self.remove(upload.upload_id)
        return len(expired)


def _remove_part(path: Path) -> None:
    for sidecar in (".crc", ".sum"):
        path.with_name(path.name + sidecar).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def multipart_etag(part_etags: list[str]) -> str:
    """S3's ETag of a multipart object: the MD5 of the parts' MD5s, and their count."""
    joined = b"".join(bytes.fromhex(etag) for etag in part_etags)
    return f"{hashlib.md5(joined).hexdigest()}-{len(part_etags)}"
