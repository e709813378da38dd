"""fsobj: an S3-style object store that you mount as a directory.

The request flow reads from the packages: a front end (`fuse`, `s3`) hands each request
to the object service (`service`), which asks `iam` whether the caller may act, has the
data store (`datastore`) persist the payload as a blob and the metadata store (`metadata`)
record it in one transaction; `cli` assembles them. docs/design.md shows the layers.
"""

__version__ = "0.1.0"
