"""The FUSE front end's edge: every outcome of a handler becomes what the kernel expects.

A refusal (`Refused`) becomes its errno and one log line naming operation, path and reason;
a failure of the system underneath (OSError) its errno and a warning; damaged data EIO and
an error; anything else is a bug: EIO, and the traceback in the log.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from fsobj import measures
from fsobj.fuse.errnos import errno_of
from fsobj.refusals import Reason, Refused
from fsobj.service import DamagedBlob

log = logging.getLogger("fsobj.operations")

# Answers that programs get all the time, by design: logged only when debugging.
ROUTINE = {
    Reason.NO_SUCH_KEY,
    Reason.VANISHED,
    Reason.NO_SUCH_ATTRIBUTE,
    Reason.UNKEPT_ATTRIBUTE,
}

P = ParamSpec("P")
T = TypeVar("T")


def request(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn every failure of a handler into an errno the kernel can pass on; count and
    time every request (fsobj/measures.py)."""
    op = fn.__name__
    tally = measures.FUSE_REQUESTS.of(op)

    @functools.wraps(fn)
    async def handler(*args: P.args, **kwargs: P.kwargs) -> T:
        self: Any = args[0]
        start = time.monotonic()
        try:
            return await fn(*args, **kwargs)
        except Refused as refusal:
            measures.fuse_refusals(op, refusal.reason.name).inc()
            number = errno_of(refusal)
            level = logging.DEBUG if refusal.reason in ROUTINE else logging.INFO
            if log.isEnabledFor(level):
                where = await self.describe(*refusal.where) if refusal.where else "-"
                code = errno.errorcode.get(number, number)
                log.log(level, "%s %s refused (%s): %s", op, where, code, refusal.detail)
            raise pyfuse3.FUSEError(number) from None
        except DamagedBlob as damage:
            log.error("%s failed: %s", op, damage)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except OSError as error:
            log.warning("%s failed: %s", op, error)
            raise pyfuse3.FUSEError(error.errno or errno.EIO) from None
        except Exception:
            log.exception("%s failed unexpectedly", op)
            raise pyfuse3.FUSEError(errno.EIO) from None
        finally:
            measures.timed(tally, time.monotonic() - start)

    return handler


# pyfuse3's own words (handlers.pxi) when libfuse could not deliver a reply.
ABANDONED_REPLY = "fuse_reply_* failed with %s"


class AbandonedReplies(logging.Filter):
    """pyfuse3 logs an ERROR when libfuse cannot deliver a reply. With ENOENT that means
    the kernel no longer waits for it: the request was interrupted, or the release that
    follows a close (which the kernel sends without waiting) met the unmount. Nothing is
    lost then, so it is a debug line, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.ERROR
            and isinstance(record.msg, str)
            and record.msg.endswith(ABANDONED_REPLY)
            and record.args == (os.strerror(errno.ENOENT),)
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def quiet_abandoned_replies() -> None:
    logging.getLogger("pyfuse3").addFilter(AbandonedReplies())
