"""Serving S3: from a mount's own process (`fsobj mount --s3`), or alone (`fsobj serve`).

Either way the store keeps one owner and one trio loop; hypercorn's trio worker speaks
HTTP/1.1 (keep-alive, `Expect: 100-continue`) and hands each request to `S3App`.
"""

from __future__ import annotations

import logging

import hypercorn.config
import hypercorn.trio
import trio

from fsobj.s3 import unparsable
from fsobj.s3.app import S3App
from fsobj.service.objects import ObjectService
from fsobj.service.store import Store

log = logging.getLogger("fsobj.s3")


def parse_address(text: str) -> tuple[str, int]:
    """`[HOST:]PORT` as host and port (host 127.0.0.1 when left out)."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{text!r} is not [HOST:]PORT") from None
    if not 0 <= number < 65536:
        raise ValueError(f"port {number} is out of range")
    return host.strip("[]") or "127.0.0.1", number


async def serve_s3(
    store: Store, address: str, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve S3 over `store` at `address` until cancelled; started, it reports the
    addresses it listens on."""
    host, port = parse_address(address)
    config = hypercorn.config.Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("fsobj.s3.http")
    config.graceful_timeout = 1.0
    app = S3App(ObjectService(store.service))
    unparsable.adapt()
    await hypercorn.trio.serve(app, config, mode="asgi", task_status=task_status)  # type: ignore[arg-type]
