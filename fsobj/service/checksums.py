"""S3's checksums of content (`x-amz-checksum-*`): CRC32, CRC32C, CRC64-NVME, SHA-1 and
SHA-256, of a whole object or, for a multipart upload, composite (the checksum of its
parts' checksums, `-N` after it) or of the full object, as S3 computes them."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from typing import Any, ClassVar

from fsobj.datastore.crc import crc32

COMPOSITE, FULL_OBJECT = "COMPOSITE", "FULL_OBJECT"


def _awscrt() -> Any:
    """awscrt's checksums, imported on first use: loading its library costs every
    process (each command, each daemon) 85 ms otherwise."""
    import awscrt.checksums

    return awscrt.checksums


class Checksum:
    """A checksum computed over content fed to it in order."""

    # The CRCs extend a running value (64 bits for CRC64-NVME, else 32); the others are
    # hashlib digests.
    CRCS: ClassVar[dict[str, Callable[[bytes, int], int]]] = {
        "crc32": crc32,
        "crc32c": lambda data, crc: _awscrt().crc32c(data, crc),
        "crc64nvme": lambda data, crc: _awscrt().crc64nvme(data, crc),
    }
    ALGORITHMS = (*CRCS, "sha1", "sha256")

    def __init__(self, algorithm: str):
        self.algorithm = algorithm
        self._crc = 0
        self._extend = self.CRCS.get(algorithm)
        self._hash = None if self._extend else hashlib.new(algorithm)

    def update(self, data: bytes) -> None:
        if self._extend is not None:
            self._crc = self._extend(data, self._crc)
        else:
            assert self._hash is not None
            self._hash.update(data)

    def value(self) -> str:
        """The checksum as S3 writes it: its bytes in base64."""
        width = 8 if self.algorithm == "crc64nvme" else 4
        raw = self._crc.to_bytes(width, "big") if self._hash is None else self._hash.digest()
        return base64.b64encode(raw).decode()


def types_of(algorithm: str) -> tuple[str, ...]:
    """The kinds of checksum a multipart upload may keep with this algorithm, the
    default first: CRC64-NVME only of the full object, the hashes only composite."""
    if algorithm == "crc64nvme":
        return (FULL_OBJECT,)
    if algorithm in ("sha1", "sha256"):
        return (COMPOSITE,)
    return (COMPOSITE, FULL_OBJECT)


def composite(algorithm: str, parts: list[str]) -> str:
    """A multipart object's composite checksum, from its parts' (in order)."""
    summed = Checksum(algorithm)
    summed.update(b"".join(base64.b64decode(value) for value in parts))
    return f"{summed.value()}-{len(parts)}"


def of_file(path: os.PathLike | str, algorithm: str, chunk: int = 1 << 20) -> str:
    """The checksum of a file's content. Blocking: for a thread."""
    summed = Checksum(algorithm)
    with open(path, "rb", buffering=0) as content:
        while piece := content.read(chunk):
            summed.update(piece)
    return summed.value()
