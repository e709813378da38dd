"""Bucket policies: the JSON policy language of AWS IAM, kept with a bucket
(`fsobj.policy`) and weighed with its ACL for S3 requests as AWS weighs them: an explicit
Deny wins; otherwise an Allow from the policy or from the ACL (and the mode bits inside
the bucket) lets the request through.

What an Allow grants is the bucket owner's to give: a request a statement allows acts
with the owner's rights for it, so no policy gives anyone more than the owner has (and
objects it makes are the owner's, as S3's "bucket owner enforced" makes them).

Principals are local users: `*` (everyone, the anonymous included), a user name, a uid,
or `arn:aws:iam::ACCOUNT:user/NAME` or `:root`-less forms of them. Conditions: the
operators String(Not)Equals, String(Not)Like, (Not)IpAddress, Bool, Numeric(Not)Equals,
NumericLessThan(Equals), NumericGreaterThan(Equals) and their `...IfExists` forms, on the
keys the front end gives (aws:SourceIp, aws:SecureTransport, aws:UserAgent, aws:Referer,
aws:username, s3:prefix, s3:delimiter, s3:max-keys); a key it does not give makes a
condition false (true with IfExists)."""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import json
import pwd
from typing import TYPE_CHECKING, Any

from fsobj.iam.policy import NOBODY, Identity, Permission
from fsobj.refusals import Reason, Refused
from fsobj.service import bucket_settings, public_access

if TYPE_CHECKING:
    from fsobj.service.objects import ObjectService

POLICY = "fsobj.policy"
MOST_BYTES = 20 * 1024  # as S3
ALLOW, DENY, NEITHER = "Allow", "Deny", None
ANONYMOUS = Identity(NOBODY, NOBODY, 0)


@dataclasses.dataclass(frozen=True)
class Asked:
    """What a request asks, as a policy weighs it."""

    action: str  # s3:GetObject, ...
    resource: str  # arn:aws:s3:::BUCKET or arn:aws:s3:::BUCKET/KEY
    who: Identity
    context: dict[str, str]  # condition keys, in lowercase, and their values


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, text: str) -> bool:
    """IAM's wildcards: `*` any run of characters, `?` one."""
    return fnmatch.fnmatchcase(text, pattern.replace("[", "[[]"))


def _uid_of(principal: str) -> int | None:
    name = principal.rsplit(":user/", 1)[-1] if ":user/" in principal else principal
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _names(principal: Any, who: Identity) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        raise Refused(Reason.INVALID, None, "a Principal is '*' or {'AWS': ...}")
    for entry in _list(principal.get("AWS", [])):
        if entry == "*":
            return True
        if who.uid != NOBODY and _uid_of(str(entry)) == who.uid:
            return True
    return False


def _condition_holds(operator: str, key_values: dict[str, Any], context: dict[str, str]) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    negated = "Not" in base
    for key, wanted in key_values.items():
        present = context.get(key.lower())
        if present is None:
            if not if_exists:
                return False
            continue
        matched = any(_matches_one(base, present, str(value)) for value in _list(wanted))
        if matched == negated:
            return False
    return True


def _matches_one(operator: str, present: str, wanted: str) -> bool:
    kind = operator.replace("Not", "")
    if kind == "StringEquals":
        return present == wanted
    if kind == "StringEqualsIgnoreCase":
        return present.lower() == wanted.lower()
    if kind == "StringLike":
        return _like(wanted, present)
    if kind == "IpAddress":
        try:
            return ipaddress.ip_address(present) in ipaddress.ip_network(wanted, strict=False)
        except ValueError:
            return False
    if kind == "Bool":
        return present.lower() == wanted.lower()
    if kind.startswith("Numeric"):
        try:
            a, b = float(present), float(wanted)
        except ValueError:
            return False
        return {
            "NumericEquals": a == b,
            "NumericLessThan": a < b,
            "NumericLessThanEquals": a <= b,
            "NumericGreaterThan": a > b,
            "NumericGreaterThanEquals": a >= b,
        }.get(kind, False)
    raise Refused(Reason.INVALID, None, f"condition operator {operator} is not supported")


_OPERATORS = {
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike", "IpAddress", "NotIpAddress", "Bool", "NumericEquals",
    "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals", "NumericGreaterThan",
    "NumericGreaterThanEquals",
}  # fmt: skip


