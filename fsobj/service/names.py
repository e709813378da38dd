"""S3's rules for bucket names, object keys and user metadata, which the object service
enforces for both front ends."""

import ipaddress
import re
import urllib.parse

from fsobj.refusals import Reason, Refused

MAX_KEY_BYTES = 1024
MAX_COMPONENT_BYTES = 255
USER_METADATA_LIMIT = 2048  # bytes of names and values, as S3's x-amz-meta-*

_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+")


def bucket_name_problem(name: str) -> str | None:
    """The S3 bucket-naming rule that `name` breaks, or None when it is valid."""
    if not 3 <= len(name) <= 63:
        return "bucket names are 3 to 63 characters long"
    if not _BUCKET_CHARS.fullmatch(name):
        return "bucket names use only lowercase letters, digits, hyphens and dots"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return "bucket names begin and end with a letter or digit"
    if ".." in name:
        return "bucket names contain no two adjacent dots"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return None
    return "bucket names are not formatted as IP addresses"


def check_bucket_name(name: str) -> None:
    problem = bucket_name_problem(name)
    if problem:
        raise Refused(Reason.BAD_BUCKET_NAME, None, problem)


def decode_component(raw: bytes) -> str:
    """A path component from the kernel as text; S3 keys are UTF-8."""
    if len(raw) > MAX_COMPONENT_BYTES:
        raise Refused(
            Reason.NAME_TOO_LONG,
            None,
            f"a path component is at most {MAX_COMPONENT_BYTES} bytes",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(Reason.BAD_KEY, None, "object keys must be valid UTF-8") from None


# An object's or a bucket's tags, S3's tag set, kept as this user metadata item, in the
# form of S3's `x-amz-tagging` header (`key=value&...`, URL-encoded).
TAGS = "fsobj.tagging"
# The S3 checksum a client sent with the content (`ALGORITHM VALUE TYPE`): a commit of
# other content without new metadata drops it (OpenObjects._record).
CHECKSUM = "fsobj.checksum"
# How an object's blob is sealed (`AES256`: with the store's key; `SSE-C KEY-MD5`: with
# a client's key), and a bucket's default for new objects (`AES256`): service/encryption.py.
ENCRYPTION = "fsobj.encryption"
BUCKET_ENCRYPTION = "fsobj.bucket-encryption"
# The sizes of a multipart upload's parts, comma-separated (S3's GET by partNumber).
PARTS = "fsobj.parts"
# The items that describe a blob: a copy that shares the blob has the source's, and any
# other content has its own (or none).
BLOB_NOTES = (ENCRYPTION, PARTS)
MAX_TAGS = 10  # an object's
MAX_BUCKET_TAGS = 50
# A snapshot is a read-only bucket that says, as this item of its user metadata, which
# bucket it was taken of.
SNAPSHOT_OF = "fsobj.snapshot-of"
# The mount's read-only view of a versioned bucket's past versions, at the top of each
# bucket (service/version_view.py): a name no key may begin with.
VERSIONS_VIEW = ".fsobj-versions"
# A bucket's versioning (Enabled or Suspended) and object lock (JSON), and a version's
# retention ("MODE UNTIL") and legal hold ("ON"): items of their user metadata.
VERSIONING = "fsobj.versioning"
LOCK = "fsobj.object-lock"
RETENTION = "fsobj.retention"
LEGAL_HOLD = "fsobj.legal-hold"


def tag_set(pairs: list[tuple[str, str]], most: int = MAX_TAGS) -> bytes:
    """The stored form of a tag set, once S3's rules hold: at most `most` tags, each key
    1-128 characters and unique, each value at most 256."""
    keys = [key for key, _ in pairs]
    if len(pairs) > most:
        raise Refused(Reason.BAD_TAGS, None, f"at most {most} tags")
    if len(set(keys)) != len(keys):
        raise Refused(Reason.BAD_TAGS, None, "tag keys must be unique")
    for key, value in pairs:
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise Refused(Reason.BAD_TAGS, None, "tag keys are 1-128 characters, values 0-256")
    return urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote).encode()


def parse_tags(stored: bytes) -> list[tuple[str, str]]:
    """A tag set from its stored (or header) form; BAD_TAGS if it is not one."""
    try:
        text = stored.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(Reason.BAD_TAGS, None, "tags are UTF-8") from None
    return urllib.parse.parse_qsl(text, keep_blank_values=True)


def check_key_length(key_bytes: int) -> None:
    if key_bytes > MAX_KEY_BYTES:
        raise Refused(Reason.NAME_TOO_LONG, None, f"object keys are at most {MAX_KEY_BYTES} bytes")


def check_user_metadata(items: dict[str, bytes]) -> None:
    """S3's limit on an object's user metadata: its names and values in all (what fsobj
    keeps beside it, `fsobj.*`: content headers and tags, does not count)."""
    counted = [(name, value) for name, value in items.items() if not name.startswith("fsobj.")]
    if sum(len(name.encode()) + len(value) for name, value in counted) > USER_METADATA_LIMIT:
        raise Refused(
            Reason.METADATA_TOO_LARGE,
            None,
            f"user metadata is limited to {USER_METADATA_LIMIT} bytes",
        )


def raw(part: str) -> bytes:
    """A key's component as the kernel would name it."""
    return part.encode("utf-8", "surrogatepass")


def key_parts(key: str) -> list[str]:
    """A key's path components, checked as the mount checks names: UTF-8, at most 1024
    bytes in all and 255 in a component, and no empty, `.` or `..` component (the tree
    and the key space must never disagree). A key ending in `/` names a directory."""
    check_key_length(len(raw(key)))
    parts = key[:-1].split("/") if key.endswith("/") else key.split("/")
    if parts[0] == VERSIONS_VIEW:
        raise Refused(Reason.BAD_KEY, None, f"{VERSIONS_VIEW}/ is the mount's versions")
    for part in parts:
        decode_component(raw(part))
        if part in ("", ".", ".."):
            raise Refused(Reason.BAD_KEY, None, "a key has no empty, '.' or '..' segment")
    return parts
