"""AWS Signature Version 4 verification for S3 requests: the ``Authorization`` header form, presigned URLs
(query parameters) and the signatures of ``aws-chunked`` payload chunks.

Specs (AWS Signature Version 4 for Amazon S3, Amazon S3 API Reference):
- "Signature Calculations for the Authorization Header" (canonical request, string to sign, signing key);
- "Authenticating Requests: Using Query Parameters" (presigned URLs, ``X-Amz-Expires`` at most 604800 s,
  the payload hash is ``UNSIGNED-PAYLOAD``);
- "Signature Calculations for the Authorization Header: Transferring Payload in Multiple Chunks" (each
  chunk's string to sign chains the previous signature, starting from the request's "seed" signature).

The canonical request, the string to sign and the HMAC chain are botocore's own (the signer every AWS
Python client uses), fed with what the request carries: the verifier recomputes exactly what a client
signed. Pure apart from that; no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from callfs.s3.errors import S3Error, access_denied

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGNED_STREAMING = (STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER)
STREAMING = (*SIGNED_STREAMING, STREAMING_UNSIGNED_TRAILER)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

MAX_SKEW_SECONDS = 15 * 60
"""How far a request's ``X-Amz-Date`` may be from the server clock (S3: ``RequestTimeTooSkewed`` beyond)."""
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
"""The longest validity of a presigned URL (``X-Amz-Expires``)."""

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SIGNATURE = _SHA256


def _malformed(message: str) -> S3Error:
    return S3Error("AuthorizationHeaderMalformed", 400, message)


@dataclass(frozen=True, slots=True)
class Signature:
    """What a request says about its signature.

    ``access_key``; ``scope_date`` (``YYYYMMDD``), ``region``, ``service`` of the credential scope;
    ``amz_date`` the signing time (``YYYYMMDDTHHMMSSZ``); ``signed_headers`` lower-case names in the order
    given; ``signature`` 64 hex digits; ``expires`` the validity in seconds of a presigned URL (``None``:
    the header form).
    """

    access_key: str
    scope_date: str
    region: str
    service: str
    amz_date: str
    signed_headers: tuple[str, ...]
    signature: str
    expires: int | None = None

    @property
    def presigned(self) -> bool:
        return self.expires is not None

    @property
    def scope(self) -> str:
        """The credential scope: ``date/region/service/aws4_request``."""
        return f"{self.scope_date}/{self.region}/{self.service}/aws4_request"

    @property
    def signed_at(self) -> float:
        """``amz_date`` as seconds since the epoch."""
        return datetime.strptime(self.amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()


def _credential(value: str) -> tuple[str, str, str, str]:
    parts = value.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not re.fullmatch(r"\d{8}", parts[1]):
        raise _malformed("the Credential must be access-key/YYYYMMDD/region/service/aws4_request")
    if parts[3] != "s3":
        raise _malformed(f"the credential scope names service {parts[3]!r}; expected 's3'")
    return parts[0], parts[1], parts[2], parts[3]


def _check(amz_date: str, signed_headers: tuple[str, ...], signature: str) -> None:
    if not _AMZ_DATE.fullmatch(amz_date):
        raise S3Error("AccessDenied", 403, "X-Amz-Date must be YYYYMMDDTHHMMSSZ")
    if not signed_headers or "host" not in signed_headers:
        raise _malformed("SignedHeaders must include host")
    if not _SIGNATURE.fullmatch(signature):
        raise S3Error("SignatureDoesNotMatch", 403, "the signature must be 64 lower-case hex digits")


def parse_header(authorization: str, amz_date: str | None) -> Signature:
    """The :class:`Signature` of an ``Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
    Signature=…`` header with the request's ``X-Amz-Date`` (or ``Date``) value.

    Raises :class:`S3Error` ``AuthorizationHeaderMalformed`` (400), ``AccessDenied`` (a missing or malformed
    date) or ``InvalidRequest`` (another algorithm, e.g. Signature Version 2)."""
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise S3Error("InvalidRequest", 400, "only AWS Signature Version 4 (AWS4-HMAC-SHA256) is supported")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        if not eq:
            raise _malformed(f"malformed Authorization component {part.strip()!r}")
        fields[name] = value
    missing = {"Credential", "SignedHeaders", "Signature"} - set(fields)
    if missing:
        raise _malformed(f"the Authorization header lacks {', '.join(sorted(missing))}")
    access_key, date, region, service = _credential(fields["Credential"])
    signed = tuple(fields["SignedHeaders"].split(";"))
    if amz_date is None:
        raise S3Error("AccessDenied", 403, "AWS authentication requires a valid Date or x-amz-date header")
    _check(amz_date, signed, fields["Signature"])
    return Signature(access_key, date, region, service, amz_date, signed, fields["Signature"])


def parse_query(query: Mapping[str, str]) -> Signature:
    """The :class:`Signature` of a presigned URL's ``X-Amz-*`` query parameters.

    Raises :class:`S3Error` ``AuthorizationQueryParametersError`` (400) for a missing or malformed
    parameter, ``X-Amz-Expires`` outside 1..604800."""
    def bad(message: str) -> S3Error:
        return S3Error("AuthorizationQueryParametersError", 400, message)

    names = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
             "X-Amz-Signature")
    missing = [n for n in names if n not in query]
    if missing:
        raise bad(f"the presigned URL lacks {', '.join(missing)}")
    if query["X-Amz-Algorithm"] != ALGORITHM:
        raise bad("X-Amz-Algorithm only supports AWS4-HMAC-SHA256")
    try:
        expires = int(query["X-Amz-Expires"])
    except ValueError:
        raise bad("X-Amz-Expires must be a number of seconds") from None
    if not 1 <= expires <= MAX_PRESIGN_SECONDS:
        raise bad(f"X-Amz-Expires must be between 1 and {MAX_PRESIGN_SECONDS} seconds")
    try:
        access_key, date, region, service = _credential(query["X-Amz-Credential"])
    except S3Error as exc:
        raise bad(exc.message) from None
    signed = tuple(query["X-Amz-SignedHeaders"].split(";"))
    _check(query["X-Amz-Date"], signed, query["X-Amz-Signature"])
    return Signature(access_key, date, region, service, query["X-Amz-Date"], signed, query["X-Amz-Signature"],
                     expires)


