"""Managing fsobj from a browser and from IAM's API: access keys with `aws iam` (the calls
the web console makes for administrators), then the console itself, driven in headless
Chromium (Debian's) by Playwright, against a mount serving S3."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os

import pytest
from s3_fixtures import code_of, s3_client


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


@pytest.fixture
def browser():
    """Headless Chromium (Debian's), driven by Playwright; closed however the test ends."""
    from playwright.sync_api import sync_playwright

    # Playwright runs an asyncio loop of its own, which trio-asyncio's policy (installed
    # on import, for the metadata store) would make one of trio's.
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    with contextlib.ExitStack() as restore:
        restore.callback(asyncio.set_event_loop_policy, policy)
        playwright = restore.enter_context(sync_playwright())
        # As root, Chromium runs only without its sandbox.
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        restore.callback(chromium.close)
        yield chromium


def sign_in(page, s3, uid: int) -> None:
    from playwright.sync_api import expect

    key_id, secret = s3.key(uid)
    page.goto(f"{s3.endpoint}/_console/")
    page.fill("#key-id", key_id)
    page.fill("#secret", secret)
    page.click("#sign-in-form button")
    expect(page.locator("#buckets")).to_be_visible()


def test_the_console_end_to_end_in_a_browser(s3, browser, tmp_path):
    from playwright.sync_api import expect

    (s3.path / "rootonly").mkdir()
    (s3.path / "rootonly" / "secret.txt").write_bytes(b"root's")
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Delete ...?"
    sign_in(page, s3, 0)
    expect(page.locator("#bucket-rows tr[data-bucket=rootonly]")).to_have_count(1)

    # A bucket made in the browser is a directory on the mount.
    page.fill("#bucket-name", "console-made")
    page.click("#new-bucket button")
    page.click("#bucket-rows tr[data-bucket=console-made] a")
    expect(page.locator("#objects")).to_be_visible()
    bucket = s3.path / "console-made"
    assert bucket.is_dir()

    # 20 MiB goes up in parts, with a progress bar; the mount has it, byte for byte.
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    page.set_input_files("#upload", str(big))
    expect(page.locator(".transfer.done[data-key='big.bin']")).to_have_count(1, timeout=60_000)
    assert page.locator(".transfer[data-key='big.bin'] progress").evaluate(
        "bar => bar.value === bar.max"
    )
    assert (bucket / "big.bin").read_bytes() == big.read_bytes()
    assert len(s3.client().head_object(Bucket="console-made", Key="big.bin")["ETag"]) > 34  # parts

    # Dropped files go up too, into the folder shown.
    dropped = page.evaluate_handle(
        "() => { const t = new DataTransfer();"
        " t.items.add(new File(['dropped here'], 'dropped.txt', {type: 'text/plain'}));"
        " return t; }"
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
    expect(page.locator("#object-rows tr[data-key='dropped.txt']")).to_have_count(1)
    assert (bucket / "dropped.txt").read_bytes() == b"dropped here"

    # Downloaded, it is what was uploaded.
    with page.expect_download() as downloading:
        page.click("#object-rows tr[data-key='big.bin'] button:text('Download')")
    saved = tmp_path / "downloaded.bin"
    downloading.value.save_as(saved)
    assert saved.read_bytes() == big.read_bytes()

    # Removed in the browser, gone from the mount.
    page.click("#object-rows tr[data-key='dropped.txt'] button:text('Delete')")
    expect(page.locator("#object-rows tr[data-key='dropped.txt']")).to_have_count(0)
    assert not (bucket / "dropped.txt").exists()

    # The ACL, seen and changed: public-read lets anyone list.
    page.click("#show-acl")
    page.select_option("#canned", "public-read")
    page.click("#acl-form button")
    expect(page.locator("#grant-rows")).to_contain_text("AllUsers")
    assert s3.client(None).list_objects_v2(Bucket="console-made")["KeyCount"] == 1

    # A page at a time, folders first.
    for n in range(55):
        s3.client().put_object(Bucket="console-made", Key=f"many/{n:03d}", Body=b"")
    page.goto(f"{s3.endpoint}/_console/#/b/console-made/many%2F")
    expect(page.locator("#object-rows tr")).to_have_count(50)
    page.click("#next-page")
    expect(page.locator("#object-rows tr")).to_have_count(5)
    expect(page.locator("#object-rows tr[data-key='many/054']")).to_have_count(1)

    # Versions, once the bucket keeps them.
    s3.client().put_bucket_versioning(
        Bucket="console-made", VersioningConfiguration={"Status": "Enabled"}
    )
    for content in (b"one", b"two"):
        s3.client().put_object(Bucket="console-made", Key="kept.txt", Body=content)
    page.goto(f"{s3.endpoint}/_console/#/b/console-made/")
    page.check("#show-versions")
    expect(page.locator("#object-rows tr[data-key='kept.txt']")).to_have_count(2)

    # Access keys, for an administrator: one made here works at once, and goes.
    page.click("nav a[href='#/keys']")
    page.fill("#key-user", "1002")
    page.click("#new-key button")
    expect(page.locator("#new-secret")).to_contain_text("secret")
    made = page.locator("#new-secret").inner_text()
    key_id = made.split()[2]
    secret = made.rsplit(" ", 1)[1]
    listed = s3_client(s3.endpoint, (key_id, secret)).list_buckets()["Buckets"]
    assert [b["Name"] for b in listed] == ["console-made"]  # public-read: listed to all
    page.click(f"#key-rows tr[data-key='{key_id}'] button")
    expect(page.locator(f"#key-rows tr[data-key='{key_id}']")).to_have_count(0)

    # The secret lives in the tab's session alone: no cookie, nothing in local storage.
    assert context.cookies() == [] and page.evaluate("() => localStorage.length") == 0
    page.click("#sign-out")
    assert page.evaluate("() => sessionStorage.length") == 0

    # Another user's key is refused what that user may not do, as with awscli.
    sign_in(page, s3, 1001)
    expect(page.locator("#bucket-rows tr")).to_have_count(1)  # console-made, public-read
    expect(page.locator("#bucket-rows tr[data-bucket=rootonly]")).to_have_count(0)
    page.click("#bucket-rows tr[data-bucket=console-made] button:text('Delete')")
    expect(page.locator("#status")).to_contain_text("AccessDenied")
    assert bucket.is_dir()
    page.goto(f"{s3.endpoint}/_console/#/b/rootonly/")
    expect(page.locator("#status")).to_contain_text("AccessDenied")
    page.goto(f"{s3.endpoint}/_console/#/keys")
    expect(page.locator("#status")).to_contain_text("AccessDenied")
    page.goto(f"{s3.endpoint}/_console/#/")
    page.fill("#bucket-name", "rootonly")
    page.click("#new-bucket button")
    expect(page.locator("#status")).to_contain_text("BucketAlreadyExists")
    context.close()
