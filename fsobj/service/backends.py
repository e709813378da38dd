"""Which backends a store uses, recorded once by `fsobj format` in `STORE/backends.json`.

A store without that file is the embedded default: metadata in `meta.sqlite3`, blobs in
`blobs/`. A store formatted with `--meta postgresql://...` keeps its metadata in that
PostgreSQL database; with `--data s3://BUCKET[/PREFIX]`, its blobs at that S3 service,
with `blobs/` as a bounded cache. The file holds no secret (passwords come from libpq's
PGPASSWORD or 0600 ~/.pgpass, S3 credentials from boto3's chain: the environment or a
0600 credentials file), yet it is the owner's alone (0600), as the whole store is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fsobj.datastore.cache import DEFAULT_CACHE_BYTES
from fsobj.datastore.store import DataStore

if TYPE_CHECKING:
    from fsobj.datastore.remote import RemoteBlobs

FILE = "backends.json"
BLOB_LOCATION = "blob location"  # the setting in a shared store's database
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class BackendError(Exception):
    """A backend that cannot be used; the message says why, for the user."""


@dataclasses.dataclass(frozen=True)
class Backends:
    meta: str | None = None  # postgresql://USER@HOST[:PORT]/DB; None: meta.sqlite3 here
    data: str | None = None  # s3://BUCKET[/PREFIX]; None: the store's own directory
    endpoint: str | None = None
    region: str | None = None
    cache_bytes: int = DEFAULT_CACHE_BYTES

    def describe(self) -> str:
        meta = f"metadata in {self.meta}" if self.meta else "metadata in the store's directory"
        if self.data is None:
            return f"{meta}, blobs in the store's directory"
        at = f" at {self.endpoint}" if self.endpoint else ""
        return f"{meta}, blobs at {self.data}{at}, cached locally up to {self.cache_bytes} bytes"

    @property
    def shared(self) -> bool:
        """Whether several hosts may serve the store: its metadata and blobs are both on
        servers (docs/scale.md)."""
        return self.meta is not None and self.data is not None

    def blob_location(self) -> str:
        """Where the blobs live, as every host of a shared store must agree."""
        return json.dumps({"data": self.data, "endpoint": self.endpoint, "region": self.region})

    def metadata_location(self, root: Path) -> Path | str:
        """Where open_metadata_store finds the metadata."""
        return self.meta or root / "meta.sqlite3"


def size_of(text: str) -> int:
    """A size such as 512M or 10G (binary units)."""
    match = re.fullmatch(r"(\d+)([KMGT]?)i?B?", text.strip().upper())
    if not match:
        raise ValueError(f"{text!r} is not a size such as 512M or 10G")
    return int(match[1]) * _UNITS[match[2]]


def read(root: Path) -> Backends:
    try:
        fields = json.loads((root / FILE).read_text())
    except FileNotFoundError:
        return Backends()
    except (OSError, ValueError) as error:
        raise BackendError(f"cannot read {root / FILE}: {error}") from None
    try:
        return Backends(**fields)
    except TypeError as error:
        raise BackendError(f"{root / FILE} is not understood (a newer fsobj?): {error}") from None


def open_data_store(root: Path, backends: Backends) -> DataStore:
    """The data store the backends name, checked to work before anything is written."""
    if backends.data is None:
        return DataStore(root)
    from fsobj.datastore.remote import RemoteDataStore

    return RemoteDataStore(root, _working_blob_service(backends), backends.cache_bytes)


def _working_blob_service(backends: Backends) -> RemoteBlobs:
    """The S3 service the backends name, once it has shown that the bucket exists and the
    credentials may use it."""
    # Imported here: boto3 takes a third of a second to import, which a store that keeps
    # its blobs locally never needs.
    from fsobj.datastore.remote import Location, RemoteBlobs

    assert backends.data is not None
    try:
        remote = RemoteBlobs(Location.parse(backends.data, backends.endpoint, backends.region))
        remote.check()
    except ValueError as error:
        raise BackendError(str(error)) from None
    except OSError as error:
        raise BackendError(f"the blob service cannot be used: {error.strerror}") from None
    return remote


def check_meta_url(url: str) -> None:
    """A PostgreSQL URL without a password (libpq finds it in PGPASSWORD or ~/.pgpass)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise BackendError(f"{url!r} is not postgresql://USER@HOST[:PORT]/DATABASE")
    if parts.password is not None or "password=" in parts.query:
        raise BackendError(
            "no password in the URL (ps would show it): put it in PGPASSWORD or ~/.pgpass"
        )


def format_store(root: Path, backends: Backends) -> None:
    """Make a new store at `root` that uses `backends`: refused for an existing store,
    and for backends that do not work (nothing is written then)."""
    if (root / "meta.sqlite3").exists() or (root / FILE).exists():
        raise BackendError(f"{root} is a store already; format makes new ones")
    if backends.meta is not None:
        check_meta_url(backends.meta)
        _check_new_database(backends.meta)
    if backends.data is not None:
        _working_blob_service(backends)
    if backends.shared:  # hosts that join read where the blobs live from the database
        _record_blob_location(backends)
    _write(root, backends)


def _write(root: Path, backends: Backends) -> None:
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    fields = {k: v for k, v in dataclasses.asdict(backends).items() if v is not None}
    fd = os.open(root / FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(fields, out, indent=2)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())


def join_store(root: Path, meta: str, cache_bytes: int = DEFAULT_CACHE_BYTES) -> Backends:
    """Make `root` this host's directory of the shared store whose metadata is at `meta`
    (its blobs are where that database says); refused, with nothing written, for an
    existing store and for backends that do not work."""
    if (root / "meta.sqlite3").exists() or (root / FILE).exists():
        raise BackendError(f"{root} is a store already")
    check_meta_url(meta)
    recorded = _database_query(
        meta,
        "SELECT value FROM settings WHERE name = %s",
        (BLOB_LOCATION,),
        f"{meta} holds no shared store: format one (--meta and --data) first",
    )
    place = json.loads(recorded)
    chosen = Backends(meta, place["data"], place["endpoint"], place["region"], cache_bytes)
    _working_blob_service(chosen)
    _write(root, chosen)
    return chosen


def _database_query(url: str, sql: str, params: tuple, missing: str) -> str:
    """The one value that `sql` finds in the database at `url` (BackendError `missing`
    when there is none)."""
    with _database(url) as conn:
        row = None
        if conn.execute("SELECT to_regclass('settings')").fetchall()[0][0] is not None:
            row = conn.execute(sql, params).fetchone()
    if row is None or row[0] is None:
        raise BackendError(missing)
    return row[0]


def _record_blob_location(backends: Backends) -> None:
    from fsobj.metadata.schema_postgres import migrate

    assert backends.meta is not None
    with _database(backends.meta) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO settings (name, value) VALUES (%s, %s)",
            (BLOB_LOCATION, backends.blob_location()),
        )


def _check_new_database(url: str) -> None:
    """That the database answers and holds no store yet (its schema is made at mount)."""
    with _database(url) as conn:
        taken = conn.execute("SELECT to_regclass('entries') IS NOT NULL").fetchall()[0][0]
    if taken:
        raise BackendError(f"{url} holds a store already; format makes new ones")


@contextlib.contextmanager
def _database(url: str) -> Iterator[Any]:
    """A connection to the database at `url` (autocommit), whose failures are one
    BackendError."""
    import psycopg

    from fsobj.metadata.postgres import one_line

    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            yield conn
    except psycopg.Error as error:
        raise BackendError(f"the metadata database cannot be used: {one_line(error)}") from None
