"""How fsobj says no: one type, `Refused`, carrying an enumerated reason, where it
happened, and a detail for the log.

Every layer raises it for ordinary bad input (names, sizes, permissions the kernel cannot
check, the shape of the namespace), the metadata store included; each front end maps the
reason once at its edge, through one table each: an errno for FUSE (fsobj/fuse/errnos.py),
an S3 error code and HTTP status for S3 (fsobj/s3/errors.py). Failures of the machine
underneath (a full disk, an I/O error, a database out of reach) stay the OSError the system
raised, and damaged data is `DamagedBlob`: neither is a refusal. Anything else is a bug.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsobj.metadata.entries import Entry

    # Where a request acts: an entry, or a name inside a directory entry. The path is
    # spelled out only when a refusal is logged, so allowed requests never pay for it.
    Where = tuple[Entry, bytes | None]
else:
    Where = tuple[Any, Any]


class Reason(enum.Enum):
    """Why a request was refused, as precisely as any front end needs to tell it."""

    NO_SUCH_KEY = "no such entry"
    NO_SUCH_BUCKET = "no such bucket"
    NO_SUCH_UPLOAD = "no such multipart upload"
    NO_SUCH_ATTRIBUTE = "no such metadata"
    UNKEPT_ATTRIBUTE = "no metadata of that kind is kept"
    VANISHED = "removed meanwhile"
    STALE = "removed or replaced by another host"
    EXISTS = "exists already"
    BUCKET_EXISTS = "the bucket exists (another owner's)"
    BUCKET_OWNED = "the bucket exists (the caller's)"
    DENIED = "access denied"
    NOT_PERMITTED = "not permitted"
    NOT_EMPTY = "not empty"
    NAME_TOO_LONG = "name or key too long"
    BUCKET_NAME_TOO_LONG = "bucket name too long"
    METADATA_TOO_LARGE = "metadata too large"
    TOO_LARGE = "object too large"
    BAD_BUCKET_NAME = "not a bucket name"
    BAD_KEY = "not a key"
    BAD_ARGUMENT = "bad argument"
    INVALID = "invalid request"
    INVALID_PART = "no such part"
    PART_ORDER = "parts out of order"
    PART_TOO_SMALL = "part too small"
    IS_DIRECTORY = "is a directory"
    NOT_DIRECTORY = "not a directory"
    NOT_SUPPORTED = "not supported"
    NOT_WRITABLE = "not open for writing"
    OTHER_BUCKET = "in another bucket"
    BAD_TAGS = "not a tag set"
    READ_ONLY = "read-only (a snapshot)"
    VERSIONED_MOVE = "a directory of a versioned bucket moves key by key"
    NO_SUCH_VERSION = "no such version"
    DELETE_MARKER = "a delete marker, which has no content"
    LOCKED = "protected by object lock"
    BAD_STATE = "not in the state this needs"
    CONDITION = "a condition of the request does not hold"
    BAD_RANGE = "a range outside the object"
    BAD_DIGEST = "content that does not match its checksum"
    NEEDS_KEY = "encrypted with a key the request does not give"
    WRONG_KEY = "not the key it was encrypted with"


class Refused(Exception):
    """An ordinary refusal of bad input: the reason, where (None: not known where the rule
    was checked; the caller adds it with `at`), and a detail for the log; no traceback."""

    def __init__(self, reason: Reason, where: Where | None, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.where = where
        self.detail = detail

    def at(self, where: Where) -> Refused:
        """The same refusal, placed where the request acted."""
        if self.where is None:
            self.where = where
        return self

    def again(self) -> Refused:
        """The same refusal, new: for each of several requests that one check refused."""
        return Refused(self.reason, self.where, self.detail)
