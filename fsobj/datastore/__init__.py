"""The data store: staged content of writes in progress and immutable blobs named by UUID,
on the local disk (`store`) or at an S3 service (`remote`, with `cache` as its bounded
local copy)."""
