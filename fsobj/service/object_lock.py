"""Object lock (S3's WORM protection) on versioned buckets: a version under retention
(GOVERNANCE or COMPLIANCE, until a date) or a legal hold cannot be removed by any route,
the mount included, nor by lifecycle rules or gc. Overwriting is no route to it: in a
versioned bucket a new version goes on top and the locked one stays.

A bucket's lock (enabled, and its default retention) is an item of its user metadata
(`LOCK`, JSON); a version's retention and legal hold are items of its own metadata
(`RETENTION`: "MODE UNTIL", `LEGAL_HOLD`: "ON"), so they go with it into the history when
a newer version replaces it. A bucket with object lock stays Enabled: it cannot be
suspended. GOVERNANCE gives way to who asks to bypass it and may (the version's owner or
an administrator, with S3's `x-amz-bypass-governance-retention`; on the mount, root);
COMPLIANCE and legal holds give way to no one, and a COMPLIANCE retention is only ever
lengthened."""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from typing import TYPE_CHECKING

from fsobj.iam.policy import Identity
from fsobj.metadata.entries import Entry
from fsobj.refusals import Reason, Refused
from fsobj.service import names
from fsobj.service.names import LEGAL_HOLD, LOCK, RETENTION

if TYPE_CHECKING:
    from fsobj.service.core import Service

MODES = ("GOVERNANCE", "COMPLIANCE")
_MODES = "a retention's mode is GOVERNANCE or COMPLIANCE"
ITEMS = (RETENTION, LEGAL_HOLD)


