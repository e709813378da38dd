"""The extended attributes through which the mount exposes system metadata and takes
commands (docs: fsobj/fuse/xattrs.py). Apart, so that the command line can name them
without importing the FUSE front end (and pyfuse3)."""

SYSTEM_PREFIX = "user.fsobj."
CONTENT_TYPE = "user.fsobj.content-type"
ACL = "user.fsobj.acl"
GC = "user.fsobj.gc"
STATS = "user.fsobj.stats"
KEYS = "user.fsobj.keys"
CLONE = "user.fsobj.clone"
TAGS = "user.fsobj.tags"
SNAPSHOT = "user.fsobj.snapshot"
SNAPSHOT_OF = "user.fsobj.snapshot-of"
VERSIONING = "user.fsobj.versioning"
RESTORE = "user.fsobj.restore"
VERSION_ID = "user.fsobj.version-id"
RETENTION = "user.fsobj.retention"
LEGAL_HOLD = "user.fsobj.legal-hold"
USAGE = "user.fsobj.usage"
ENCRYPTION = "user.fsobj.encryption"  # a bucket's default (AES256), an object's sealing
