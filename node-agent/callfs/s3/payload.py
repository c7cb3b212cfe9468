"""Request payloads of the S3 face: ``aws-chunked`` decoding with chunk-signature verification, and the
integrity checks a client may ask for (``Content-MD5``, ``x-amz-checksum-*``, a signed
``x-amz-content-sha256``). Bodies are streamed; a check that fails raises before the stream ends, so the
engine aborts the write and nothing is committed.

Specs: Amazon S3 User Guide, "Checking object integrity" (the checksum headers, base64 of the big-endian
CRC or of the digest); AWS Signature Version 4, "Transferring Payload in Multiple Chunks" and "Trailing
headers" (the chunk format ``hex-size[;chunk-signature=sig]\\r\\n data \\r\\n``, closed by a zero-size chunk,
trailing headers and an empty line).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

import crc32c
from aiohttp import StreamReader

from callfs.s3.errors import S3Error
from callfs.s3.sigv4 import ChunkChain

PIECE_BYTES = 1 << 20
"""The largest piece of body handed on at a time (bytes): memory per upload stays bounded."""
MAX_CHUNK_LINE = 4096
"""The longest chunk header or trailer line accepted (bytes)."""


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc:
    """A CRC (32 bits) with the ``hashlib`` interface; ``digest`` is big-endian, as S3 encodes it."""

    def __init__(self, step: Callable[[bytes, int], int]) -> None:
        self._step = step
        self._value = 0

    def update(self, data: bytes) -> None:
        self._value = self._step(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


CHECKSUMS: dict[str, Callable[[], _Hash]] = {
    "crc32": lambda: _Crc(zlib.crc32),
    "crc32c": lambda: _Crc(crc32c.crc32c),
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
}
"""The ``x-amz-checksum-<name>`` algorithms supported."""


def _decode_b64(value: str, what: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        code = "InvalidDigest" if what == "Content-MD5" else "InvalidRequest"
        raise S3Error(code, 400, f"The {what} you specified is not valid.")
    return raw


class Integrity:
    """The digests a request body must match, computed while it streams; :meth:`check` compares them.

    Built from the request headers: ``Content-MD5`` (base64 MD5), ``x-amz-checksum-<algorithm>`` (base64),
    and ``x-amz-content-sha256`` when it is a hex SHA-256 (a signed payload). A checksum announced in
    ``x-amz-trailer`` is taken from the trailing headers of an ``aws-chunked`` body.
    """

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._expected: dict[str, tuple[bytes | None, _Hash]] = {}
        md5 = headers.get("Content-MD5")
        if md5 is not None:
            self._expected["Content-MD5"] = (_decode_b64(md5, "Content-MD5", 16), hashlib.md5())  # noqa: S324
        for name, factory in CHECKSUMS.items():
            value = headers.get(f"x-amz-checksum-{name}")
            if value is not None:
                digest = factory()
                self._expected[name] = (_decode_b64(value, f"x-amz-checksum-{name}", len(digest.digest())), digest)
        trailer = headers.get("x-amz-trailer", "").strip().lower()
        if trailer:
            name = trailer.removeprefix("x-amz-checksum-")
            if not trailer.startswith("x-amz-checksum-") or name not in CHECKSUMS:
                raise S3Error("InvalidRequest", 400, f"unsupported x-amz-trailer {trailer!r}")
            self._expected.setdefault(name, (None, CHECKSUMS[name]()))
        self.trailer = trailer or None
        content_sha256 = headers.get("x-amz-content-sha256", "")
        self._payload_sha256 = hashlib.sha256() if len(content_sha256) == 64 else None
        self._payload_expected = content_sha256
        self.size = 0

    def update(self, data: bytes) -> None:
        """Feed the next piece of the (decoded) body."""
        self.size += len(data)
        for _, digest in self._expected.values():
            digest.update(data)
        if self._payload_sha256 is not None:
            self._payload_sha256.update(data)

    def check(self, trailers: Mapping[str, str]) -> None:
        """Compare every digest with what the request announced (``trailers``: trailing headers, lower-case).

        Raises :class:`S3Error` ``XAmzContentSHA256Mismatch`` (the signed payload hash), ``BadDigest`` (the
        ``Content-MD5`` or a checksum), ``InvalidRequest`` (an announced trailer did not come)."""
        if self._payload_sha256 is not None and self._payload_sha256.hexdigest() != self._payload_expected:
            raise S3Error("XAmzContentSHA256Mismatch", 400,
                          "The provided 'x-amz-content-sha256' header does not match what was computed.")
        for name, (expected, digest) in self._expected.items():
            if expected is None:
                value = trailers.get(f"x-amz-checksum-{name}")
                if value is None:
                    raise S3Error("InvalidRequest", 400, f"the trailing x-amz-checksum-{name} header is missing")
                expected = _decode_b64(value, f"x-amz-checksum-{name}", len(digest.digest()))
            if digest.digest() != expected:
                what = "Content-MD5" if name == "Content-MD5" else name.upper()
                raise S3Error("BadDigest", 400, f"The {what} you specified did not match the calculated checksum.")


async def checked(body: AsyncIterator[bytes], integrity: Integrity,
                  trailers: Callable[[], Mapping[str, str]] = dict) -> AsyncIterator[bytes]:
    """``body`` passed through ``integrity``; at its end the digests are checked (raising :class:`S3Error`)
    before the stream ends, so a consumer never commits a body that fails."""
    async for piece in body:
        integrity.update(piece)
        yield piece
    integrity.check(trailers())


async def _read(seconds: float, read: Callable[[], Awaitable[bytes]]) -> bytes:
    try:
        async with asyncio.timeout(seconds):
            data = await read()
    except TimeoutError:
        raise S3Error("RequestTimeout", 400, f"no request body bytes received for {seconds:g} seconds") from None
    except asyncio.IncompleteReadError:
        raise S3Error("IncompleteBody", 400, "the aws-chunked body ended early") from None
    except ValueError:  # a line longer than the limit
        raise S3Error("InvalidRequest", 400, "malformed aws-chunked body: a line is too long") from None
    return data


class ChunkedBody:
    """The decoded bytes of an ``aws-chunked`` request body, as an async iterator of pieces of at most
    :data:`PIECE_BYTES`; ``chain`` verifies each chunk's signature (``None``: unsigned chunks). After the
    iteration, ``trailers`` holds the trailing headers (names lower-case).

    Raises :class:`S3Error` ``SignatureDoesNotMatch``, ``IncompleteBody`` (shorter than
    ``x-amz-decoded-content-length``), ``InvalidRequest`` (malformed framing), ``RequestTimeout``.
    """

    def __init__(self, stream: StreamReader, *, chain: ChunkChain | None, decoded_length: int | None,
                 read_timeout: float) -> None:
        self._stream = stream
        self._chain = chain
        self._decoded_length = decoded_length
        self._timeout = read_timeout
        self.trailers: dict[str, str] = {}

    async def _line(self) -> bytes:
        line = await _read(self._timeout, lambda: self._stream.readuntil(b"\r\n", max_size=MAX_CHUNK_LINE))
        if not line.endswith(b"\r\n"):
            raise S3Error("IncompleteBody", 400, "the aws-chunked body ended early")
        return line[:-2]

    def _header(self, line: bytes) -> tuple[int, str | None]:
        size_text, _, extension = line.partition(b";")
        try:
            size = int(size_text, 16)
        except ValueError:
            raise S3Error("InvalidRequest", 400, "malformed aws-chunked body: bad chunk size") from None
        signature = None
        if extension:
            name, _, value = extension.partition(b"=")
            if name.strip() != b"chunk-signature":
                raise S3Error("InvalidRequest", 400, "malformed aws-chunked body: unknown chunk extension")
            signature = value.strip().decode("ascii", "replace")
        if self._chain is not None and signature is None:
            raise S3Error("SignatureDoesNotMatch", 403, "a chunk of the signed aws-chunked payload has no signature")
        return size, signature

    async def __aiter__(self) -> AsyncIterator[bytes]:
        total = 0
        while True:
            size, signature = self._header(await self._line())
            digest = hashlib.sha256()
            left = size
            while left:
                piece = await _read(self._timeout, functools.partial(self._stream.readexactly, min(left, PIECE_BYTES)))
                digest.update(piece)
                left -= len(piece)
                total += len(piece)
                if self._decoded_length is not None and total > self._decoded_length:
                    raise S3Error("InvalidRequest", 400, "the body is longer than x-amz-decoded-content-length")
                if size:
                    yield piece
            if self._chain is not None:
                assert signature is not None
                self._chain.verify(digest.hexdigest(), signature)
            if size == 0:
                break
            if await self._line() != b"":
                raise S3Error("InvalidRequest", 400, "malformed aws-chunked body: chunk data overruns its size")
        await self._read_trailers()
        if self._decoded_length is not None and total != self._decoded_length:
            raise S3Error("IncompleteBody", 400, "the body is shorter than x-amz-decoded-content-length")

    async def _read_trailers(self) -> None:
        raw = b""
        trailer_signature = None
        while True:
            try:
                line = await self._line()
            except S3Error:
                if not self.trailers and not raw:
                    return  # no trailer section at all (some clients end right after the last chunk)
                raise
            if line == b"":
                break
            name, colon, value = line.partition(b":")
            if not colon:
                raise S3Error("InvalidRequest", 400, "malformed trailing header")
            key = name.strip().lower().decode("ascii", "replace")
            if key == "x-amz-trailer-signature":
                trailer_signature = value.strip().decode("ascii", "replace")
                continue
            # Signed as "name:value\n" per header; some clients end the line "\n\r\n", others "\r\n".
            raw += line.rstrip(b"\n") + b"\n"
            self.trailers[key] = value.strip().decode("ascii", "replace")
        if self._chain is not None and raw and (
            trailer_signature is None or trailer_signature != self._chain.expected_trailer(raw)
        ):
            raise S3Error("SignatureDoesNotMatch", 403, "the trailing headers' signature does not match")
