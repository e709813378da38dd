"""Encryption at rest as S3 has it: SSE-S3 (blobs sealed with the store's keys), SSE-C
(sealed with a key the client sends with every request, never kept) and a bucket's
default for new objects. The data store seals and opens blobs (datastore/sealing.py);
this module decides how a new object is sealed and keeps what S3 answers of it, as the
object's `fsobj.encryption` item."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from fsobj.datastore.sealing import KeyStore
from fsobj.datastore.sealing import Seal as Seal  # the front ends name it from here
from fsobj.refusals import Reason, Refused
from fsobj.service import names

if TYPE_CHECKING:
    from fsobj.metadata.entries import Entry
    from fsobj.service.core import Service

STORE_KEY = "AES256"  # S3's name for SSE-S3, the only default a bucket can have


def store_keys(store: Path) -> KeyStore:
    """The store's keys (its `keys` file), for the command line."""
    return KeyStore(store / "keys")


def key_md5(key: bytes) -> str:
    return base64.b64encode(hashlib.md5(key).digest()).decode()


def note(seal: Seal | None) -> bytes | None:
    """What an object's metadata says of a blob sealed as `seal` (None: plain)."""
    if seal is None:
        return None
    if seal.customer_key is None:
        return STORE_KEY.encode()
    return f"SSE-C {key_md5(seal.customer_key)}".encode()


def of_object(metadata: dict[str, bytes]) -> tuple[str, str | None] | None:
    """How the object is sealed, from its metadata: ("AES256", None) or ("SSE-C",
    the MD5 of the client's key); None: plain."""
    kept = metadata.get(names.ENCRYPTION)
    if kept is None:
        return None
    scheme, _, md5 = kept.decode().partition(" ")
    return scheme, md5 or None


def check_key(metadata: dict[str, bytes], key: bytes | None) -> None:
    """Refuse a read that gives no key for an object sealed with a client's key, or one
    for an object that is not; a wrong key is refused by its blob, which it does not open."""
    sealed = of_object(metadata)
    customer = sealed is not None and sealed[0] == "SSE-C"
    if customer and key is None:
        raise Refused(Reason.NEEDS_KEY, None, "encrypted with a key its client keeps")
    if key is not None and not customer:
        raise Refused(Reason.INVALID, None, "not encrypted with a key its client keeps")
    if customer and sealed is not None and sealed[1] != key_md5(key or b""):
        raise Refused(Reason.WRONG_KEY, None, "not the key it was encrypted with")


async def bucket_default(core: Service, bucket: Entry | None) -> Seal | None:
    """How the bucket seals new objects that ask for nothing (None: plain)."""
    if bucket is None:
        return None
    found = (await core.user_metadata(bucket)).get(names.BUCKET_ENCRYPTION)
    return Seal() if found is not None else None


async def seal_for(core: Service, entry: Entry, asked: Seal | None) -> Seal | None:
    """How a commit to `entry` seals its blob: as its writer asked, else as the bucket
    says (OpenObjects.sealing)."""
    if asked is not None:
        return asked
    return await bucket_default(core, await core.bucket_of(entry))


async def described(core: Service, entry: Entry) -> str | None:
    """How a bucket seals new objects, or how an object is sealed: AES256 (the store's
    keys), SSE-C (a client's), None (plain): the mount's `user.fsobj.encryption`."""
    if entry.kind == "bucket":
        return None if await bucket_default(core, entry) is None else STORE_KEY
    sealed = of_object(await core.user_metadata(entry))
    return None if sealed is None else sealed[0]


async def set_default(core: Service, bucket: Entry, algorithm: str) -> None:
    """Set a bucket's default: AES256 (SSE-S3), or "" for none."""
    if algorithm not in ("", STORE_KEY):
        raise Refused(Reason.BAD_ARGUMENT, None, "a bucket's default encryption is AES256 or none")
    await core.set_item(bucket, names.BUCKET_ENCRYPTION, algorithm.encode() or None)
