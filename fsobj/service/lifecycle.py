"""Lifecycle rules of buckets (S3's lifecycle configuration): objects that expire (in a
versioned bucket: a delete marker hides them), past versions removed so many days after
they stopped being current (but the newest few, if asked), delete markers that hide
nothing any more, and multipart uploads abandoned, after so many days. Kept as the
bucket's user metadata (`fsobj.lifecycle`, JSON); applied by the daemon in the background
and by `fsobj gc`.

A "day" lasts `day_seconds` (86,400; shorter for tests, as Ceph RGW's
`rgw_lc_debug_interval`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from typing import Any

from fsobj.iam.policy import Identity
from fsobj.metadata.entries import Entry
from fsobj.refusals import Reason, Refused
from fsobj.service import bucket_settings, names, object_lock, object_versions, versioning
from fsobj.service import tags as tag_sets
from fsobj.service.objects import ObjectService

log = logging.getLogger(__name__)

LIFECYCLE = "fsobj.lifecycle"
DAY = 86_400.0
MAX_RULES = 1000
_ADMIN = Identity(0, 0, 0)


@dataclasses.dataclass
class Rule:
    """One rule: which objects (its filter) and what happens to them."""

    id: str = ""
    enabled: bool = True
    prefix: str = ""
    tags: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    size_greater_than: int | None = None
    size_less_than: int | None = None
    expiration_days: int | None = None
    expiration_date: str | None = None  # ISO 8601, midnight UTC, as S3 takes it
    expired_object_delete_marker: bool | None = None
    noncurrent_days: int | None = None
    newer_noncurrent_versions: int | None = None
    abort_upload_days: int | None = None

    def check(self) -> None:
        for days in (self.expiration_days, self.noncurrent_days, self.abort_upload_days):
            if days is not None and days <= 0:
                raise Refused(Reason.BAD_ARGUMENT, None, "days must be a positive integer")
        if self.expiration_days is not None and self.expiration_date is not None:
            raise Refused(Reason.BAD_ARGUMENT, None, "an expiration has days or a date")
        if self.expiration_date is not None:
            _date_ns(self.expiration_date)
        if len(self.id) > 255:
            raise Refused(Reason.BAD_ARGUMENT, None, "a rule's ID is at most 255 characters")

    def matches(self, key: str, size: int, tags: list[tuple[str, str]]) -> bool:
        if not key.startswith(self.prefix):
            return False
        if self.size_greater_than is not None and size <= self.size_greater_than:
            return False
        if self.size_less_than is not None and size >= self.size_less_than:
            return False
        return all(tag in tags for tag in self.tags)

    def expires(self, mtime_ns: int, now_ns: int, day_seconds: float) -> bool:
        if self.expiration_days is not None:
            return now_ns - mtime_ns >= self.expiration_days * day_seconds * 1e9
        if self.expiration_date is not None:
            return now_ns >= _date_ns(self.expiration_date)
        return False


def _date_ns(text: str) -> int:
    try:
        return int(time.mktime(time.strptime(text[:10], "%Y-%m-%d")) - time.timezone) * 10**9
    except ValueError:
        raise Refused(Reason.BAD_ARGUMENT, None, f"not a date: {text!r}") from None


def encode(rules: list[Rule]) -> bytes:
    if not rules or len(rules) > MAX_RULES:
        raise Refused(Reason.BAD_ARGUMENT, None, f"1 to {MAX_RULES} rules")
    if len({rule.id for rule in rules if rule.id}) != len([r for r in rules if r.id]):
        raise Refused(Reason.BAD_ARGUMENT, None, "rule IDs must be unique")
    for rule in rules:
        rule.check()
    return json.dumps([dataclasses.asdict(rule) for rule in rules]).encode()


def decode(stored: bytes) -> list[Rule]:
    rules: list[dict[str, Any]] = json.loads(stored)
    return [Rule(**(rule | {"tags": [tuple(t) for t in rule["tags"]]})) for rule in rules]


async def rules_of(service: ObjectService, who: Identity, bucket: str) -> list[Rule] | None:
    """A bucket's rules (None: it has none), for who may read its ACL."""
    stored = await bucket_settings.read(service, who, bucket, LIFECYCLE)
    return None if stored is None else decode(stored)


