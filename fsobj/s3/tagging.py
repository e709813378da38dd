"""Tags over S3: Get/Put/DeleteObjectTagging and Get/Put/DeleteBucketTagging, and the
`x-amz-tagging` header of PUT, copy and multipart uploads (objects.user_metadata). The
object service keeps them (ObjectService.tags); the mount shows an object's as
`user.fsobj.tags`.
"""

from __future__ import annotations

from typing import Any

from fsobj.s3.app import Request, Response
from fsobj.s3.errors import S3Error
from fsobj.s3.wire import document, parse
from fsobj.service import tags as tag_sets
from fsobj.service.objects import ObjectService

XML = {"content-type": "application/xml"}


def tagging_document(tags: list[tuple[str, str]]) -> bytes:
    tag_set: list[Any] = [("Tag", [("Key", key), ("Value", value)]) for key, value in tags]
    return document("Tagging", ("TagSet", tag_set))


async def tags_of(request: Request) -> list[tuple[str, str]]:
    """The tag set a request's XML body names."""
    root = parse(await request.read_xml_body())
    return [(tag.findtext("Key", ""), tag.findtext("Value", "")) for tag in root.iter("Tag")]


class Handlers:
    def __init__(self, service: ObjectService):
        self.service = service

    async def get(self, request: Request) -> Response:
        tags = await tag_sets.tags(self.service, request.who, request.bucket, request.key)
        return Response(200, XML, tagging_document(tags))

    async def put(self, request: Request) -> Response:
        tags = await tags_of(request)
        await tag_sets.set_tags(self.service, request.who, request.bucket, request.key, tags)
        return Response(200)

    async def delete(self, request: Request) -> Response:
        await tag_sets.set_tags(self.service, request.who, request.bucket, request.key, None)
        return Response(204)

    async def get_bucket(self, request: Request) -> Response:
        tags = await tag_sets.bucket_tags(self.service, request.who, request.bucket)
        if tags is None:
            raise S3Error("NoSuchTagSet", "the bucket has no tags")
        return Response(200, XML, tagging_document(tags))

    async def put_bucket(self, request: Request) -> Response:
        tags = await tags_of(request)
        await tag_sets.set_bucket_tags(self.service, request.who, request.bucket, tags)
        return Response(204)

    async def delete_bucket(self, request: Request) -> Response:
        await tag_sets.set_bucket_tags(self.service, request.who, request.bucket, None)
        return Response(204)
