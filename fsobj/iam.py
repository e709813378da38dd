"""IAM: decides whether the calling identity may act on a bucket.

The API service asks before every request that reads or changes a bucket. This module
holds the interface and, for now, a policy that allows everything; access control by
bucket ACLs fills it in behind the same interface.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Protocol


class Permission(enum.Enum):
    READ = "READ"
    WRITE = "WRITE"
    READ_ACP = "READ_ACP"
    WRITE_ACP = "WRITE_ACP"
    FULL_CONTROL = "FULL_CONTROL"


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    uid: int
    gid: int
    pid: int


class Policy(Protocol):
    def allows(self, who: Identity, permission: Permission, bucket: str) -> bool:
        """Whether `who` holds `permission` on `bucket` (the empty name: the store itself)."""
        ...


class AllowAll:
    """Every caller may do everything: a single-user mount."""

    def allows(self, who: Identity, permission: Permission, bucket: str) -> bool:
        return True
