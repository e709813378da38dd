"""Encryption at rest: blobs sealed with AES-256-GCM under a key of their own.

A sealed blob's file is a 128-byte header, then its content in sealed chunks: each 1 MiB
of content (the last one shorter) encrypted with the blob's data key, its 16-byte tag,
and a CRC-32 of those two, so that fsck and the blob cache can check a sealed blob
without any key. A chunk's nonce is its index (a data key seals one blob only, so no
nonce repeats) and its associated data says whether it is the last, so chunks can be
neither reordered nor dropped.

The header holds the data key wrapped (AES-256-GCM again) by a store key, named by id,
from the store's key file (SSE-S3), or by the key a client sends with each request
(SSE-C), which is never kept. Rotating the store key adds a new one for the blobs to
come; the old ones stay in the file for the blobs they wrapped, as AWS KMS keeps the
material of a rotated key.

A sealed blob is told from a plain one by its size: a plain blob's file is as long as the
object, a sealed one's is longer (`sealed_size`), so no content can pass for a sealed blob.
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import os
import secrets
import struct
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fsobj.datastore.crc import crc32
from fsobj.datastore.files import fsync_dir
from fsobj.refusals import Reason, Refused

CHUNK = 1 << 20  # as datastore.store.CHUNK: a sealed chunk holds one checksummed chunk
HEADER = 128
TAG = 16
SEALED_CHUNK = CHUNK + TAG + 4  # the content, its tag, the CRC-32 of both
MAGIC = b"fsobj sealed v1\n"
STORE_KEY, CUSTOMER_KEY = 1, 2  # how the data key is wrapped: SSE-S3, SSE-C
_WRAPPED = 12 + 32 + TAG  # nonce, data key, tag
KEYS_FILE_HEADER = "# fsobj store keys: ID BASE64 per line, the last one seals new blobs\n"


class KeyMissing(Exception):
    """The store key a blob was sealed with is not in the store's key file."""


@dataclasses.dataclass(frozen=True, slots=True)
class Seal:
    """How to seal a new blob: with the store's current key, or with a client's key."""

    customer_key: bytes | None = None

    @property
    def scheme(self) -> int:
        return STORE_KEY if self.customer_key is None else CUSTOMER_KEY


