"""How fsobj says no: one type, `Refused`, carrying an errno, where it happened and why.

Every rule of the service raises it (names, sizes, permissions the kernel cannot check,
the shape of the namespace); each front end maps it once at its edge (the FUSE handlers:
`fuse_edge.request`). Failures of the machine underneath (a full disk, an I/O error) stay
the OSError the system raised, and damaged data is `DamagedBlob`: neither is a refusal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsobj.metadata.store import Entry

    # Where a request acts: an entry, or a name inside a directory entry. The path is
    # spelled out only when a refusal is logged, so allowed requests never pay for it.
    Where = tuple[Entry, bytes | None]
else:
    Where = tuple[Any, Any]


class Refused(Exception):
    """An ordinary refusal of bad input: an errno, where (None: not known where the rule
    was checked; the caller adds it with `at`), and the reason; no traceback."""

    def __init__(self, errno_: int, where: Where | None, reason: str, subject: str = ""):
        super().__init__(reason)
        self.errno = errno_
        self.where = where
        self.reason = reason
        # What was refused, where an errno says too little for a front end that names it
        # (S3 tells NoSuchBucket from NoSuchKey): "bucket", "owned-bucket", "key"...
        self.subject = subject

    def at(self, where: Where) -> Refused:
        """The same refusal, placed where the request acted."""
        if self.where is None:
            self.where = where
        return self
