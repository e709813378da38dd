"""Cross-origin resource sharing (CORS) of a bucket: the rules S3 keeps with it
(Put/Get/DeleteBucketCors), and which of them lets a web page of another origin make a
request. Kept as the bucket's metadata item `fsobj.cors`; the front end answers
preflights and adds the headers (s3/cors.py)."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from typing import TYPE_CHECKING

from fsobj.iam.policy import Identity
from fsobj.refusals import Reason, Refused
from fsobj.service import bucket_settings

if TYPE_CHECKING:
    from fsobj.service.objects import ObjectService

CORS = "fsobj.cors"
METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
MOST_RULES = 100  # as S3


@dataclasses.dataclass(frozen=True)
class CorsRule:
    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    id: str = ""

    def check(self) -> None:
        """Refuse a rule S3 would refuse."""
        if not self.allowed_origins or not self.allowed_methods:
            raise Refused(Reason.INVALID, None, "a CORS rule needs an origin and a method")
        for method in self.allowed_methods:
            if method not in METHODS:
                raise Refused(Reason.INVALID, None, f"{method} is no method CORS allows")
        for pattern in (*self.allowed_origins, *self.allowed_headers):
            if pattern.count("*") > 1:
                raise Refused(Reason.INVALID, None, f"{pattern!r} has more than one '*'")

    def allows(self, origin: str, method: str, headers: list[str]) -> bool:
        """Whether this rule lets a page of `origin` send `method` with `headers`."""
        return (
            any(_matches(pattern, origin) for pattern in self.allowed_origins)
            and method in self.allowed_methods
            and all(
                any(_matches(pattern.lower(), header) for pattern in self.allowed_headers)
                for header in headers
            )
        )


def _matches(pattern: str, text: str) -> bool:
    # One '*' at most (check), matching any run of characters; nothing else is special.
    return fnmatch.fnmatchcase(text, pattern.replace("[", "[[]").replace("?", "[?]"))


def first_allowing(
    rules: list[CorsRule], origin: str, method: str, headers: list[str]
) -> CorsRule | None:
    """The rule that decides a cross-origin request, as S3 picks it: the first that
    allows it."""
    return next((rule for rule in rules if rule.allows(origin, method, headers)), None)


def encode(rules: list[CorsRule]) -> bytes:
    return json.dumps([dataclasses.asdict(rule) for rule in rules]).encode()


def decode(stored: bytes) -> list[CorsRule]:
    return [
        CorsRule(
            tuple(rule["allowed_origins"]),
            tuple(rule["allowed_methods"]),
            tuple(rule["allowed_headers"]),
            tuple(rule["expose_headers"]),
            rule["max_age_seconds"],
            rule["id"],
        )
        for rule in json.loads(stored)
    ]


async def rules_of(service: ObjectService, who: Identity, bucket: str) -> list[CorsRule] | None:
    """A bucket's CORS rules (None: it has none), for who may read its ACL."""
    stored = await bucket_settings.read(service, who, bucket, CORS)
    return None if stored is None else decode(stored)


async def set_rules(
    service: ObjectService, who: Identity, bucket: str, rules: list[CorsRule] | None
) -> None:
    """Replace a bucket's CORS rules (None: remove them), for who may change its ACL."""
    if rules is not None:
        if not rules or len(rules) > MOST_RULES:
            raise Refused(Reason.INVALID, None, f"a CORS configuration has 1 to {MOST_RULES} rules")
        for rule in rules:
            rule.check()
    await bucket_settings.write(
        service, who, bucket, CORS, None if rules is None else encode(rules)
    )


async def rules_for_requests(service: ObjectService, bucket: str) -> list[CorsRule]:
    """The rules that decide cross-origin requests to `bucket`, whoever makes them (a
    browser's preflight is anonymous); none for a bucket that does not exist."""
    stored = await bucket_settings.in_force(service, bucket, CORS)
    return [] if stored is None else decode(stored)