def sealed_size(size: int) -> int:
    """The length of the file of a sealed blob of `size` bytes of content."""
    return HEADER + size + (TAG + 4) * -(-size // CHUNK)


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def _chunk_data(index: int, last: bool) -> bytes:
    return struct.pack(">QB", index, last)


class KeyStore:
    """The store's keys, in a file of mode 0600 (`STORE/keys`): made with the first one
    the first time a blob is sealed, read again whenever it changes (a rotation by the
    command line while a daemon runs)."""

    def __init__(self, path: Path):
        self.path = path
        self._keys: dict[str, bytes] = {}
        self._active: str | None = None
        self._seen: tuple[int, int] | None = None  # (inode, mtime) of the file read
        self._lock = threading.Lock()

    def _load(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._keys, self._active, self._seen = {}, None, None
            return
        if (stat.st_ino, stat.st_mtime_ns) == self._seen:
            return
        keys: dict[str, bytes] = {}
        active = None
        for line in self.path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key_id, encoded = line.split()
                keys[key_id] = base64.b64decode(encoded)
                active = key_id
        self._keys, self._active, self._seen = keys, active, (stat.st_ino, stat.st_mtime_ns)

    def ids(self) -> list[str]:
        """The keys' ids, oldest first."""
        with self._lock:
            self._load()
            return list(self._keys)

    def active(self) -> tuple[str, bytes]:
        """The key that seals new blobs, made on first need."""
        with self._lock:
            self._load()
            if self._active is None:
                self._add_key(first=True)
            assert self._active is not None
            return self._active, self._keys[self._active]

    def key(self, key_id: str) -> bytes:
        with self._lock:
            if key_id not in self._keys:
                self._load()
            if key_id not in self._keys:
                raise KeyMissing(f"store key {key_id} is not in {self.path}")
            return self._keys[key_id]

    def rotate(self) -> str:
        """Add a new key, which seals the blobs to come; returns its id."""
        with self._lock:
            self._add_key(first=False)
            assert self._active is not None
            return self._active

    def _add_key(self, first: bool) -> None:
        """Add a key (`first`: unless the file has one by now), under the file's lock, which
        the daemon and the command line both take: neither writes over a key the other
        just added, which a blob may be sealed with already."""
        lock = os.open(
            self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600
        )
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._seen = None
            self._load()
            if not (first and self._active is not None):
                self._write_new_key()
        finally:
            os.close(lock)

    def _write_new_key(self) -> None:
        """Write the file anew with one more key: a new file renamed over the old, synced,
        so that a crash leaves the old file or the new one, and never loses a key."""
        key_id = secrets.token_hex(8)
        lines = [KEYS_FILE_HEADER]
        lines += [f"{k} {base64.b64encode(v).decode()}\n" for k, v in self._keys.items()]
        lines.append(f"{key_id} {base64.b64encode(AESGCM.generate_key(256)).decode()}\n")
        new = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, "".join(lines).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(new, self.path)
        fsync_dir(self.path.parent)
        self._seen = None
        self._load()


class Sealer:
    """Seals one new blob's content, chunk by chunk, under a new data key."""

    def __init__(self, seal: Seal, keys: KeyStore):
        data_key = AESGCM.generate_key(256)
        if seal.customer_key is None:
            key_id, wrapping = keys.active()
        else:
            key_id, wrapping = "", seal.customer_key
        fixed = MAGIC + bytes([seal.scheme]) + key_id.encode().ljust(16, b"\0")
        wrap_nonce = secrets.token_bytes(12)
        wrapped = wrap_nonce + AESGCM(wrapping).encrypt(wrap_nonce, data_key, fixed)
        self.header = (fixed + wrapped).ljust(HEADER, b"\0")
        self._cipher = AESGCM(data_key)

    def chunk(self, index: int, content: bytes | memoryview, last: bool) -> bytes:
        sealed = self._cipher.encrypt(_nonce(index), bytes(content), _chunk_data(index, last))
        return sealed + struct.pack("<I", crc32(sealed))


class Unsealer:
    """Opens the sealed chunks of one blob, whose header it was given."""

    def __init__(self, header: bytes, keys: KeyStore, customer_key: bytes | None):
        if len(header) < HEADER or not header.startswith(MAGIC):
            raise ValueError("no sealed blob's header")
        scheme = header[len(MAGIC)]
        fixed = header[: len(MAGIC) + 17]
        nonce, wrapped = header[len(fixed) : len(fixed) + 12], header[len(fixed) + 12 :]
        wrapped = wrapped[: _WRAPPED - 12]
        if scheme == CUSTOMER_KEY:
            if customer_key is None:
                raise Refused(Reason.NEEDS_KEY, None, "encrypted with a key its client keeps")
            wrapping = customer_key
        else:
            key_id = fixed[len(MAGIC) + 1 :].rstrip(b"\0").decode()
            wrapping = keys.key(key_id)
        try:
            data_key = AESGCM(wrapping).decrypt(nonce, wrapped, fixed)
        except InvalidTag:
            if scheme == CUSTOMER_KEY:
                raise Refused(Reason.WRONG_KEY, None, "not the key it was encrypted with") from None
            raise ValueError("its data key does not open with the store key") from None
        self.customer = scheme == CUSTOMER_KEY
        self._cipher = AESGCM(data_key)

    def chunk(self, index: int, sealed: bytes, last: bool) -> bytes | None:
        """Chunk `index`'s content (None: damaged)."""
        body = sealed[:-4]
        if len(sealed) < TAG + 4 or struct.unpack("<I", sealed[-4:])[0] != crc32(body):
            return None
        try:
            return self._cipher.decrypt(_nonce(index), body, _chunk_data(index, last))
        except InvalidTag:
            return None


def sealed_problem(fd: int, size: int) -> str:
    """What is wrong with the sealed blob of `size` bytes open at `fd`, found with no key
    ("" if nothing): a header that is not one, or a chunk that fails its CRC-32."""
    if not os.pread(fd, len(MAGIC), 0).startswith(MAGIC):
        return "has no sealed blob's header"
    chunks = -(-size // CHUNK)
    for index in range(chunks):
        sealed = os.pread(fd, SEALED_CHUNK, HEADER + index * SEALED_CHUNK)
        if len(sealed) < TAG + 4 or struct.unpack("<I", sealed[-4:])[0] != crc32(sealed[:-4]):
            return f"fails its checksum at byte {index * CHUNK} (sealed)"
    return ""