async def set_rules(
    service: ObjectService, who: Identity, bucket: str, rules: list[Rule] | None
) -> None:
    """Replace a bucket's rules (None: remove them), for who may change its ACL."""
    value = None if rules is None else encode(rules)
    await bucket_settings.write(service, who, bucket, LIFECYCLE, value)


async def apply(service: ObjectService, day_seconds: float = DAY) -> int:
    """Apply every bucket's enabled rules now: remove the objects they expire and abort
    the multipart uploads they end. Returns how many objects and uploads went."""
    removed = 0
    now = time.time_ns()
    for bucket in await service.list_buckets(_ADMIN):
        entry, _ = await service.bucket(_ADMIN, bucket.name)
        metadata = await service.core.user_metadata(entry)
        if LIFECYCLE not in metadata or names.SNAPSHOT_OF in metadata:
            continue
        for rule in decode(metadata[LIFECYCLE]):
            if rule.enabled:
                removed += await _expire(service, bucket.name, rule, now, day_seconds)
                removed += await _expire_past(service, entry, rule, now, day_seconds)
                removed += await _abort_uploads(service, bucket.name, rule, now, day_seconds)
    if removed:
        log.info("lifecycle rules removed %d objects and uploads", removed)
    return removed


async def _expire(
    service: ObjectService, bucket: str, rule: Rule, now: int, day_seconds: float
) -> int:
    if rule.expiration_days is None and rule.expiration_date is None:
        return 0
    expired, after = [], ""
    while True:
        page = await service.list(_ADMIN, bucket, rule.prefix, "", after, 1000)
        for listed in page.keys:
            entry = listed.entry
            if listed.key.endswith("/") or not rule.expires(entry.mtime_ns, now, day_seconds):
                continue
            tags = await tag_sets.tags(service, _ADMIN, bucket, listed.key) if rule.tags else []
            if rule.matches(listed.key, entry.size, tags):
                expired.append(listed.key)
        if not page.truncated:
            break
        after = page.last
    for key in expired:
        await service.delete(_ADMIN, bucket, key)
    return len(expired)


async def _expire_past(
    service: ObjectService, bucket: Entry, rule: Rule, now: int, day_seconds: float
) -> int:
    """NoncurrentVersionExpiration and ExpiredObjectDeleteMarker: past versions that
    stopped being current `noncurrent_days` ago, beyond the `newer_noncurrent_versions`
    newest; and delete markers that are all a key has left."""
    if rule.noncurrent_days is None and not rule.expired_object_delete_marker:
        return 0
    keep = rule.newer_noncurrent_versions or 0
    limit = now - (rule.noncurrent_days or 0) * day_seconds * 1e9
    doomed: list[tuple[str, str]] = []
    by_key = itertools.groupby(
        [v async for v in object_versions.past_versions_of(service, bucket, rule.prefix)],
        key=lambda version: version.key,
    )
    for key, group in by_key:
        versions = [v.past for v in group if v.past is not None]
        kept = [v for v in versions if not v.is_marker]
        if rule.noncurrent_days is not None:
            for past in kept[keep:]:
                metadata = await service._meta.version_metadata(bucket.inode, key, past.version_id)
                tags = names.parse_tags(metadata.get(names.TAGS, b""))
                if object_lock.is_locked(metadata):
                    continue  # object lock outranks every rule
                if past.until_ns < limit and rule.matches(key, past.size, tags):
                    doomed.append((key, past.version_id))
        # A marker is all the key has left: no past version, and no current one either.
        alone = len(versions) == 1 and versions[0].is_marker
        if (
            rule.expired_object_delete_marker
            and alone
            and await versioning.current_object(service.core, bucket, key) is None
        ):
            doomed.append((key, versions[0].version_id))
    for key, version_id in doomed:
        await object_versions.delete_version(service, _ADMIN, bucket.name, key, version_id)
    return len(doomed)


async def _abort_uploads(
    service: ObjectService, bucket: str, rule: Rule, now: int, day_seconds: float
) -> int:
    if rule.abort_upload_days is None:
        return 0
    limit = now - rule.abort_upload_days * day_seconds * 1e9
    ended = 0
    for upload in await service.multipart.list_uploads(_ADMIN, bucket):
        if upload.initiated_ns < limit and upload.key.startswith(rule.prefix):
            await service.multipart.abort_upload(_ADMIN, bucket, upload.key, upload.upload_id)
            ended += 1
    return ended
