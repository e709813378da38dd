"""An adapter for a gap in hypercorn: a request that its HTTP/1.1 parser (h11) cannot
read, an empty or malformed Content-Length or a malformed header line, is answered with
a bare status and no body, where S3 clients expect S3's error document. `adapt()` wraps
hypercorn's `H11Protocol._send_error_response`, which is not public API: the answer to a
request that never got parsed (nothing else is answering it) gets the document, and
tests/test_s3_protocol.py fails loudly if hypercorn changes."""

from __future__ import annotations

import uuid
from itertools import chain
from typing import Any

import h11
from hypercorn.protocol.h11 import H11Protocol

from fsobj.s3.errors import S3Error
from fsobj.s3.wire import error_document

_bare_error_response: Any = None  # hypercorn's own, kept by adapt()
_CODES = {400: "BadRequest", 413: "EntityTooLarge", 431: "RequestHeaderSectionTooLarge"}


async def _send_error_response(self: Any, status_code: int) -> None:
    if self.connection.our_state is not h11.IDLE:
        # A request whose body broke off while its answer may be under way (another
        # task sends it): hypercorn's own bare answer, as it always was.
        await _bare_error_response(self, status_code)
        return
    error = S3Error(_CODES.get(status_code, "BadRequest"), "the request is not valid HTTP/1.1")
    body = error_document(error, "", uuid.uuid4().hex[:16].upper())
    headers = [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/xml"),
        (b"connection", b"close"),
    ]
    response = h11.Response(
        status_code=status_code, headers=list(chain(headers, self.config.response_headers("h11")))
    )
    await self._send_h11_event(response)
    await self._send_h11_event(h11.Data(data=body))
    await self._send_h11_event(h11.EndOfMessage())


def adapt() -> None:
    """Answer unparsable requests with S3's error document (once per process)."""
    global _bare_error_response
    if not callable(getattr(H11Protocol, "_send_error_response", None)):
        raise RuntimeError("hypercorn's H11Protocol has no _send_error_response: see unparsable.py")
    if _bare_error_response is None:
        _bare_error_response = H11Protocol._send_error_response  # noqa: SLF001
    # The one place fsobj reaches into hypercorn (this module's purpose).
    H11Protocol._send_error_response = _send_error_response  # type: ignore[method-assign]  # noqa: SLF001
