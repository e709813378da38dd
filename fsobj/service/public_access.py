"""Block Public Access of a bucket (S3's PublicAccessBlock), kept with it as
`fsobj.public-access-block`, for S3 requests: BlockPublicAcls refuses an ACL that grants
everyone or every authenticated user anything (a bucket's grants, an object's mode bits
for others); IgnorePublicAcls reads the bucket's ACL without such grants; BlockPublicPolicy
refuses a policy that allows everyone; RestrictPublicBuckets lets a public policy's
Allow act for the owner and administrators alone."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from fsobj.iam.policy import Acl, Grant, Identity
from fsobj.refusals import Reason, Refused
from fsobj.service import bucket_settings

if TYPE_CHECKING:
    from fsobj.metadata.entries import Entry
    from fsobj.service.objects import ObjectService

BLOCK = "fsobj.public-access-block"
PUBLIC = ("everyone", "authenticated")


@dataclasses.dataclass(frozen=True)
class PublicAccessBlock:
    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False


NONE = PublicAccessBlock()


async def of_bucket(service: ObjectService, bucket: Entry) -> PublicAccessBlock:
    stored = await bucket_settings.in_force(service, bucket, BLOCK)
    return NONE if stored is None else PublicAccessBlock(**json.loads(stored))


async def get(service: ObjectService, who: Identity, bucket: str) -> PublicAccessBlock | None:
    """A bucket's setting (None: none), for who may read its ACL."""
    stored = await bucket_settings.read(service, who, bucket, BLOCK)
    return None if stored is None else PublicAccessBlock(**json.loads(stored))


async def put(
    service: ObjectService, who: Identity, bucket: str, block: PublicAccessBlock | None
) -> None:
    """Set a bucket's setting (None: remove it), for who may change its ACL."""
    value = None if block is None else json.dumps(dataclasses.asdict(block)).encode()
    await bucket_settings.write(service, who, bucket, BLOCK, value)


def is_public(grants: tuple[Grant, ...]) -> bool:
    return any(grant.grantee in PUBLIC for grant in grants)


async def check_grants(service: ObjectService, bucket: Entry, grants: tuple[Grant, ...]) -> None:
    """Refuse public grants where BlockPublicAcls is on."""
    if is_public(grants) and (await of_bucket(service, bucket)).block_public_acls:
        raise Refused(Reason.DENIED, None, "Block Public Access refuses public ACLs here")


async def check_mode(service: ObjectService, bucket: Entry, mode: int) -> None:
    """Refuse an object's mode that opens it to others where BlockPublicAcls is on."""
    if mode & 0o007 and (await of_bucket(service, bucket)).block_public_acls:
        raise Refused(Reason.DENIED, None, "Block Public Access refuses public ACLs here")


async def seen_acl(service: ObjectService, bucket: Entry, acl: Acl) -> Acl:
    """The bucket's ACL as S3 requests weigh it: without public grants where
    IgnorePublicAcls is on."""
    if not is_public(acl.grants) or not (await of_bucket(service, bucket)).ignore_public_acls:
        return acl
    return Acl(acl.owner, tuple(g for g in acl.grants if g.grantee not in PUBLIC))
