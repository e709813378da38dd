"""IAM: who the caller is, what a bucket's ACL grants them (`policy`), and each bucket's
grants as the POSIX ACL of its directory (`posix_acl`)."""
