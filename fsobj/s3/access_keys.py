"""S3 access keys over IAM's query API (`aws iam create-access-key | list-access-keys |
delete-access-key --endpoint-url ...`, and the web console): a POST to the service with
a form naming the action, signed as any request (for the service `iam`). The store's
rules decide, as for `fsobj key`: administrators only. A user is named by a local user
name or a uid; without one, ListAccessKeys lists every key of the store (AWS: the
caller's), CreateAccessKey makes one for the caller."""

from __future__ import annotations

import pwd
from urllib.parse import parse_qsl

from fsobj.iam import policy as iam
from fsobj.refusals import Reason, Refused
from fsobj.s3.app import Request, Response
from fsobj.s3.errors import S3Error
from fsobj.s3.wire import IAM_NAMESPACE, document, iso_time
from fsobj.service.objects import ObjectService

XML = {"content-type": "text/xml"}


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _uid(name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise S3Error("NoSuchEntity", f"no user {name!r}") from None


def _answer(action: str, request: Request, *result: object) -> Response:
    body = document(
        f"{action}Response",
        (f"{action}Result", list(result)) if result else None,
        ("ResponseMetadata", [("RequestId", request.headers.get("x-request-id", "fsobj"))]),
        namespace=IAM_NAMESPACE,
    )
    return Response(200, XML, body)


class Handlers:
    def __init__(self, service: ObjectService):
        self.service = service

    async def act(self, request: Request) -> Response:
        """The IAM action the form names."""
        form = dict(parse_qsl((await request.read_xml_body()).decode("utf-8", "replace")))
        action = form.get("Action", "")
        core = self.service.core
        if action == "ListAccessKeys":
            keys = await core.change_keys(request.who, "")
            wanted = _uid(form["UserName"]) if "UserName" in form else None
            members = [
                ("member", [
                    ("UserName", user_name(uid)),
                    ("AccessKeyId", key_id),
                    ("Status", "Active"),
                    ("CreateDate", iso_time(created_ns)),
                ])
                for key_id, _, uid, created_ns in keys
                if wanted is None or uid == wanted
            ]  # fmt: skip
            return _answer(action, request, ("AccessKeyMetadata", members), ("IsTruncated", False))
        if action == "CreateAccessKey":
            uid = _uid(form["UserName"]) if "UserName" in form else request.who.uid
            key_id, secret = iam.new_access_key()
            keys = await core.change_keys(request.who, f"create {key_id} {uid} {secret}")
            created = next(created for k, _, _, created in keys if k == key_id)
            return _answer(action, request, ("AccessKey", [
                ("UserName", user_name(uid)),
                ("AccessKeyId", key_id),
                ("Status", "Active"),
                ("SecretAccessKey", secret),
                ("CreateDate", iso_time(created)),
            ]))  # fmt: skip
        if action == "DeleteAccessKey":
            if "AccessKeyId" not in form:
                raise S3Error("InvalidRequest", "DeleteAccessKey needs AccessKeyId")
            try:
                await core.change_keys(request.who, f"rm {form['AccessKeyId']}")
            except Refused as refusal:
                if refusal.reason is not Reason.NO_SUCH_KEY:
                    raise
                raise S3Error("NoSuchEntity", refusal.detail) from None
            return _answer(action, request)
        raise S3Error("NotImplemented", f"the action {action or '(none)'} is not implemented")
