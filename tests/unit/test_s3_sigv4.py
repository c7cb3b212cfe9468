"""AWS Signature Version 4 verification of the S3 face, against the worked example of the AWS spec
("Transferring Payload in Multiple Chunks": the seed and chunk signatures published there) and botocore's
signer as the reference."""

from __future__ import annotations

import hashlib

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from callfs.s3 import sigv4
from callfs.s3.errors import S3Error

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SPEC_HEADERS = {
    "Host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "66560", "Content-Length": "66824",
    "x-amz-content-sha256": sigv4.STREAMING_PAYLOAD,
}
SPEC_SIGNED = ("content-encoding", "content-length", "host", "x-amz-content-sha256", "x-amz-date",
               "x-amz-decoded-content-length", "x-amz-storage-class")
SPEC_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
SPEC_CHUNKS = [
    (b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
]


def _spec_signature(seed: str = SPEC_SEED) -> sigv4.Signature:
    return sigv4.Signature(ACCESS_KEY, "20130524", "us-east-1", "s3", "20130524T000000Z", SPEC_SIGNED, seed)


def _verify_spec(seed: str = SPEC_SEED, secret: str = SECRET) -> sigv4.Verified:
    return sigv4.verify(_spec_signature(seed), secret, method="PUT", path="/examplebucket/chunkObject.txt",
                        query=[], headers=SPEC_HEADERS, payload_hash=sigv4.STREAMING_PAYLOAD)


def test_spec_example_seed_and_chunk_signatures_verify() -> None:
    verified = _verify_spec()
    for data, signature in SPEC_CHUNKS:
        verified.chain.verify(hashlib.sha256(data).hexdigest(), signature)


def test_wrong_secret_is_signature_does_not_match() -> None:
    with pytest.raises(S3Error) as info:
        _verify_spec(secret="another secret")
    assert (info.value.code, info.value.status) == ("SignatureDoesNotMatch", 403)


def test_tampered_chunk_is_refused() -> None:
    verified = _verify_spec()
    with pytest.raises(S3Error) as info:
        verified.chain.verify(hashlib.sha256(b"b" * 65536).hexdigest(), SPEC_CHUNKS[0][1])
    assert info.value.code == "SignatureDoesNotMatch"


def test_chunks_out_of_order_are_refused() -> None:
    verified = _verify_spec()
    with pytest.raises(S3Error):
        verified.chain.verify(hashlib.sha256(SPEC_CHUNKS[1][0]).hexdigest(), SPEC_CHUNKS[1][1])


def _botocore_signed(method: str, url: str, body: bytes, when: str) -> AWSRequest:
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "text/plain"})
    auth = S3SigV4Auth(Credentials(ACCESS_KEY, SECRET), "s3", "eu-west-1")
    request.context["timestamp"] = when
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    auth._inject_signature_to_request(request, signature)
    return request


@pytest.mark.parametrize("path", ["/bucket/plain.txt", "/bucket/with space/ünïcode+plus(1)!.txt", "/bucket"])
def test_botocore_header_signatures_verify(path: str) -> None:
    from urllib.parse import quote

    url = "http://127.0.0.1:9000" + quote(path, safe="/~") + "?prefix=a%2Fb&list-type=2&empty="
    request = _botocore_signed("PUT", url, b"body", "20261204T180000Z")
    headers = dict(request.headers.items())
    headers["Host"] = "127.0.0.1:9000"
    signature = sigv4.parse_header(headers["Authorization"], headers["X-Amz-Date"])
    sigv4.verify(signature, SECRET, method="PUT", path=path,
                 query=[("prefix", "a/b"), ("list-type", "2"), ("empty", "")], headers=headers,
                 payload_hash=headers["X-Amz-Content-SHA256"])
    with pytest.raises(S3Error):
        sigv4.verify(signature, SECRET, method="PUT", path=path + "x",
                     query=[("prefix", "a/b"), ("list-type", "2"), ("empty", "")], headers=headers,
                     payload_hash=headers["X-Amz-Content-SHA256"])


def test_botocore_presigned_url_verifies() -> None:
    from urllib.parse import parse_qsl, urlsplit

    request = AWSRequest(method="GET", url="http://127.0.0.1:9000/bucket/key.txt", headers={})
    auth = S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET), "s3", "us-east-1", expires=300)
    auth.add_auth(request)
    parts = urlsplit(request.url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    signature = sigv4.parse_query(dict(query))
    assert signature.presigned and signature.expires == 300
    sigv4.verify(signature, SECRET, method="GET", path="/bucket/key.txt",
                 query=[(k, v) for k, v in query if k != "X-Amz-Signature"],
                 headers={"Host": "127.0.0.1:9000"}, payload_hash=sigv4.UNSIGNED_PAYLOAD)
    sigv4.check_time(signature, signature.signed_at + 299)
    with pytest.raises(S3Error) as expired:
        sigv4.check_time(signature, signature.signed_at + 301)
    assert (expired.value.code, expired.value.message) == ("AccessDenied", "Request has expired")


@pytest.mark.parametrize(("offset", "ok"), [(0, True), (899, True), (-899, True), (901, False), (-901, False)])
def test_clock_skew_limit_is_15_minutes(offset: int, ok: bool) -> None:
    signature = _spec_signature()
    if ok:
        sigv4.check_time(signature, signature.signed_at + offset)
        return
    with pytest.raises(S3Error) as info:
        sigv4.check_time(signature, signature.signed_at + offset)
    assert (info.value.code, info.value.status) == ("RequestTimeTooSkewed", 403)


@pytest.mark.parametrize(("header", "code"), [
    ("AWS AKIA:abc", "InvalidRequest"),
    ("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request", "AuthorizationHeaderMalformed"),
    ("AWS4-HMAC-SHA256 Credential=AK/2013/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=" + "0" * 64,
     "AuthorizationHeaderMalformed"),
    ("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=" + "0" * 64,
     "AuthorizationHeaderMalformed"),
    ("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date, Signature="
     + "0" * 64, "AuthorizationHeaderMalformed"),
    ("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=zz",
     "SignatureDoesNotMatch"),
])
def test_malformed_authorization_headers(header: str, code: str) -> None:
    with pytest.raises(S3Error) as info:
        sigv4.parse_header(header, "20130524T000000Z")
    assert info.value.code == code
    assert info.value.status in (400, 403)


@pytest.mark.parametrize("expires", ["0", "604801", "soon"])
def test_presigned_expiry_bounds(expires: str) -> None:
    query = {"X-Amz-Algorithm": sigv4.ALGORITHM, "X-Amz-Credential": "AK/20130524/us-east-1/s3/aws4_request",
             "X-Amz-Date": "20130524T000000Z", "X-Amz-Expires": expires, "X-Amz-SignedHeaders": "host",
             "X-Amz-Signature": "0" * 64}
    with pytest.raises(S3Error) as info:
        sigv4.parse_query(query)
    assert info.value.code == "AuthorizationQueryParametersError"
