"""An object's ACL over S3: its owner and mode bits (the mount's `chmod`), in S3's terms.

Reading: the owner holds what the owner bits give, the object's group (`gid:N`) what the
group bits give, `AllUsers` what the other bits give (r: READ, w: WRITE, both:
FULL_CONTROL). Writing: a canned ACL or grants that say no more than mode bits can (the
owner's FULL_CONTROL, the object's group, AllUsers), else NotImplemented.
"""

from __future__ import annotations

from typing import Any

from fsobj.s3.app import Request, Response
from fsobj.s3.bucket_policy import refuse_acl
from fsobj.s3.buckets import ALL_USERS, owner_id
from fsobj.s3.errors import S3Error
from fsobj.s3.wire import document, parse
from fsobj.service.objects import ObjectService

XML = {"content-type": "application/xml"}
CANNED_MODES = {"private": 0o600, "public-read": 0o644, "public-read-write": 0o666}
_BITS = {"READ": 4, "WRITE": 2, "FULL_CONTROL": 6}


def _grants_of(bits: int) -> list[str]:
    if bits & 6 == 6:
        return ["FULL_CONTROL"]
    return [name for name, bit in (("READ", 4), ("WRITE", 2)) if bits & bit]


class Handlers:
    def __init__(self, service: ObjectService):
        self.service = service

    async def get(self, request: Request) -> Response:
        entry = await self.service.object_permissions(request.who, request.bucket, request.key)
        grantees = [
            (("ID", owner_id(entry.uid)), entry.mode >> 6),
            (("ID", f"gid:{entry.gid}"), entry.mode >> 3),
            (("URI", ALL_USERS), entry.mode),
        ]
        grants: list[Any] = [
            ("Grant", [("Grantee", [grantee]), ("Permission", permission)])
            for grantee, bits in grantees
            for permission in _grants_of(bits & 7)
        ]
        body = document(
            "AccessControlPolicy",
            ("Owner", [("ID", owner_id(entry.uid))]),
            ("AccessControlList", grants),
        )
        return Response(200, XML, body)

    async def put(self, request: Request) -> Response:
        body = await request.read_xml_body()
        canned = request.headers.get("x-amz-acl")
        await refuse_acl(self.service, request, grants=canned is None)
        if canned is not None:
            if canned not in CANNED_MODES:
                raise S3Error("NotImplemented", f"canned ACL {canned!r} is not mode bits")
            mode = CANNED_MODES[canned]
        elif body:
            mode = await self._mode_of(request, body)
        else:
            raise S3Error("NotImplemented", "object ACLs by x-amz-grant-* headers")
        await self.service.set_object_mode(request.who, request.bucket, request.key, mode)
        return Response(200)

    async def _mode_of(self, request: Request, body: bytes) -> int:
        entry = await self.service.object_permissions(request.who, request.bucket, request.key)
        shifts = {owner_id(entry.uid): 6, f"gid:{entry.gid}": 3, ALL_USERS: 0}
        mode = 0
        for grant in parse(body).iter("Grant"):
            grantee = grant.findtext("Grantee/ID") or grant.findtext("Grantee/URI") or ""
            permission = grant.findtext("Permission", "")
            if grantee not in shifts or permission not in _BITS:
                raise S3Error("NotImplemented", f"{grantee} {permission} is not a mode bit")
            mode |= _BITS[permission] << shifts[grantee]
        return mode
