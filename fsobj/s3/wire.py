"""What goes over the wire besides bodies: S3's XML documents, its dates and its ETags."""

from __future__ import annotations

import base64
import binascii
import email.utils
import quopri
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fsobj.s3.errors import S3Error

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BODY = 1 << 20


def document(root: str, *children: Any, namespace: str = NAMESPACE) -> bytes:
    """An XML document: `children` are (tag, text) pairs, (tag, [children...]) lists,
    or None (left out)."""
    element = ET.Element(root, xmlns=namespace)
    _fill(element, children)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(element)


def _fill(parent: ET.Element, children: Any) -> None:
    for child in children:
        if child is None:
            continue
        tag, value = child
        node = ET.SubElement(parent, tag)
        if isinstance(value, list):
            _fill(node, value)
        elif isinstance(value, bool):
            node.text = "true" if value else "false"
        else:
            node.text = str(value)


def fixed_base64(text: str, size: int) -> bytes | None:
    """The `size` bytes that `text` gives in base64 (None: not base64 of that many)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        return None
    return raw if len(raw) == size else None


def error_document(error: S3Error, resource: str, request_id: str) -> bytes:
    element = ET.Element("Error")
    _fill(
        element,
        [
            ("Code", error.code),
            ("Message", error.message),
            ("Resource", resource),
            ("RequestId", request_id),
        ],
    )
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(element)


IAM_NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"


def iam_error_document(error: S3Error, request_id: str) -> bytes:
    """An error as IAM's query API answers it (access_keys.py), which SDKs read there."""
    return document(
        "ErrorResponse",
        ("Error", [("Type", "Sender"), ("Code", error.code), ("Message", error.message)]),
        ("RequestId", request_id),
        namespace=IAM_NAMESPACE,
    )


def parse(body: bytes) -> ET.Element:
    """A request's XML body, namespaces dropped from the tags."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as bad:
        raise S3Error("MalformedXML", f"the XML is not well formed: {bad}") from None
    for node in root.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
    return root


def iso_time(ns: int) -> str:
    """S3's timestamps in XML: 2026-11-30T07:33:12.000Z."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1_000_000:03d}Z"


def http_time(ns: int) -> str:
    """S3's timestamps in headers (Last-Modified): RFC 7231."""
    return email.utils.formatdate(ns / 1e9, usegmt=True)


def parse_http_time(text: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return parsed.timestamp()


def quoted(etag: str) -> str:
    return f'"{etag}"'


MAX_KEYS = 1000  # the most keys (or versions) a listing answers at once


def max_keys(params: dict[str, str], name: str = "max-keys", most: int = MAX_KEYS) -> int:
    """A listing's `max-keys` (or `name`), at most `most`."""
    try:
        limit = min(int(params.get(name, most)), most)
    except ValueError:
        raise S3Error("InvalidArgument", f"{name} is not a number") from None
    if limit < 0:
        raise S3Error("InvalidArgument", f"{name} is negative")
    return limit


def key_encoder(params: dict[str, str]) -> Callable[[str], str]:
    """How a listing writes keys and prefixes: URL-encoded with `encoding-type=url`."""
    if params.get("encoding-type") == "url":
        return lambda text: quote(text, safe="/")
    return lambda text: text


_ENCODED_WORD = re.compile(r"=\?(utf-?8)\?([bq])\?([^?]*)\?=", re.IGNORECASE)


def header_value(stored: bytes) -> str:
    """Stored metadata as a response header carries it: printable ASCII as it is, any
    other bytes as RFC 2047's encoded word (`=?UTF-8?B?...?=`), as S3 answers them."""
    if stored.isascii() and all(32 <= byte < 127 for byte in stored):
        return stored.decode("ascii")
    return f"=?UTF-8?B?{base64.b64encode(stored).decode('ascii')}?="


def stored_value(header: str) -> bytes:
    """A request's metadata header as it is stored: an RFC 2047 encoded word (UTF-8)
    decoded, as S3 decodes it; otherwise the bytes as sent (raw UTF-8 from some clients)."""
    word = _ENCODED_WORD.fullmatch(header.strip())
    if word is None:
        return header.encode("latin-1")
    text = word.group(3)
    try:
        if word.group(2).lower() == "b":
            return base64.b64decode(text, validate=True)
        return quopri.decodestring(text.encode("ascii"), header=True)
    except (ValueError, binascii.Error):
        raise S3Error("InvalidArgument", "a badly encoded metadata value") from None
