"""What every S3 handler works with: the request, the node, the authenticated caller and the addressed
bucket and key (path-style addressing: ``/bucket/key``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from callfs.api.requests import body_chunks, check_body_size
from callfs.engine import Engine
from callfs.node import Node
from callfs.permissions import Caller
from callfs.s3 import sigv4
from callfs.s3.errors import S3Error
from callfs.s3.payload import ChunkedBody, Integrity, checked

MAX_XML_BYTES = 1 << 20
"""The largest XML request body read (bytes): a DeleteObjects of 1000 long keys fits."""


@dataclass(frozen=True, slots=True)
class Context:
    """One S3 request: ``bucket`` and ``key`` are empty when the request does not name them."""

    request: web.Request
    node: Node
    caller: Caller
    verified: sigv4.Verified
    bucket: str
    key: str
    request_id: str

    @property
    def engine(self) -> Engine:
        return self.node.engine

    def body(self) -> tuple[AsyncIterator[bytes], int | None]:
        """The request body as verified pieces and its decoded size in bytes (``None``: unknown).

        An ``aws-chunked`` body is decoded (its chunk signatures verified when signed); every digest the
        request announces is checked at the end of the stream. Raises :class:`S3Error`
        ``MissingContentLength`` (411: an aws-chunked body without ``x-amz-decoded-content-length``),
        ``EntityTooLarge`` (over ``server.max_body_bytes``), and what the checks raise while streaming.
        """
        request = self.request
        integrity = Integrity(request.headers)
        content_sha256 = request.headers.get("x-amz-content-sha256", "")
        chunked = content_sha256 in sigv4.STREAMING or "aws-chunked" in request.headers.get("Content-Encoding", "")
        if not chunked:
            check_body_size(request)
            return checked(body_chunks(request), integrity), request.content_length
        try:
            decoded = int(request.headers["x-amz-decoded-content-length"])
        except (KeyError, ValueError):
            raise S3Error("MissingContentLength", 411,
                          "an aws-chunked body needs x-amz-decoded-content-length") from None
        if decoded > self.node.config.server.max_body_bytes or decoded < 0:
            raise S3Error("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed size")
        signed = content_sha256 in sigv4.SIGNED_STREAMING
        if signed and self.verified.signature.presigned:
            raise S3Error("InvalidRequest", 400, "a presigned request cannot carry a signed aws-chunked body")
        body = ChunkedBody(request.content, chain=self.verified.chain if signed else None, decoded_length=decoded,
                           read_timeout=self.node.config.server.read_timeout)
        return checked(aiter(body), integrity, lambda: body.trailers), decoded

    async def xml_body(self) -> bytes:
        """The whole (small) XML request body, checked against the digests the request announces. Raises
        :class:`S3Error` ``MalformedXML`` when it exceeds :data:`MAX_XML_BYTES`."""
        pieces, size = self.body()
        if size is not None and size > MAX_XML_BYTES:
            raise S3Error("MalformedXML", 400, f"XML request bodies are limited to {MAX_XML_BYTES} bytes")
        data = bytearray()
        async for piece in pieces:
            data += piece
            if len(data) > MAX_XML_BYTES:
                raise S3Error("MalformedXML", 400, f"XML request bodies are limited to {MAX_XML_BYTES} bytes")
        return bytes(data)
