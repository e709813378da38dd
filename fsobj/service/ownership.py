"""Object Ownership of a bucket (S3's OwnershipControls), kept with it as
`fsobj.ownership`: who owns what S3 writes into the bucket. ObjectWriter (also with no
setting: fsobj's own rule, as on the mount) leaves an object its writer's;
BucketOwnerPreferred gives it to the bucket owner when the writer asks with the canned
ACL `bucket-owner-full-control`; BucketOwnerEnforced gives it to the bucket owner always
and turns ACLs off for S3 requests (a canned `private` or `bucket-owner-full-control`
aside: AccessControlListNotSupported). The mount keeps its POSIX rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fsobj.iam.policy import Identity
from fsobj.metadata.entries import Entry
from fsobj.refusals import Reason, Refused
from fsobj.service import bucket_settings

if TYPE_CHECKING:
    from fsobj.service.objects import ObjectService

OWNERSHIP = "fsobj.ownership"
RULES = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")
HARMLESS_ACLS = (None, "private", "bucket-owner-full-control")


async def of_bucket(service: ObjectService, bucket: Entry | str) -> str | None:
    stored = await bucket_settings.in_force(service, bucket, OWNERSHIP)
    return None if stored is None else stored.decode()


async def get(service: ObjectService, who: Identity, bucket: str) -> str | None:
    stored = await bucket_settings.read(service, who, bucket, OWNERSHIP)
    return None if stored is None else stored.decode()


async def put(service: ObjectService, who: Identity, bucket: str, rule: str | None) -> None:
    if rule is not None and rule not in RULES:
        raise Refused(Reason.INVALID, None, f"ObjectOwnership is one of {', '.join(RULES)}")
    value = None if rule is None else rule.encode()
    await bucket_settings.write(service, who, bucket, OWNERSHIP, value)


async def acls_off(service: ObjectService, bucket: str) -> bool:
    """Whether the bucket's owner enforces ownership: S3 requests may set no ACL."""
    return await of_bucket(service, bucket) == "BucketOwnerEnforced"


async def settle(service: ObjectService, bucket: str, entry: Entry, canned: str | None) -> None:
    """Give an object S3 wrote to the bucket's owner where the bucket says so."""
    bucket_entry, acl = await service.bucket(bucket_settings.ANYONE_MAY_LOOK, bucket)
    rule = await of_bucket(service, bucket_entry)
    enforced = rule == "BucketOwnerEnforced"
    preferred = rule == "BucketOwnerPreferred" and canned == "bucket-owner-full-control"
    if (enforced or preferred) and entry.uid != acl.owner:
        await service.core.change_attributes(entry, uid=acl.owner)
        service.core.attributes_changed(entry.kernel_inode)
