"""The stored form of a block and its name.

A block is named by the SHA-256 of its *plaintext* (64 lowercase hex digits), so the name does not depend on
how it is stored and every read can be checked against it. The stored object is one header byte naming the
codec, then the payload:

* ``0x00`` (:data:`RAW`): the plaintext as is;
* ``0x01`` (:data:`ZSTD`): a zstd frame (RFC 8878) of the plaintext, used only when it is smaller.

Pure functions (CPU-bound: callers run them in a worker thread for large blocks).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import zstandard

RAW = 0
ZSTD = 1
CODEC_NAMES = {RAW: "raw", ZSTD: "zstd"}

ZSTD_LEVEL = 3
"""zstd's default level: about 300 MB/s per core on text, a good ratio for the CPU spent."""

HASH_LENGTH = 64


class CorruptBlock(Exception):
    """Stored bytes of a block do not decode, or decode to bytes whose SHA-256 is not the block's name."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """A block ready to store: its ``hash`` (name), plaintext ``size`` and the ``stored`` bytes (header +
    payload) written with ``codec``."""

    hash: str
    size: int
    stored: bytes
    codec: int


def block_hash(plaintext: bytes | bytearray | memoryview) -> str:
    """The name of a block: SHA-256 of its plaintext as 64 lowercase hex digits."""
    return hashlib.sha256(plaintext).hexdigest()


def is_block_hash(name: str) -> bool:
    """True for a well-formed block name (64 lowercase hex digits)."""
    return len(name) == HASH_LENGTH and all(c in "0123456789abcdef" for c in name)


def encode(plaintext: bytes | bytearray | memoryview, *, compress: bool = True) -> Encoded:
    """Name ``plaintext`` and choose its stored form: zstd when ``compress`` and the frame is smaller than the
    plaintext, else raw (incompressible data costs one byte, never more)."""
    data = bytes(plaintext)
    name = block_hash(data)
    if compress and data:
        frame = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
        if len(frame) < len(data):
            return Encoded(name, len(data), bytes([ZSTD]) + frame, ZSTD)
    return Encoded(name, len(data), bytes([RAW]) + data, RAW)


def decode(stored: bytes, expected_hash: str, *, max_size: int) -> bytes:
    """The plaintext of a stored block, verified against ``expected_hash``.

    ``max_size`` bounds the decompressed size (a block never exceeds the block size), so a damaged frame
    cannot make a reader allocate without limit. Raises :class:`CorruptBlock` when the header is unknown, the
    frame does not decode, or the SHA-256 of the result is not ``expected_hash``: a reader gets an error,
    never wrong bytes.
    """
    if not stored:
        raise CorruptBlock(f"block {expected_hash} is empty on disk (no codec header)")
    codec, payload = stored[0], stored[1:]
    if codec == RAW:
        data = payload
    elif codec == ZSTD:
        try:
            # The frame header declares the size (the compressor writes it); max_output_size only binds frames
            # without one, so a declared size is checked first.
            declared = zstandard.frame_content_size(payload)
            if declared > max_size:
                raise CorruptBlock(f"block {expected_hash} declares {declared} bytes, more than {max_size}")
            data = zstandard.ZstdDecompressor().decompress(payload, max_output_size=max_size)
        except zstandard.ZstdError as exc:
            raise CorruptBlock(f"block {expected_hash} does not decompress: {exc}") from exc
        if len(data) > max_size:
            raise CorruptBlock(f"block {expected_hash} decompresses to more than {max_size} bytes")
    else:
        raise CorruptBlock(f"block {expected_hash} has unknown codec {codec}")
    actual = block_hash(data)
    if actual != expected_hash:
        raise CorruptBlock(f"block {expected_hash} reads back with SHA-256 {actual}")
    return data


def verified(stored: bytes, expected_hash: str, *, max_size: int) -> tuple[Encoded, bytes]:
    """A stored block received from elsewhere (a peer's copy), checked with :func:`decode`: the
    :class:`Encoded` to write as is, and its plaintext. Raises :class:`CorruptBlock` as :func:`decode` does."""
    data = decode(stored, expected_hash, max_size=max_size)
    return Encoded(expected_hash, len(data), stored, stored[0]), data
