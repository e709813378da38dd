"""CORS: a bucket's rules (in-process), their S3 operations with boto3, the preflight and
the headers of answers, and a page of another origin in headless Chromium that may read
an object only once the bucket allows it."""

from __future__ import annotations

import http.client
import http.server
import threading

import pytest
from s3_fixtures import code_of
from test_console import browser  # noqa: F401 (a fixture)

from fsobj.service.cors import CorsRule, first_allowing

PAGE_ORIGIN = "http://pages.example"


def test_the_first_rule_that_allows_a_request_decides_it():
    rules = [
        CorsRule(("http://*.example.com",), ("GET",), ("x-amz-*",), max_age_seconds=60, id="a"),
        CorsRule(("*",), ("GET", "PUT"), ("*",), id="b"),
    ]
    assert first_allowing(rules, "http://app.example.com", "GET", ["x-amz-date"]).id == "a"
    # A header the first rule does not allow: the second decides.
    assert first_allowing(rules, "http://app.example.com", "GET", ["authorization"]).id == "b"
    assert first_allowing(rules, "http://example.com", "PUT", []).id == "b"
    assert first_allowing(rules[:1], "http://example.com", "GET", []) is None
    assert first_allowing(rules[:1], "http://app.example.com", "PUT", []) is None
    # '?' and '[' are no patterns, only '*' is.
    literal = [CorsRule(("http://a?.test",), ("GET",))]
    assert first_allowing(literal, "http://ab.test", "GET", []) is None


def preflight(s3, path: str, origin: str, method: str, headers: str = "") -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=30)
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    try:
        connection.request("OPTIONS", path, headers=asked)
        answer = connection.getresponse()
        answer.read()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}
    finally:
        connection.close()


def test_cors_rules_over_s3_and_the_answers_they_give(s3):
    client = s3.client()
    client.create_bucket(Bucket="site")
    assert code_of(client.get_bucket_cors, Bucket="site") == "NoSuchCORSConfiguration"
    assert preflight(s3, "/site/k", PAGE_ORIGIN, "GET")[0] == 403  # CORS is not enabled
    rules = [
        {
            "ID": "pages",
            "AllowedOrigins": [PAGE_ORIGIN],
            "AllowedMethods": ["GET", "PUT"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 600,
        }
    ]
    client.put_bucket_cors(Bucket="site", CORSConfiguration={"CORSRules": rules})
    assert client.get_bucket_cors(Bucket="site")["CORSRules"] == rules
    status, headers = preflight(s3, "/site/k", PAGE_ORIGIN, "PUT", "Authorization, X-Amz-Date")
    assert status == 200
    assert headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert headers["access-control-allow-methods"] == "GET, PUT"
    assert headers["access-control-allow-headers"] == "authorization, x-amz-date"
    assert headers["access-control-max-age"] == "600"
    assert preflight(s3, "/site/k", PAGE_ORIGIN, "DELETE")[0] == 403
    assert preflight(s3, "/site/k", "http://elsewhere.example", "GET")[0] == 403
    # An answer to a page of that origin says it may read it, and which headers.
    client.put_object(Bucket="site", Key="k", Body=b"hello")
    connection = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=30)
    connection.request("GET", "/site/k", headers={"Origin": PAGE_ORIGIN})
    answer = connection.getresponse()
    assert answer.getheader("access-control-allow-origin") == PAGE_ORIGIN
    assert answer.getheader("access-control-expose-headers") == "ETag"
    connection.close()
    assert code_of(
        client.put_bucket_cors,
        Bucket="site",
        CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]},
    ) == "InvalidRequest"  # fmt: skip
    client.delete_bucket_cors(Bucket="site")
    assert code_of(client.get_bucket_cors, Bucket="site") == "NoSuchCORSConfiguration"
    # Only who may change the bucket's ACL may set its CORS rules.
    refused = code_of(
        s3.client(1001).put_bucket_cors, Bucket="site", CORSConfiguration={"CORSRules": rules}
    )
    assert refused == "AccessDenied"


@pytest.fixture
def other_origin():
    """A page served from another origin of this machine (localhost, while S3 is
    127.0.0.1), by a web server of its own; stopped afterwards."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>another site</body></html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_of_another_origin_reads_an_object_once_the_bucket_allows_it(
    s3,
    browser,  # noqa: F811
    other_origin,
):
    client = s3.client()
    client.create_bucket(Bucket="assets")
    client.put_object(Bucket="assets", Key="data.json", Body=b'{"answer": 42}')
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": "assets", "Key": "data.json"}, ExpiresIn=300
    )
    page = browser.new_page()
    page.goto(f"{other_origin}/")
    read = "url => fetch(url).then(r => r.text(), e => 'refused: ' + e.message)"
    assert page.evaluate(read, url).startswith("refused")  # the browser keeps it from the page
    allowed = {"AllowedOrigins": [other_origin], "AllowedMethods": ["GET"]}
    client.put_bucket_cors(Bucket="assets", CORSConfiguration={"CORSRules": [allowed]})
    assert page.evaluate(read, url) == '{"answer": 42}'
    page.close()
