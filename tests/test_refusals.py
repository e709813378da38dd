"""One refusal type with an enumerated reason, mapped once at each front end's edge through
one table each; a bug is never disguised as a refusal."""

import errno
import logging

import pyfuse3
import pytest

from fsobj.fuse.edge import request
from fsobj.fuse.errnos import ERRNO
from fsobj.refusals import Reason, Refused
from fsobj.s3.errors import CODE, STATUS, S3Error, from_refusal
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
    code, records = await outcome(Refused(Reason.DENIED, ("bkt", b"key"), "denied: why"), caplog)
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
    code, records = await outcome(
        Refused(Reason.NO_SUCH_KEY, ("bkt", b"gone"), "no such entry"), caplog
    )
    assert code == errno.ENOENT and records[0].levelno == logging.DEBUG


async def test_a_failure_of_the_system_keeps_its_errno_and_is_a_warning(caplog):
    code, records = await outcome(OSError(errno.ENOSPC, "No space left on device"), caplog)
    assert code == errno.ENOSPC
    assert records[0].levelno == logging.WARNING and records[0].exc_info is None


async def test_a_bug_is_eio_with_its_traceback_in_the_log(caplog):
    code, records = await outcome(KeyError("not a refusal"), caplog)
    assert code == errno.EIO
    assert records[0].levelno == logging.ERROR and records[0].exc_info is not None


@pytest.mark.parametrize("reason", list(Reason), ids=lambda reason: reason.name)
async def test_every_reason_has_an_errno_and_an_s3_error(reason, caplog):
    refusal = Refused(reason, ("bkt", b"key"), "why")
    code, _ = await outcome(refusal, caplog)
    assert code == ERRNO[reason] and code != errno.EIO  # EIO is for failures and bugs
    error = from_refusal(refusal)
    assert isinstance(error, S3Error) and error.code == CODE[reason] and error.message == "why"
    assert 400 <= STATUS[error.code] < 600
    assert error.code != "InternalError"


def test_the_tables_name_no_reason_that_does_not_exist():
    assert set(ERRNO) == set(Reason) == set(CODE)


def test_s3_tells_apart_what_an_errno_cannot():
    """ENOENT is NoSuchBucket, NoSuchKey or NoSuchUpload; EEXIST says whose bucket it is."""
    assert {
        ERRNO[r] for r in (Reason.NO_SUCH_BUCKET, Reason.NO_SUCH_KEY, Reason.NO_SUCH_UPLOAD)
    } == {errno.ENOENT}
    assert [
        CODE[r] for r in (Reason.NO_SUCH_BUCKET, Reason.NO_SUCH_KEY, Reason.NO_SUCH_UPLOAD)
    ] == [
        "NoSuchBucket",
        "NoSuchKey",
        "NoSuchUpload",
    ]
    assert CODE[Reason.BUCKET_OWNED] == "BucketAlreadyOwnedByYou"
    assert CODE[Reason.BUCKET_EXISTS] == "BucketAlreadyExists"
    assert STATUS[CODE[Reason.NO_SUCH_KEY]] == 404 and STATUS[CODE[Reason.DENIED]] == 403