def _statement_says(statement: dict[str, Any], asked: Asked) -> str | None:
    """What one statement says of the request: its effect when it applies, else None."""
    if "Principal" in statement and not _names(statement["Principal"], asked.who):
        return NEITHER
    if "NotPrincipal" in statement and _names(statement["NotPrincipal"], asked.who):
        return NEITHER
    if "Action" in statement:
        if not any(_like(a.lower(), asked.action.lower()) for a in _list(statement["Action"])):
            return NEITHER
    elif any(_like(a.lower(), asked.action.lower()) for a in _list(statement["NotAction"])):
        return NEITHER
    if "Resource" in statement:
        if not any(_like(r, asked.resource) for r in _list(statement["Resource"])):
            return NEITHER
    elif any(_like(r, asked.resource) for r in _list(statement["NotResource"])):
        return NEITHER
    for operator, key_values in statement.get("Condition", {}).items():
        if not _condition_holds(operator, key_values, asked.context):
            return NEITHER
    return str(statement["Effect"])


def decide(policy: dict[str, Any], asked: Asked) -> str | None:
    """Deny if any statement denies the request, else Allow if any allows it, else None
    (the ACL and mode bits decide)."""
    said = {_statement_says(s, asked) for s in _list(policy.get("Statement", []))}
    if DENY in said:
        return DENY
    return ALLOW if ALLOW in said else NEITHER


def parse(text: bytes, bucket: str) -> dict[str, Any]:
    """A policy as PutBucketPolicy gives it, checked (MalformedPolicy otherwise): every
    statement with an Effect, a Principal, an Action and a Resource of this bucket."""
    if len(text) > MOST_BYTES:
        raise Refused(Reason.INVALID, None, "a bucket policy is at most 20 KiB")
    try:
        policy = json.loads(text)
    except ValueError:
        raise Refused(Reason.INVALID, None, "the policy is not JSON") from None
    statements = _list(policy.get("Statement")) if isinstance(policy, dict) else []
    if not statements or None in statements:
        raise Refused(Reason.INVALID, None, "a policy has statements")
    for statement in statements:
        if not isinstance(statement, dict) or statement.get("Effect") not in (ALLOW, DENY):
            raise Refused(Reason.INVALID, None, "a statement's Effect is Allow or Deny")
        for one, other in (("Principal", "NotPrincipal"), ("Action", "NotAction"),
                           ("Resource", "NotResource")):  # fmt: skip
            if (one in statement) == (other in statement):
                raise Refused(Reason.INVALID, None, f"a statement has {one} or {other}")
        for resource in _list(statement.get("Resource", statement.get("NotResource"))):
            if not str(resource).startswith(f"arn:aws:s3:::{bucket}"):
                raise Refused(Reason.INVALID, None, f"{resource} is not in bucket {bucket}")
        for operator in statement.get("Condition", {}):
            if operator.removesuffix("IfExists") not in _OPERATORS:
                raise Refused(Reason.INVALID, None, f"condition operator {operator} is unknown")
        _names(statement.get("Principal", statement.get("NotPrincipal")), ANONYMOUS)
    return policy


def is_public(policy: dict[str, Any]) -> bool:
    """Whether a statement allows everyone without a condition (GetBucketPolicyStatus)."""
    return any(
        s.get("Effect") == ALLOW
        and _names(s.get("Principal", {}), ANONYMOUS)
        and not s.get("Condition")
        for s in _list(policy.get("Statement", []))
    )


async def policy_of(service: ObjectService, who: Identity, bucket: str) -> bytes | None:
    """A bucket's policy as it was given (None: none), for who may read its ACL."""
    return await bucket_settings.read(service, who, bucket, POLICY)


async def set_policy(
    service: ObjectService, who: Identity, bucket: str, text: bytes | None
) -> None:
    """Replace a bucket's policy (None: remove it), for who may change its ACL."""
    entry, _ = await service.bucket(who, bucket, Permission.WRITE_ACP)
    public = text is not None and is_public(parse(text, bucket))
    if public and (await public_access.of_bucket(service, entry)).block_public_policy:
        raise Refused(Reason.DENIED, None, "Block Public Access refuses a public policy")
    await bucket_settings.write(service, who, bucket, POLICY, text)


async def weigh(service: ObjectService, bucket: str, asked: Asked) -> Identity:
    """Who a request acts as, once the bucket's policy has weighed it: AccessDenied on a
    Deny; the bucket owner, for this request, on an Allow; else the caller."""
    try:
        entry, acl = await service.bucket(bucket_settings.ANYONE_MAY_LOOK, bucket)
    except Refused:
        return asked.who  # no such bucket: the request says so itself
    stored = await bucket_settings.in_force(service, entry, POLICY)
    if stored is None:
        return asked.who
    policy = json.loads(stored)
    said = decide(policy, asked)
    if said == DENY:
        raise Refused(Reason.DENIED, None, f"the bucket policy denies {asked.action}")
    if said != ALLOW or asked.who.uid == acl.owner:
        return asked.who
    restricted = (await public_access.of_bucket(service, entry)).restrict_public_buckets
    if restricted and is_public(policy) and not service.iam.is_admin(asked.who):
        return asked.who  # a public policy's Allow acts for the owner alone
    return service.iam.identity_of_uid(acl.owner)
