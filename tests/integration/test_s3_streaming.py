"""``aws-chunked`` uploads to the S3 face: signed chunks (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``, each chunk
signature checked while the body streams) and unsigned chunks with a trailing checksum
(``STREAMING-UNSIGNED-PAYLOAD-TRAILER``). The request is signed with botocore's signer; the chunk signatures
are computed here from the spec (AWS Signature Version 4, "Transferring Payload in Multiple Chunks")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import zlib

import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from support.app_node import AppNode
from support.s3_face import REGION, client, credentials, s3_url

EMPTY = hashlib.sha256(b"").hexdigest()


def _sign(node: AppNode, url: str, headers: dict[str, str]) -> tuple[dict[str, str], str, str]:
    """Headers with botocore's Authorization for a streaming upload; also the seed signature and timestamp."""
    access_key, secret = credentials(node, "alice")
    when = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    request = AWSRequest(method="PUT", url=url, headers={**headers, "X-Amz-Date": when})
    auth = S3SigV4Auth(Credentials(access_key, secret), "s3", REGION)
    request.context["timestamp"] = when
    canonical = auth.canonical_request(request)
    seed = auth.signature(auth.string_to_sign(request, canonical), request)
    signed = ";".join(sorted(k.lower() for k in request.headers))
    scope = f"{when[:8]}/{REGION}/s3/aws4_request"
    request.headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                        f"SignedHeaders={signed}, Signature={seed}")
    return dict(request.headers.items()), seed, when


def _signing_key(secret: str, date: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _signed_chunks(node: AppNode, chunks: list[bytes], seed: str, when: str, *, tamper: int = -1) -> bytes:
    _, secret = credentials(node, "alice")
    key = _signing_key(secret, when[:8])
    scope = f"{when[:8]}/{REGION}/s3/aws4_request"
    previous, out = seed, b""
    for index, data in enumerate([*chunks, b""]):
        digest = hashlib.sha256(data).hexdigest()
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", when, scope, previous, EMPTY, digest])
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        previous = signature
        sent = data if index != tamper else b"X" * len(data)
        out += f"{len(data):x};chunk-signature={signature}\r\n".encode() + sent + b"\r\n"
    return out


def _upload(node: AppNode, key: str, chunks: list[bytes], *, tamper: int = -1) -> requests.Response:
    url = f"{s3_url(node)}/stream/{key}"
    body_size = sum(len(c) for c in chunks)
    headers = {"Host": url.split("/")[2], "Content-Encoding": "aws-chunked",
               "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
               "x-amz-decoded-content-length": str(body_size)}
    signed, seed, when = _sign(node, url, headers)
    body = _signed_chunks(node, chunks, seed, when, tamper=tamper)
    return requests.put(url, data=body, headers=signed, timeout=30)


def test_signed_chunked_upload(s3_node_sqlite: AppNode) -> None:
    client(s3_node_sqlite).create_bucket(Bucket="stream")
    chunks = [b"a" * 65536, b"b" * 65536, b"c" * 100]
    answer = _upload(s3_node_sqlite, "signed.bin", chunks)
    assert answer.status_code == 200, answer.text
    got = client(s3_node_sqlite).get_object(Bucket="stream", Key="signed.bin")["Body"].read()
    assert got == b"".join(chunks)


def test_tampered_chunk_writes_nothing(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="stream")
    answer = _upload(s3_node_sqlite, "tampered.bin", [b"a" * 65536, b"b" * 65536], tamper=1)
    assert answer.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in answer.text
    assert "Contents" not in s3.list_objects_v2(Bucket="stream")


def test_unsigned_chunks_with_trailing_checksum(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="stream")
    data = b"trailer checked bytes" * 100
    url = f"{s3_url(s3_node_sqlite)}/stream/trailer.bin"

    def put(checksum: bytes) -> requests.Response:
        crc = base64.b64encode(checksum).decode()
        body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()
        headers = {"Host": url.split("/")[2], "Content-Encoding": "aws-chunked",
                   "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                   "x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": "x-amz-checksum-crc32"}
        signed, _, _ = _sign(s3_node_sqlite, url, headers)
        return requests.put(url, data=body, headers=signed, timeout=30)

    bad = put(b"\0\0\0\0")
    assert bad.status_code == 400 and "<Code>BadDigest</Code>" in bad.text
    good = put(zlib.crc32(data).to_bytes(4, "big"))
    assert good.status_code == 200, good.text
    assert s3.get_object(Bucket="stream", Key="trailer.bin")["Body"].read() == data


def _signed_trailer_upload(node: AppNode, key: str, data: bytes, line_end: bytes, *, forge: bool = False
                           ) -> requests.Response:
    """A ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`` upload whose trailing CRC32 line ends in ``line_end``
    (the AWS SDKs send ``\\r\\n``, the MinIO SDKs ``\\n\\r\\n``); ``forge`` sends a wrong trailer signature."""
    url = f"{s3_url(node)}/stream/{key}"
    headers = {"Host": url.split("/")[2], "Content-Encoding": "aws-chunked",
               "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
               "x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": "x-amz-checksum-crc32"}
    signed, seed, when = _sign(node, url, headers)
    chunks = _signed_chunks(node, [data], seed, when)
    last_signature = chunks.rsplit(b"chunk-signature=", 1)[1].split(b"\r\n", 1)[0].decode()
    trailer = f"x-amz-checksum-crc32:{base64.b64encode(zlib.crc32(data).to_bytes(4, 'big')).decode()}"
    _, secret = credentials(node, "alice")
    to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", when, f"{when[:8]}/{REGION}/s3/aws4_request", last_signature,
                         hashlib.sha256(trailer.encode() + b"\n").hexdigest()])
    signature = hmac.new(_signing_key(secret, when[:8]), to_sign.encode(), hashlib.sha256).hexdigest()
    if forge:
        signature = "0" * 64
    body = chunks.removesuffix(b"\r\n") + trailer.encode() + line_end + \
        f"x-amz-trailer-signature:{signature}\r\n\r\n".encode()
    return requests.put(url, data=body, headers=signed, timeout=30)


def test_signed_chunks_with_signed_trailer(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="stream")
    data = b"signed trailer bytes" * 200
    for key, line_end in (("crlf.bin", b"\r\n"), ("lf-crlf.bin", b"\n\r\n")):
        answer = _signed_trailer_upload(s3_node_sqlite, key, data, line_end)
        assert answer.status_code == 200, answer.text
        assert s3.get_object(Bucket="stream", Key=key)["Body"].read() == data
    forged = _signed_trailer_upload(s3_node_sqlite, "forged.bin", data, b"\r\n", forge=True)
    assert forged.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in forged.text
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="stream")["Contents"]] == ["crlf.bin", "lf-crlf.bin"]
