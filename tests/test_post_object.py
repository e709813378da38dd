"""POST Object: uploads from HTML forms, with the policies boto3's generate_presigned_post
signs, sent as a browser sends them (a form in headless Chromium) and by hand."""

from __future__ import annotations

import html
import http.client
import os
import uuid

from test_console import browser  # noqa: F401 (a fixture)


def post_form(s3, bucket: str, fields: dict, content: bytes, name: str = "f.txt"):
    """POST a form as a browser encodes it: the fields, then the file."""
    boundary = uuid.uuid4().hex
    body = b""
    for field, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n'.encode()
        body += str(value).encode() + b"\r\n"
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body += content + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=60)
    try:
        connection.request(
            "POST",
            f"/{bucket}",
            body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def test_a_presigned_post_uploads_within_its_policy_alone(s3):
    client = s3.client()
    client.create_bucket(Bucket="forms")
    post = client.generate_presigned_post(
        "forms",
        "uploads/${filename}",
        Conditions=[["starts-with", "$key", "uploads/"], ["content-length-range", 1, 100_000]],
        ExpiresIn=300,
    )
    content = os.urandom(50_000)  # several pieces of the body: the delimiter may straddle
    assert "signature" in post["fields"]  # Signature Version 2, boto3's default for forms
    status, headers, _ = post_form(s3, "forms", post["fields"], content, "photo.jpg")
    assert status == 204 and headers["location"] == "/forms/uploads/photo.jpg"
    assert (s3.path / "forms" / "uploads" / "photo.jpg").read_bytes() == content
    assert (s3.path / "forms" / "uploads" / "photo.jpg").stat().st_uid == 0  # the signer's

    too_large = post_form(s3, "forms", post["fields"], b"x" * 100_001)
    assert too_large[0] == 400 and b"EntityTooLarge" in too_large[2]
    elsewhere = post_form(s3, "forms", post["fields"] | {"key": "other/f"}, b"x")
    assert elsewhere[0] == 403 and b"Invalid according to Policy" in elsewhere[2]
    unnamed = post_form(s3, "forms", post["fields"] | {"x-amz-meta-note": "n"}, b"x")
    assert unnamed[0] == 403 and b"no condition" in unnamed[2]
    # Signed with Signature Version 4 too; a signature that does not match is refused.
    post = s3.client(signature_version="s3v4").generate_presigned_post(
        "forms", "uploads/v4", Conditions=[["content-length-range", 1, 100_000]]
    )
    assert post_form(s3, "forms", post["fields"], b"four")[0] == 204
    assert (s3.path / "forms" / "uploads" / "v4").read_bytes() == b"four"
    forged = post_form(s3, "forms", post["fields"] | {"x-amz-signature": "0" * 64}, b"x")
    assert forged[0] == 403 and b"SignatureDoesNotMatch" in forged[2]
    assert sorted(os.listdir(s3.path / "forms" / "uploads")) == ["photo.jpg", "v4"]

    expired = client.generate_presigned_post("forms", "late", ExpiresIn=-10)
    late = post_form(s3, "forms", expired["fields"], b"x")
    assert late[0] == 403 and b"expired" in late[2]
    # Without a policy the form is anonymous: a bucket must let everyone write.
    assert post_form(s3, "forms", {"key": "anonymous"}, b"x")[0] == 403
    client.put_bucket_acl(Bucket="forms", ACL="public-read-write")
    assert post_form(s3, "forms", {"key": "anonymous"}, b"x")[0] == 204
    assert (s3.path / "forms" / "anonymous").stat().st_uid == 65534


def test_a_browser_uploads_through_a_form(s3, browser, tmp_path):  # noqa: F811
    client = s3.client()
    client.create_bucket(Bucket="browser-forms")
    post = client.generate_presigned_post(
        "browser-forms",
        "${filename}",
        Fields={"success_action_status": "201", "x-amz-meta-from": "a form"},
        Conditions=[{"success_action_status": "201"}, {"x-amz-meta-from": "a form"}],
    )
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in post["fields"].items()
    )
    page = browser.new_page()
    page.set_content(
        f'<form action="{post["url"]}" method="post" enctype="multipart/form-data">'
        f'{inputs}<input type="file" name="file"><button type="submit">Upload</button></form>'
    )
    chosen = tmp_path / "report.pdf"
    chosen.write_bytes(os.urandom(3 << 20))
    page.set_input_files("input[type=file]", str(chosen))
    with page.expect_navigation():
        page.click("button")
    assert "<Key>report.pdf</Key>" in page.content()
    uploaded = s3.path / "browser-forms" / "report.pdf"
    assert uploaded.read_bytes() == chosen.read_bytes()
    assert os.getxattr(uploaded, "user.from") == b"a form"
    page.close()


def test_a_form_may_ask_for_its_upload_to_be_sealed(s3):
    client = s3.client()
    client.create_bucket(Bucket="sealed-forms")
    sse = {"x-amz-server-side-encryption": "AES256"}
    post = client.generate_presigned_post("sealed-forms", "f", Fields=sse, Conditions=[sse])
    status, headers, _ = post_form(s3, "sealed-forms", post["fields"], b"form content")
    assert status == 204 and headers["x-amz-server-side-encryption"] == "AES256"
    head = client.head_object(Bucket="sealed-forms", Key="f")
    assert head["ServerSideEncryption"] == "AES256"
    assert (s3.path / "sealed-forms" / "f").read_bytes() == b"form content"
