"""fsobj: an S3-style object store that you mount as a directory.

The request flow reads from the modules: operations (the API service, FUSE handlers) asks
iam, then works through metadata (SQLite) and datastore (blobs); handles holds open
objects, store the on-disk layout and lock, daemon the mount's lifecycle, cli the command.
"""

__version__ = "0.1.0"
