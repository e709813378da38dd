"""One refusal type, mapped once at the FUSE edge; a bug is never disguised as a refusal."""

import errno
import logging

import pyfuse3
import pytest

from fsobj.fuse.edge import request
from fsobj.refusals import Refused
from fsobj.service import names


class Handlers:
    def __init__(self, failure: BaseException):
        self.failure = failure

    async def describe(self, entry: str, name: bytes | None) -> str:
        return f"/{entry}/{name.decode()}" if name else f"/{entry}"

    @request
    async def mkdir(self) -> None:
        raise self.failure


async def outcome(failure: BaseException, caplog) -> tuple[int, list[logging.LogRecord]]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="fsobj"), pytest.raises(pyfuse3.FUSEError) as raised:
        await Handlers(failure).mkdir()
    return raised.value.errno, list(caplog.records)


async def test_a_refusal_is_its_errno_and_one_line_naming_operation_path_and_reason(caplog):
    code, records = await outcome(Refused(errno.EACCES, ("bkt", b"key"), "denied: why"), caplog)
    assert code == errno.EACCES
    assert [r.getMessage() for r in records] == ["mkdir /bkt/key refused (EACCES): denied: why"]
    assert records[0].levelno == logging.INFO and records[0].exc_info is None


async def test_the_rules_of_names_refuse_with_the_one_type_placed_by_the_caller(caplog):
    with pytest.raises(Refused) as raised:
        names.check_bucket_name("Not_A_Bucket")
    code, records = await outcome(raised.value.at(("", b"Not_A_Bucket")), caplog)
    assert code == errno.EINVAL and "/" in records[0].getMessage()
    assert "lowercase" in records[0].getMessage()


async def test_a_missing_name_is_routine_and_logged_only_when_debugging(caplog):
    code, records = await outcome(Refused(errno.ENOENT, ("bkt", b"gone"), "no such entry"), caplog)
    assert code == errno.ENOENT and records[0].levelno == logging.DEBUG


async def test_a_failure_of_the_system_keeps_its_errno_and_is_a_warning(caplog):
    code, records = await outcome(OSError(errno.ENOSPC, "No space left on device"), caplog)
    assert code == errno.ENOSPC
    assert records[0].levelno == logging.WARNING and records[0].exc_info is None


async def test_a_bug_is_eio_with_its_traceback_in_the_log(caplog):
    code, records = await outcome(KeyError("not a refusal"), caplog)
    assert code == errno.EIO
    assert records[0].levelno == logging.ERROR and records[0].exc_info is not None
