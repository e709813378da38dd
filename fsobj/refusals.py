"""How the API service says no: a refusal carries an errno, where it happened and why;
the `request` wrapper turns it, and any other failure, into an errno for the kernel and
one log line. Ordinary bad input never produces a traceback."""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from .datastore import DamagedBlob
from .metadata import Entry

log = logging.getLogger("fsobj.operations")

# Where a request acts: an entry, or a name inside a directory entry. The path is spelled
# out only when a refusal is logged, so allowed requests never pay for it.
Where = tuple[Entry, bytes | None]


class Refused(Exception):
    """An ordinary refusal of bad input: an errno, where, and the reason; no traceback."""

    def __init__(self, errno_: int, where: Where, reason: str):
        super().__init__(reason)
        self.errno = errno_
        self.where = where
        self.reason = reason


P = ParamSpec("P")
T = TypeVar("T")


def request(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn every failure of a handler into an errno the kernel can pass on."""
    op = fn.__name__

    @functools.wraps(fn)
    async def handler(*args: P.args, **kwargs: P.kwargs) -> T:
        self: Any = args[0]
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except Refused as refusal:
            log.info(
                "%s %s refused (%s): %s",
                op,
                await self.describe(*refusal.where),
                errno.errorcode.get(refusal.errno, refusal.errno),
                refusal.reason,
            )
            raise pyfuse3.FUSEError(refusal.errno) from None
        except DamagedBlob as damage:
            log.error("%s failed: %s", op, damage)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except OSError as error:
            log.warning("%s failed: %s", op, error)
            raise pyfuse3.FUSEError(error.errno or errno.EIO) from None
        except Exception:
            log.exception("%s failed unexpectedly", op)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return handler
