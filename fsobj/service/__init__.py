"""The object service, the core that every front end holds.

`core.Service` resolves requests (inode to entry, entry to bucket, the caller's access)
and changes the namespace; `objects.ObjectService` serves buckets and objects by name and
key (S3's requests, the offline commands); `handles` holds open objects and commits them
(`group_commit`, `durability`); `store` opens a store's metadata and data stores together.

The records and failures the core hands its front ends are named here, so that a front
end imports nothing from the stores below it (the rule is in pyproject.toml).
"""

from fsobj.datastore.store import DamagedBlob
from fsobj.metadata.archive import PastVersion
from fsobj.metadata.entries import Bucket, Entry, Expected
from fsobj.metadata.schema import ROOT_INODE

__all__ = ["ROOT_INODE", "Bucket", "DamagedBlob", "Entry", "Expected", "PastVersion"]
