"""CORS over S3: Get/Put/DeleteBucketCors, the answer to a browser's preflight (OPTIONS,
unsigned), and the headers that let a page of another origin read an answer (the rules
themselves: service/cors.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from fsobj.s3.app import Request, Response
from fsobj.s3.errors import S3Error
from fsobj.s3.wire import document, parse
from fsobj.service import cors
from fsobj.service.cors import CorsRule
from fsobj.service.objects import ObjectService

XML = {"content-type": "application/xml"}
_VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"


def rule_of(node: ET.Element) -> CorsRule:
    age = node.findtext("MaxAgeSeconds")
    try:
        max_age = None if age is None else int(age)
    except ValueError:
        raise S3Error("MalformedXML", "MaxAgeSeconds is not a number") from None
    return CorsRule(
        allowed_origins=tuple(e.text or "" for e in node.iter("AllowedOrigin")),
        allowed_methods=tuple(e.text or "" for e in node.iter("AllowedMethod")),
        allowed_headers=tuple(e.text or "" for e in node.iter("AllowedHeader")),
        expose_headers=tuple(e.text or "" for e in node.iter("ExposeHeader")),
        max_age_seconds=max_age,
        id=node.findtext("ID", ""),
    )


def rule_document(rule: CorsRule) -> tuple[str, list]:
    fields: list = [("ID", rule.id)] if rule.id else []
    fields += [("AllowedOrigin", origin) for origin in rule.allowed_origins]
    fields += [("AllowedMethod", method) for method in rule.allowed_methods]
    fields += [("AllowedHeader", header) for header in rule.allowed_headers]
    fields += [("ExposeHeader", header) for header in rule.expose_headers]
    if rule.max_age_seconds is not None:
        fields.append(("MaxAgeSeconds", rule.max_age_seconds))
    return ("CORSRule", fields)


def _allowed(rule: CorsRule, origin: str) -> dict[str, str]:
    if "*" in rule.allowed_origins:
        return {"access-control-allow-origin": "*", "vary": _VARY}
    return {
        "access-control-allow-origin": origin,
        "access-control-allow-credentials": "true",
        "vary": _VARY,
    }


class Handlers:
    def __init__(self, service: ObjectService):
        self.service = service

    async def get(self, request: Request) -> Response:
        rules = await cors.rules_of(self.service, request.who, request.bucket)
        if rules is None:
            raise S3Error("NoSuchCORSConfiguration", "the bucket has no CORS configuration")
        return Response(200, XML, document("CORSConfiguration", *map(rule_document, rules)))

    async def put(self, request: Request) -> Response:
        root = parse(await request.read_xml_body())
        rules = [rule_of(node) for node in root.iter("CORSRule")]
        await cors.set_rules(self.service, request.who, request.bucket, rules)
        return Response(200)

    async def delete(self, request: Request) -> Response:
        await cors.set_rules(self.service, request.who, request.bucket, None)
        return Response(204)

    async def preflight(self, path: str, headers: dict[str, str]) -> Response:
        """A browser's OPTIONS before a cross-origin request: allowed by the bucket's
        first rule that allows it, else AccessForbidden (403), as S3 answers."""
        bucket = path.lstrip("/").partition("/")[0]
        origin = headers.get("origin")
        method = headers.get("access-control-request-method")
        if not bucket or not origin or not method:
            raise S3Error("InvalidRequest", "a preflight names a bucket, an origin and a method")
        rules = await cors.rules_for_requests(self.service, bucket)
        if not rules:
            raise S3Error("AccessForbidden", "CORSResponse: CORS is not enabled for this bucket")
        asked = headers.get("access-control-request-headers", "")
        wanted = [h.strip().lower() for h in asked.split(",") if h.strip()]
        rule = cors.first_allowing(rules, origin, method, wanted)
        if rule is None:
            raise S3Error("AccessForbidden", "CORSResponse: this CORS request is not allowed")
        answer = _allowed(rule, origin) | {
            "access-control-allow-methods": ", ".join(rule.allowed_methods)
        }
        if wanted:
            answer["access-control-allow-headers"] = ", ".join(wanted)
        if rule.max_age_seconds is not None:
            answer["access-control-max-age"] = str(rule.max_age_seconds)
        return Response(200, answer)

    async def exposed(self, bucket: str, origin: str, method: str) -> dict[str, str]:
        """The headers that let the page of `origin` read the answer to `method`, if a
        rule of the bucket allows it (none otherwise: the browser then hides it)."""
        rule = cors.first_allowing(
            await cors.rules_for_requests(self.service, bucket), origin, method, []
        )
        if rule is None:
            return {}
        answer = _allowed(rule, origin)
        if rule.expose_headers:
            answer["access-control-expose-headers"] = ", ".join(rule.expose_headers)
        return answer