@dataclasses.dataclass(frozen=True, slots=True)
class Retention:
    mode: str
    until_ns: int

    @classmethod
    def parse(cls, text: str) -> Retention:
        """From "MODE UNTIL" (UNTIL an ISO 8601 date and time, as S3 writes it)."""
        mode, _, until = text.partition(" ")
        if mode not in MODES:
            raise Refused(
                Reason.BAD_ARGUMENT, None, "a retention's mode is GOVERNANCE or COMPLIANCE"
            )
        try:
            when = datetime.datetime.fromisoformat(until.replace("Z", "+00:00"))
        except ValueError:
            raise Refused(Reason.BAD_ARGUMENT, None, f"not a date: {until!r}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return cls(mode, int(when.timestamp() * 1e9))

    def text(self) -> str:
        return f"{self.mode} {self.until()}"

    def until(self) -> str:
        moment = datetime.datetime.fromtimestamp(self.until_ns / 1e9, datetime.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def in_force(self, now_ns: int | None = None) -> bool:
        return self.until_ns > (time.time_ns() if now_ns is None else now_ns)


@dataclasses.dataclass(frozen=True, slots=True)
class BucketLock:
    """A bucket's object lock: its default retention for new versions, if any."""

    mode: str | None = None
    days: int | None = None
    years: int | None = None

    def check(self) -> None:
        if (self.mode is None) != (self.days is None and self.years is None):
            raise Refused(Reason.BAD_ARGUMENT, None, "a default retention has a mode and a period")
        if self.mode is not None and self.mode not in MODES:
            raise Refused(
                Reason.BAD_ARGUMENT, None, "a retention's mode is GOVERNANCE or COMPLIANCE"
            )
        if self.days is not None and self.years is not None:
            raise Refused(Reason.BAD_ARGUMENT, None, "a default retention has days or years")
        for count in (self.days, self.years):
            if count is not None and count <= 0:
                raise Refused(Reason.BAD_ARGUMENT, None, "a retention period is positive")

    def default_items(self, now_ns: int) -> dict[str, bytes]:
        """The items a new version gets: its default retention."""
        if self.mode is None:
            return {}
        days = self.days if self.days is not None else 365 * (self.years or 0)
        until = Retention(self.mode, now_ns + days * 86_400 * 10**9)
        return {RETENTION: until.text().encode()}


async def bucket_lock(core: Service, bucket: Entry) -> BucketLock | None:
    found = (await core.user_metadata(bucket)).get(LOCK)
    return None if found is None else BucketLock(**json.loads(found))


async def set_bucket_lock(core: Service, bucket: Entry, lock: BucketLock) -> None:
    """Enable object lock on a bucket whose versioning is Enabled (it stays so), with
    `lock`'s default retention."""
    lock.check()
    if (await core.user_metadata(bucket)).get(names.VERSIONING) != b"Enabled":
        raise Refused(Reason.BAD_STATE, None, "object lock needs versioning Enabled")
    await core.set_item(bucket, LOCK, json.dumps(dataclasses.asdict(lock)).encode())


def retention_of(items: dict[str, bytes]) -> Retention | None:
    found = items.get(RETENTION)
    return None if found is None else Retention.parse(found.decode())


def legal_hold_of(items: dict[str, bytes]) -> bool:
    return items.get(LEGAL_HOLD) == b"ON"


def is_locked(items: dict[str, bytes]) -> bool:
    """Whether a version with these items is under a legal hold or a retention in force."""
    retention = retention_of(items)
    return legal_hold_of(items) or (retention is not None and retention.in_force())


async def new_version_items(
    core: Service, bucket: Entry, entry: Entry, metadata: dict[str, bytes] | None
) -> dict[str, bytes] | None:
    """The user metadata of a new version of `entry` in a bucket with object lock: a
    version's retention and legal hold are its own, so a rewrite that keeps the rest
    (`metadata` None) does not keep them; the bucket's default retention applies unless
    the writer gave one (S3's `x-amz-object-lock-*` headers)."""
    lock = await bucket_lock(core, bucket)
    if lock is None:
        return metadata
    if metadata is None:
        kept = await core.user_metadata(entry)
        metadata = {name: value for name, value in kept.items() if name not in ITEMS}
    if RETENTION not in metadata:
        metadata = metadata | lock.default_items(time.time_ns())
    return metadata


def check_removable(items: dict[str, bytes], who: Identity, owner: int, bypass: bool) -> None:
    """Refuse (LOCKED) to remove for good a version with these items of metadata."""
    if legal_hold_of(items):
        raise Refused(Reason.LOCKED, None, "the version is under a legal hold")
    retention = retention_of(items)
    if retention is None or not retention.in_force():
        return
    if retention.mode == "GOVERNANCE" and _may_bypass(who, owner, bypass):
        return
    raise Refused(
        Reason.LOCKED, None, f"the version is retained ({retention.mode}) until {retention.until()}"
    )


def check_retention_change(
    items: dict[str, bytes], new: Retention | None, who: Identity, owner: int, bypass: bool
) -> None:
    """Refuse (LOCKED) a change of retention that shortens or lifts one in force, unless
    it is GOVERNANCE and `who` may bypass it; COMPLIANCE is only ever lengthened."""
    old = retention_of(items)
    if old is None or not old.in_force():
        return
    weaker = new is None or new.until_ns < old.until_ns or new.mode != old.mode
    if weaker and not (old.mode == "GOVERNANCE" and _may_bypass(who, owner, bypass)):
        raise Refused(
            Reason.LOCKED, None, f"a {old.mode} retention until {old.until()} is not shortened"
        )


def _may_bypass(who: Identity, owner: int, bypass: bool) -> bool:
    """Whether `who` asks to `bypass` a GOVERNANCE retention and may: the version's owner
    or an administrator."""
    return bypass and who.uid in (0, owner)


async def set_lock_item(
    core: Service, entry: Entry, item: str, value: bytes | None, who: Identity
) -> None:
    """On the mount: set (or remove) the retention ("MODE UNTIL") or legal hold ("ON",
    "OFF") of an object's current version, by the rules of S3's PutObjectRetention and
    PutObjectLegalHold (an administrator bypasses GOVERNANCE)."""
    bucket = await core.bucket_of(entry)
    if bucket is None or await bucket_lock(core, bucket) is None:
        raise Refused(Reason.BAD_STATE, None, "the bucket has no object lock")
    if item == RETENTION:
        new = None if value is None else Retention.parse(value.decode("utf-8", "replace"))
        # root, who has no header to ask with, asks by being root
        items = await core.user_metadata(entry)
        check_retention_change(items, new, who, entry.uid, who.uid == 0)
        value = None if new is None else new.text().encode()
    elif value not in (None, b"ON", b"OFF"):
        raise Refused(Reason.BAD_ARGUMENT, None, "a legal hold is ON or OFF")
    await core.set_item(entry, item, None if value in (None, b"OFF") else value)