def check_time(signature: Signature, now: float) -> None:
    """Refuse a request signed too far from ``now`` (seconds since the epoch), or an expired presigned URL.

    Raises :class:`S3Error` ``RequestTimeTooSkewed`` (403: the header form, more than 15 minutes off),
    ``AccessDenied`` (403: "Request has expired", or a presigned URL dated more than 15 minutes ahead),
    ``SignatureDoesNotMatch`` (the credential scope date is not the signing date)."""
    if signature.scope_date != signature.amz_date[:8]:
        raise S3Error("SignatureDoesNotMatch", 403, "the credential scope date is not the date of X-Amz-Date")
    signed_at = signature.signed_at
    if signature.expires is not None:
        if now > signed_at + signature.expires:
            raise access_denied("Request has expired")
        if signed_at - now > MAX_SKEW_SECONDS:
            raise access_denied("Request is not valid yet")
        return
    if abs(now - signed_at) > MAX_SKEW_SECONDS:
        raise S3Error("RequestTimeTooSkewed", 403,
                      "The difference between the request time and the current time is too large.")


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """RFC 3986 percent-encoding as SigV4 prescribes (``A-Z a-z 0-9 - _ . ~`` kept; ``/`` kept in paths)."""
    return quote(text, safe="/~" if keep_slash else "~")


