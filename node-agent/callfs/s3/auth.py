"""Who sent an S3 request: the access key of its AWS Signature Version 4 (header or presigned URL),
verified against ``auth.s3_credentials``, and the CallFS user that key acts as."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from callfs.node import Node
from callfs.permissions import Caller
from callfs.s3 import sigv4
from callfs.s3.errors import S3Error, access_denied


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The ``caller`` a request acts as and its verified signature (``chain`` verifies a signed
    ``aws-chunked`` body)."""

    caller: Caller
    verified: sigv4.Verified


def authenticate(request: web.Request, node: Node) -> Authenticated:
    """Verify the signature of ``request`` and map its access key to a :class:`Caller`.

    Raises :class:`S3Error`: ``AccessDenied`` (no signature: anonymous requests are refused; an expired
    presigned URL), ``InvalidAccessKeyId`` (403), ``SignatureDoesNotMatch`` (403), ``RequestTimeTooSkewed``
    (403), ``AuthorizationHeaderMalformed`` (400, also a region other than ``s3.region``),
    ``AuthorizationQueryParametersError`` (400), ``InvalidRequest`` (a missing ``x-amz-content-sha256``).
    """
    header = request.headers.get("Authorization")
    if header is not None:
        signature = sigv4.parse_header(header, request.headers.get("x-amz-date"))
    elif "X-Amz-Signature" in request.query or "X-Amz-Credential" in request.query:
        signature = sigv4.parse_query(request.query)
    else:
        raise access_denied("anonymous requests are not allowed; sign requests with an access key")
    credential = node.config.auth.s3_credentials.get(signature.access_key)
    if credential is None:
        raise S3Error("InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records.")
    region = node.config.s3.region
    if region and signature.region != region:
        raise S3Error("AuthorizationHeaderMalformed", 400,
                      f"the region '{signature.region}' is wrong; expecting '{region}'")
    if signature.presigned:
        payload_hash = sigv4.UNSIGNED_PAYLOAD
        query = [(k, v) for k, v in request.query.items() if k != "X-Amz-Signature"]
    else:
        content_sha256 = request.headers.get("x-amz-content-sha256")
        if content_sha256 is None:
            raise S3Error("InvalidRequest", 400, "Missing required header for this request: x-amz-content-sha256")
        sigv4.check_payload_hash(content_sha256)
        payload_hash = content_sha256
        query = list(request.query.items())
    verified = sigv4.verify(
        signature, credential.secret, method=request.method, path=request.path, query=query,
        headers=request.headers.items(), payload_hash=payload_hash,
    )
    # Time is checked on a request known to be signed with the key, so a stranger learns nothing from it.
    sigv4.check_time(signature, node.engine.clock())
    groups = frozenset(node.config.auth.user_groups.get(credential.user, ()))
    return Authenticated(Caller(credential.user, groups), verified)
