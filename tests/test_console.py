"""Managing fsobj from a browser and from IAM's API: access keys with `aws iam` (the calls
the web console makes for administrators), then the console itself, driven in headless
Chromium (Debian's) by Playwright, against a mount serving S3."""

from __future__ import annotations

import json

import pytest
from s3_fixtures import code_of


def test_access_keys_through_aws_iam(s3):
    made = json.loads(s3.aws("iam", "create-access-key", "--user-name", "1001").stdout)
    key = made["AccessKey"]
    assert key["UserName"] == "1001" and key["Status"] == "Active"
    # The new key acts as uid 1001 at once.
    s3.keys[1001] = (key["AccessKeyId"], key["SecretAccessKey"])
    s3.client(1001).create_bucket(Bucket="theirs")
    assert (s3.path / "theirs").stat().st_uid == 1001
    listed = json.loads(s3.aws("iam", "list-access-keys").stdout)["AccessKeyMetadata"]
    assert key["AccessKeyId"] in [k["AccessKeyId"] for k in listed]
    only = json.loads(s3.aws("iam", "list-access-keys", "--user-name", "1001").stdout)
    assert [k["AccessKeyId"] for k in only["AccessKeyMetadata"]] == [key["AccessKeyId"]]
    # Keys are for administrators: uid 1001's own key may not list, make or remove any.
    refused = s3.aws("iam", "list-access-keys", uid=1001)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    gone = s3.aws("iam", "delete-access-key", "--access-key-id", key["AccessKeyId"])
    assert gone.returncode == 0, gone.stderr
    assert code_of(s3.client(1001).list_buckets) == "InvalidAccessKeyId"
    missing = s3.aws("iam", "delete-access-key", "--access-key-id", "FSNOSUCHKEYATALL00")
    assert "NoSuchEntity" in missing.stderr
    assert "NotImplemented" in s3.aws("iam", "list-users").stderr


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
