"""The FUSE front end's one table: the errno of each reason a request is refused. Apart
from the edge (edge.py), so that the command line can say the same without pyfuse3."""

import errno

from fsobj.refusals import Reason, Refused

ERRNO = {
    Reason.NO_SUCH_KEY: errno.ENOENT,
    Reason.NO_SUCH_BUCKET: errno.ENOENT,
    Reason.NO_SUCH_UPLOAD: errno.ENOENT,
    Reason.NO_SUCH_ATTRIBUTE: errno.ENODATA,  # ENOATTR, as getxattr(2) names it
    Reason.VANISHED: errno.ENOENT,
    # NFS's way: the kernel looks the path up again and retries.
    Reason.STALE: errno.ESTALE,
    Reason.EXISTS: errno.EEXIST,
    Reason.BUCKET_EXISTS: errno.EEXIST,
    Reason.BUCKET_OWNED: errno.EEXIST,
    Reason.DENIED: errno.EACCES,
    Reason.NOT_PERMITTED: errno.EPERM,
    Reason.NOT_EMPTY: errno.ENOTEMPTY,
    Reason.NAME_TOO_LONG: errno.ENAMETOOLONG,
    Reason.BUCKET_NAME_TOO_LONG: errno.ENAMETOOLONG,
    Reason.METADATA_TOO_LARGE: errno.E2BIG,
    Reason.TOO_LARGE: errno.EFBIG,
    Reason.BAD_BUCKET_NAME: errno.EINVAL,
    Reason.BAD_KEY: errno.EINVAL,
    Reason.BAD_ARGUMENT: errno.EINVAL,
    Reason.INVALID: errno.EINVAL,
    Reason.INVALID_PART: errno.EINVAL,
    Reason.PART_ORDER: errno.EINVAL,
    Reason.PART_TOO_SMALL: errno.EINVAL,
    Reason.IS_DIRECTORY: errno.EISDIR,
    Reason.NOT_DIRECTORY: errno.ENOTDIR,
    Reason.NOT_SUPPORTED: errno.EOPNOTSUPP,
    Reason.UNKEPT_ATTRIBUTE: errno.EOPNOTSUPP,
    Reason.NOT_WRITABLE: errno.EBADF,
    Reason.OTHER_BUCKET: errno.EXDEV,  # a hard link joins names of one bucket only
    Reason.BAD_TAGS: errno.EINVAL,
    Reason.READ_ONLY: errno.EROFS,
    # mv then copies and removes each file, which versions keep as S3 would see it.
    Reason.VERSIONED_MOVE: errno.EXDEV,
    Reason.NO_SUCH_VERSION: errno.ENOENT,
    Reason.DELETE_MARKER: errno.ENOENT,
    Reason.LOCKED: errno.EPERM,
    Reason.BAD_STATE: errno.EPERM,
    Reason.CONDITION: errno.EEXIST,  # S3's conditional writes alone refuse so
    Reason.BAD_RANGE: errno.EINVAL,
    Reason.BAD_DIGEST: errno.EBADMSG,
    Reason.NEEDS_KEY: errno.ENOKEY,  # as fscrypt answers an open without the key
    Reason.WRONG_KEY: errno.EACCES,
}


def errno_of(refusal: Refused) -> int:
    return ERRNO[refusal.reason]