class _Verifier(S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 signer, signing exactly the headers the client listed with the payload hash it sent."""

    def __init__(self, secret: str, signature: Signature, headers: HTTPHeaders, payload_hash: str) -> None:
        super().__init__(Credentials("", secret), signature.service, signature.region)
        self._headers = headers
        self._payload_hash = payload_hash

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._headers

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


@dataclass(frozen=True, slots=True)
class Verified:
    """A request whose signature matched: ``signature`` as parsed, and ``chain`` to verify the chunks of a
    signed streaming payload."""

    signature: Signature
    chain: ChunkChain


class ChunkChain:
    """The signatures of an ``aws-chunked`` payload: each chunk signs its SHA-256 and the previous signature
    (the first chains the request's seed signature). Spec: "Transferring Payload in Multiple Chunks"."""

    def __init__(self, verifier: _Verifier, request: AWSRequest, signature: Signature) -> None:
        self._verifier = verifier
        self._request = request
        self._signature = signature
        self.previous = signature.signature

    def expected(self, chunk_sha256: str) -> str:
        """The signature the next chunk (of SHA-256 ``chunk_sha256``, hex) must carry."""
        string_to_sign = "\n".join([
            "AWS4-HMAC-SHA256-PAYLOAD", self._signature.amz_date, self._signature.scope, self.previous,
            EMPTY_SHA256, chunk_sha256,
        ])
        return str(self._verifier.signature(string_to_sign, self._request))

    def verify(self, chunk_sha256: str, claimed: str) -> None:
        """Check the next chunk's signature and advance. Raises :class:`S3Error` ``SignatureDoesNotMatch``."""
        expected = self.expected(chunk_sha256)
        if not hmac.compare_digest(expected, claimed):
            raise S3Error("SignatureDoesNotMatch", 403, "a chunk signature of the aws-chunked payload does not match")
        self.previous = expected

    def expected_trailer(self, trailer: bytes) -> str:
        """The signature of the trailing headers (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER``): ``trailer``
        is the header lines as sent, each ending in ``\\n``."""
        string_to_sign = "\n".join([
            "AWS4-HMAC-SHA256-TRAILER", self._signature.amz_date, self._signature.scope, self.previous,
            hashlib.sha256(trailer).hexdigest(),
        ])
        return str(self._verifier.signature(string_to_sign, self._request))


def verify(
    signature: Signature, secret: str, *, method: str, path: str, query: Iterable[tuple[str, str]],
    headers: Mapping[str, str] | Iterable[tuple[str, str]], payload_hash: str,
) -> Verified:
    """Recompute the signature of a request and compare it with the one it carries (constant time).

    ``path`` is the percent-decoded request path, ``query`` the decoded query parameters (a presigned URL's
    ``X-Amz-Signature`` is left out here), ``headers`` every request header (name, value) pair, and
    ``payload_hash`` the ``x-amz-content-sha256`` value (``UNSIGNED-PAYLOAD`` for a presigned URL).
    Raises :class:`S3Error` ``SignatureDoesNotMatch`` (403), ``AccessDenied`` (a listed header is missing).
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    signed = HTTPHeaders()
    wanted = set(signature.signed_headers)
    for name, value in pairs:
        if name.lower() in wanted:
            signed.add_header(name.lower(), value)
    absent = wanted - {name.lower() for name, _ in pairs}
    if absent:
        raise access_denied(f"signed headers missing from the request: {', '.join(sorted(absent))}")
    canonical_query = "&".join(
        f"{uri_encode(k, keep_slash=False)}={uri_encode(v, keep_slash=False)}" for k, v in query
    )
    url = "http://s3" + uri_encode(path, keep_slash=True) + ("?" + canonical_query if canonical_query else "")
    request = AWSRequest(method=method, url=url)
    request.context["timestamp"] = signature.amz_date
    verifier = _Verifier(secret, signature, signed, payload_hash)
    canonical = verifier.canonical_request(request)
    expected = verifier.signature(verifier.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(str(expected), signature.signature):
        raise S3Error("SignatureDoesNotMatch", 403,
                      "The request signature we calculated does not match the signature you provided. "
                      "Check your key and signing method.")
    return Verified(signature, ChunkChain(verifier, request, signature))


def check_payload_hash(value: str) -> None:
    """Refuse an ``x-amz-content-sha256`` that is neither 64 hex digits nor a known keyword (400)."""
    if value in (UNSIGNED_PAYLOAD, *STREAMING) or _SHA256.fullmatch(value):
        return
    raise S3Error("InvalidArgument", 400, f"x-amz-content-sha256 {value!r} is not a SHA-256 or a known keyword")
